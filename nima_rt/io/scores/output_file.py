"""The score file a run writes: held by one run at a time, never replaced unasked, repaired after a kill.

A run *claims* its output before it reads or writes anything (:func:`claim_output`):

- **One writer.** The claim is an exclusive ``flock`` on the output (CSV/JSONL) or on the Parquet parts
  folder, held until the writer is closed (or the process dies: the kernel drops it). A second run on the
  same output gets :class:`OutputBusy` at once instead of doubling or interleaving rows.
- **Nothing replaced unasked.** An output that already holds data is refused (:class:`OutputExists`)
  unless the run resumes it (``resume``) or replaces it (``overwrite``).
- **Torn tails repaired by records.** A CSV/JSONL file cut by a kill ends in part of a record; resuming
  cuts it back to the last complete record, counting CSV quotes so that a line break inside a quoted path
  is not taken for the end of a record (:func:`repair_torn_tail`).

Special files (``-o /dev/null``, a FIFO) are written as they are: no lock, nothing to refuse or resume.
``flock`` is POSIX: where ``fcntl`` is missing (Windows) outputs are not locked.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from nima_rt.contract.messages import one_line
from nima_rt.io.scores.writers import OutputError

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]

SCAN_BLOCK = 1 << 20  # bytes of a CSV scanned at once when looking for its last complete record


class OutputConflict(OutputError):
    """The output is not this run's to write as asked: another run holds it, or it holds an earlier run's
    data and the run neither resumes nor overwrites it. (The CLI exits with 2: the user has to choose.)"""


class OutputBusy(OutputConflict):
    """Another run is writing the output."""


class OutputExists(OutputConflict):
    """The output already holds data and the run was not asked to resume or replace it."""


def busy_message(path: str | os.PathLike[str]) -> str:
    return (f"{os.fspath(path)}: another nima-rt run is writing this output; wait for it to end (or stop it), "
            "then --resume")


def exists_message(path: str | os.PathLike[str], what: str) -> str:
    return f"{os.fspath(path)}: already {what}; pass --resume to continue it or --overwrite to replace it"


def lock_exclusive(fd: int, path: str | os.PathLike[str]) -> None:
    """Take the exclusive lock on ``fd`` without waiting; :class:`OutputBusy` when another run holds it."""
    if fcntl is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputBusy(busy_message(path)) from None
    except OSError as exc:  # a filesystem without locks: say so rather than write unprotected
        raise OutputError(f"{os.fspath(path)}: cannot lock the output ({exc.strerror or exc})") from None


def os_reason(exc: OSError) -> str:
    """The reason of an OS error in a few words: ``No space left on device``, also from pyarrow, whose errors
    carry the number in their text (``... Detail: [errno 28] No space left on device``)."""
    found = re.search(r"\[errno (\d+)\]", str(exc))
    if found:
        return os.strerror(int(found.group(1)))
    return one_line(exc.strerror or exc)


def cannot_write(path: str | os.PathLike[str], exc: OSError) -> OutputError:
    return OutputError(f"{os.fspath(path)}: cannot write output ({os_reason(exc)})")


@contextmanager
def giving_up(release: Callable[[], None], path: str | os.PathLike[str]) -> Iterator[None]:
    """Run the block; when it fails, ``release`` what it held first. An OS error (a full disk, a lost mount)
    becomes the one-line :class:`OutputError` naming ``path``; a closed stdout's BrokenPipeError and every
    other failure go through as they are."""
    try:
        yield
    except BrokenPipeError:
        release()
        raise
    except OSError as exc:
        release()
        raise cannot_write(path, exc) from None
    except BaseException:
        release()
        raise


class TextClaim:
    """A CSV/JSONL output held by this run: an open descriptor carrying the lock, until :meth:`release`.
    :meth:`stream` gives the writer a duplicate of it (the same open file, so the same lock): closing the
    stream keeps the output locked, for what the run still does with it (a ranked run ranks it)."""

    def __init__(self, path: Path, fd: int, regular: bool) -> None:
        self.path, self.fd, self.regular = path, fd, regular

    def stream(self) -> IO[str]:
        """The output for appending, as UTF-8 text (its own descriptor; the lock stays with the claim)."""
        return open(os.dup(self.fd), "a" if self.regular else "w", encoding="utf-8", newline="")  # noqa: SIM115

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @property
    def size(self) -> int:
        return os.fstat(self.fd).st_size if self.regular else 0


def claim_text(path: str | os.PathLike[str], resume: bool, overwrite: bool, fmt: str) -> TextClaim:
    """Claim a CSV/JSONL output: lock it, then refuse it (:class:`OutputExists`) when it holds data and
    neither ``resume`` nor ``overwrite`` was asked, empty it for ``overwrite``, cut a torn tail for
    ``resume``. A missing file is created empty. Raises :class:`OutputError` (one line)."""
    file = Path(path)
    special = _special_file(file)
    try:
        fd = os.open(file, (os.O_WRONLY if special else os.O_WRONLY | os.O_CREAT) | getattr(os, "O_CLOEXEC", 0),
                     0o666)
    except OSError as exc:
        raise cannot_write(file, exc) from None
    claim = TextClaim(file, fd, regular=not special)
    if special:
        if resume:
            claim.release()
            raise OutputError(f"{file}: --resume needs a regular file, not a special file")
        return claim
    with giving_up(claim.release, file):
        lock_exclusive(fd, file)
        size = claim.size
        if size and not resume and not overwrite:
            raise OutputExists(exists_message(file, f"holds {size} bytes of rows"))
        if overwrite:
            os.ftruncate(fd, 0)
        if resume:
            repair_torn_tail(file, fmt)
    return claim


def _special_file(path: Path) -> bool:
    """Whether ``path`` exists and is not a regular file (``/dev/null``, ``/dev/full``, a FIFO)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def repair_torn_tail(path: str | os.PathLike[str], fmt: str) -> int:
    """Cut what follows the last complete record of a CSV/JSONL file a killed run left (returns the bytes
    cut). A record ends at a line break outside quotes: in CSV a quoted path may hold line breaks, so the
    quotes are counted from the start of the file (a doubled quote inside a field counts twice and so
    changes nothing); JSON Lines hold no raw line breaks inside a record."""
    find_end: Callable[[Path], int] = _last_csv_record_end if fmt == "csv" else _last_line_end
    file = Path(path)
    end = find_end(file)
    size = file.stat().st_size
    if end < size:
        with open(file, "rb+") as handle:
            handle.truncate(end)
    return size - end


def _last_line_end(path: Path) -> int:
    """The offset just after the last ``\\n`` (0 when there is none)."""
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - SCAN_BLOCK)
            handle.seek(start)
            cut = handle.read(end - start).rfind(b"\n")
            if cut >= 0:
                return start + cut + 1
            end = start
    return 0


def _last_csv_record_end(path: Path) -> int:
    """The offset just after the last ``\\n`` that has an even number of ``"`` before it (0 when none)."""
    last, quotes, offset = 0, 0, 0
    with open(path, "rb") as handle:
        while block := handle.read(SCAN_BLOCK):
            data = np.frombuffer(block, np.uint8)
            parity = (quotes + np.cumsum(data == ord('"'))) & 1  # quotes up to and including each byte
            ends = np.flatnonzero((data == ord("\n")) & (parity == 0))
            if ends.size:
                last = offset + int(ends[-1]) + 1
            quotes = int(parity[-1])
            offset += len(block)
    return last
