"""How much decode memory may be in flight across decode threads, and handing freed pages back.

A decode reserves its estimated working memory from a :class:`DecodeBudget` (from the declared size,
before any pixel is decoded) and gives it back when the decode, failed or not, is over.
"""

from __future__ import annotations

import functools
import threading

# Decode buffers allowed in flight across all decode threads (see DecodeBudget): with ONNX Runtime's batch
# of 16 and the interpreter this keeps a run under ~600 MB whatever the inputs (docs/guide/runtime.md).
DEFAULT_DECODE_MEMORY = 256 << 20
TRIM_AFTER = 64 << 20  # a decode reserving this much hands its freed pages back to the system after it


class DecodeBudget:
    """Bytes of decode buffers in flight across threads, bounded by ``limit``.

    A decode reserves its estimated working memory (from the declared size, before any pixel is decoded)
    and waits while other decodes hold the budget; one larger than the whole budget runs alone. Decodes
    never wait on anything but other decodes, which always finish, so the wait cannot deadlock.
    """

    def __init__(self, limit: int = DEFAULT_DECODE_MEMORY) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0  # the largest total ever reserved at once (tests and benchmarks read it)
        self._condition = threading.Condition()

    def take(self, nbytes: int) -> None:
        """Wait until ``nbytes`` fit (or nothing else is reserved), then reserve them."""
        with self._condition:
            while self.used and self.used + nbytes > self.limit:
                self._condition.wait()
            self.used += nbytes
            self.peak = max(self.peak, self.used)

    def give_back(self, nbytes: int) -> None:
        with self._condition:
            self.used -= nbytes
            self._condition.notify_all()


class Reservation:
    """One decode's share of a :class:`DecodeBudget`, given back when the decode (failed or not) is over
    and nothing refers to its buffers any more."""

    def __init__(self, budget: DecodeBudget | None) -> None:
        self.budget, self.nbytes = budget, 0

    def take(self, nbytes: int) -> None:
        if self.budget is not None:
            self.budget.take(nbytes)
            self.nbytes += nbytes

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.budget is not None and self.nbytes:
            if self.nbytes >= TRIM_AFTER:
                _release_freed_memory()
            self.budget.give_back(self.nbytes)
            self.nbytes = 0


def _release_freed_memory() -> None:
    """Hand the pages a large decode freed back to the system (glibc keeps them in the decode thread's
    malloc arena otherwise, and the next large decode on another thread adds its own: +200 MB measured)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim():  # type: ignore[no-untyped-def]
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to trim
        return None
