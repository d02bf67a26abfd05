"""Where files live: local paths, or URIs read through a pyarrow (or fsspec) filesystem.

A URI (``scheme://...``) goes through the pyarrow filesystem for its scheme (s3, gs, hdfs, file, ...) and,
for schemes pyarrow does not know (memory, http, az with adlfs, ...), through fsspec when it is installed.
Used by the score-file reader (Ray output folders on object stores) and the Ray engine (inputs, shards).
pyarrow is imported inside the functions that need it.
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import Any

from nima_rt.contract.messages import one_line

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


class SourceError(Exception):
    """A file could not be read or a location opened; ``str()`` is a one-line reason naming it."""


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


def filesystem_for(location: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path inside it) for a local path or a URI."""
    if is_uri(location):
        return open_filesystem(location)
    import pyarrow.fs as pafs

    return pafs.LocalFileSystem(), os.path.abspath(location)
