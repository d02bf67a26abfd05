"""One redrawn status line on stderr: what the CLI's file counter and the trainer's epoch bar share.

Shown only when stderr is a terminal (never mixed into piped logs), redrawn at most every
``interval`` seconds, ended with a newline by :meth:`StatusLine.close`.
"""

from __future__ import annotations

import sys
import time


def bar(share: float, width: int) -> str:
    """``[#####.....]`` for ``share`` (clipped to 0..1) of ``width`` characters."""
    filled = int(min(1.0, max(0.0, share)) * width)
    return f"[{'#' * filled}{'.' * (width - filled)}]"


class StatusLine:
    """A line redrawn in place on stderr (``\\r``), only on a terminal unless ``enabled`` says otherwise."""

    def __init__(self, enabled: bool | None = None, interval: float = 0.1) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.interval = interval
        self.start = time.perf_counter()
        self._last_draw = 0.0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def due(self) -> bool:
        """True when the line is shown and the last draw is older than ``interval``."""
        return self.enabled and time.perf_counter() - self._last_draw > self.interval

    def draw(self, text: str) -> None:
        if not self.enabled:
            return
        self._last_draw = time.perf_counter()
        sys.stderr.write(f"\r{text} ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
