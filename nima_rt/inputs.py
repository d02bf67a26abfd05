"""Expand the PATH arguments of a run into image files, lazily and in a stable order."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .decode import is_image_path


@dataclass(frozen=True)
class InputItem:
    """A file to score, or a path that could not be listed (``error`` set)."""

    path: str
    error: str | None = None


def iter_inputs(paths: Iterable[str | os.PathLike[str]]) -> Iterator[InputItem]:
    """Yield files to score: folders are walked recursively (sorted, image extensions only,
    case-insensitive); anything else given explicitly is yielded as is, so a missing or unreadable
    path becomes an error row rather than vanishing. An unreadable sub-folder is an error item."""
    for given in paths:
        text = os.fspath(given)
        if os.path.isdir(text):
            yield from _walk(text)
        else:
            yield InputItem(text)


def _walk(top: str) -> Iterator[InputItem]:
    errors: list[OSError] = []
    for root, dirs, files in os.walk(top, onerror=errors.append):
        while errors:
            failed = errors.pop()
            yield InputItem(str(failed.filename or root), f"{failed.filename}: cannot list folder ({failed.strerror})")
        dirs.sort()
        for name in sorted(files):
            if is_image_path(name):
                yield InputItem(os.path.join(root, name))
    for failed in errors:
        yield InputItem(str(failed.filename or top), f"{failed.filename}: cannot list folder ({failed.strerror})")
