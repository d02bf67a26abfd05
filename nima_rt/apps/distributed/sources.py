"""Read input files: local paths with ``open``, URIs through the filesystems of :mod:`nima_rt.io.locations`.

Read failures raise :class:`SourceError` with the
same one-line wording the single-machine decoder uses, so error rows match between the engines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nima_rt.contract.messages import one_line
from nima_rt.io.locations import SourceError, is_uri, open_filesystem

__all__ = ["SourceError", "SourceReader", "is_uri", "local_read_error", "open_filesystem"]


def local_read_error(label: str, exc: OSError) -> SourceError:
    """The decoder's wording for a local file that cannot be opened."""
    if isinstance(exc, FileNotFoundError):
        return SourceError(f"{label}: no such file (or a broken symlink)")
    if isinstance(exc, IsADirectoryError):
        return SourceError(f"{label}: is a directory, expected an image file")
    if isinstance(exc, PermissionError):
        return SourceError(f"{label}: permission denied")
    return SourceError(f"{label}: cannot read file ({one_line(exc.strerror or exc)})")


@dataclass
class SourceReader:
    """Reads whole files; keeps one filesystem per URI scheme and host for the reader's lifetime."""

    _filesystems: dict[str, tuple[Any, str | None]] = field(default_factory=dict)

    def _resolve(self, uri: str) -> tuple[Any, str]:
        scheme, _, rest = uri.partition("://")
        key = f"{scheme}://{rest.split('/', 1)[0]}"
        cached = self._filesystems.get(key)
        if cached is not None and cached[1] is not None and uri.startswith(cached[1]):
            return cached[0], uri[len(cached[1]):]
        fs, path = open_filesystem(uri)
        # Remember what the filesystem strips from a URI of this host, so later URIs skip from_uri.
        prefix = uri[: len(uri) - len(path)] if path and uri.endswith(path) else None
        self._filesystems[key] = (fs, prefix)
        return fs, path

    def read(self, source: str, label: str) -> bytes:
        """The bytes of ``source``; errors name ``label`` (the path as the user wrote it)."""
        if not is_uri(source):
            try:
                with open(source, "rb") as handle:
                    return handle.read()
            except OSError as exc:
                raise local_read_error(label, exc) from None
        try:
            fs, inner = self._resolve(source)
        except SourceError as exc:
            raise SourceError(f"{label}: {str(exc).split(': ', 1)[-1]}") from None
        try:
            with fs.open_input_file(inner) as handle:
                return handle.read()
        except FileNotFoundError:
            raise SourceError(f"{label}: no such file (or a broken symlink)") from None
        except (OSError, ValueError) as exc:
            raise SourceError(f"{label}: cannot read file ({one_line(exc)})") from None
