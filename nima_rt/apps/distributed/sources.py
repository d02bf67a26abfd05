"""Read input files and open output locations: local paths, or URIs through pyarrow/fsspec.

Local paths are read with ``open``; a URI (``scheme://...``) goes through the pyarrow filesystem for
its scheme (s3, gs, hdfs, file, ...) and, for schemes pyarrow does not know (memory, http, az with
adlfs, ...), through fsspec when it is installed. Read failures raise :class:`SourceError` with the
same one-line wording the single-machine decoder uses, so error rows match between the engines.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from nima_rt.contract.messages import one_line

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


class SourceError(Exception):
    """A file could not be read; ``str()`` is a one-line reason naming it."""


def is_uri(text: str) -> bool:
    """True for ``scheme://...`` strings (s3://, gs://, file://, memory://, ...)."""
    return bool(_URI.match(text))


def join_location(base_dir: str, relative: str) -> str:
    """``relative`` resolved against a local folder or a URI folder; absolute paths/URIs unchanged."""
    if is_uri(relative) or os.path.isabs(relative):
        return relative
    if is_uri(base_dir):
        return posixpath.join(base_dir, relative)
    return os.path.join(base_dir, relative)


def parent_location(location: str) -> str:
    """The folder holding a local file or a URI."""
    if is_uri(location):
        return location.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(location))



def open_filesystem(uri: str) -> tuple[Any, str]:
    """A pyarrow filesystem and the path inside it for ``uri`` (fsspec-backed for unknown schemes)."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as arrow_error:
        try:
            import fsspec
        except ImportError:
            raise SourceError(
                f"{uri}: pyarrow cannot open this URI ({one_line(arrow_error)}) and fsspec is not installed"
            ) from None
        try:
            fs, path = fsspec.core.url_to_fs(uri)
        except (ImportError, ValueError) as exc:
            raise SourceError(f"{uri}: no filesystem for this URI ({one_line(exc)})") from None
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


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
