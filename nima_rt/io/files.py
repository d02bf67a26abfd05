"""Writing files so that a reader never sees half of one, and hashing them.

Every file nima-rt writes whole (ONNX models, engines, checkpoints, reports, dataset images and
label files) goes through :func:`atomic_path`: the data is written to a temporary file in the same
folder, which replaces the target by a rename only when writing succeeded; on any failure the
temporary file is removed and the target is untouched. (Row outputs that grow while a run goes,
``nima-rt score -o``, are appended and flushed instead, or written as Parquet parts, so that ``--resume``
can continue them: :mod:`nima_rt.io.scores.open_output`; Ray shards on remote filesystems use the filesystem's
own move.)

Every file nima-rt reads that a user names (images, model files, engine sidecars, checkpoints it hashes)
is opened by :func:`open_regular`: a FIFO, socket or device is refused before a byte is read, so a path
like ``/dev/zero`` or a named pipe never hangs a run or fills its memory.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from nima_rt.contract.messages import one_line

HASH_BLOCK = 1 << 20


class RefusedFile(Exception):
    """A path that is not a readable regular file (or is larger than allowed); ``str()`` is one line
    naming the path."""


def open_regular(path: str | os.PathLike[str], label: str, expected: str, max_bytes: int | None = None) -> BinaryIO:
    """Open a regular file for reading without ever blocking: FIFOs, sockets and devices are refused
    (the open itself is non-blocking, so a FIFO with no writer cannot hang it), and so is a file over
    ``max_bytes``. ``label`` names the path in messages; ``expected`` says what it should have been
    ("an image file"). Raises :class:`RefusedFile`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise RefusedFile(f"{label}: no such file (or a broken symlink)") from None
    except IsADirectoryError:
        raise RefusedFile(f"{label}: is a directory, expected {expected}") from None
    except PermissionError:
        raise RefusedFile(f"{label}: permission denied") from None
    except OSError as exc:
        raise RefusedFile(f"{label}: cannot open ({one_line(exc.strerror or str(exc))})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise RefusedFile(f"{label}: is a directory, expected {expected}")
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) else "a device"
        raise RefusedFile(f"{label}: is {kind}, not a regular file")
    if max_bytes is not None and info.st_size > max_bytes:
        os.close(fd)
        raise RefusedFile(f"{label}: {info.st_size} bytes, more than the {max_bytes} {expected} may hold")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on failure removed.

    The temporary name keeps the target's suffix (for writers that look at it) and is unique per
    process and thread. Created with the umask's permissions, as a plain ``open`` would.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a regular file's bytes, read in 1 MiB blocks (a FIFO or device is refused with
    :class:`RefusedFile`)."""
    with open_regular(path, os.fspath(path), "a file") as handle:
        return stream_sha256(handle)


def stream_sha256(handle: BinaryIO) -> str:
    """The hex sha256 of the bytes left in an open binary file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(HASH_BLOCK), b""):
        digest.update(block)
    return digest.hexdigest()
