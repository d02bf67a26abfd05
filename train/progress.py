"""A one-line progress bar on stderr for a training epoch."""

from __future__ import annotations

import sys
import time


class EpochProgress:
    """A one-line progress bar on stderr while an epoch runs (only when stderr is a terminal)."""

    def __init__(self, label: str, total: int, enabled: bool | None = None) -> None:
        self.label, self.total = label, max(total, 1)
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.start = time.perf_counter()
        self.last_draw = 0.0

    def update(self, done: int, loss: float) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self.last_draw < 0.2 and done < self.total):
            return
        self.last_draw = now
        width = 24
        filled = int(width * done / self.total)
        rate = done / max(now - self.start, 1e-9)
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                         f"loss {loss:.4f} {rate:.1f} batch/s ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
