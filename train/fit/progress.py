"""A one-line progress bar on stderr for a training epoch."""

from __future__ import annotations

from nima_rt.io.progress import StatusLine, bar


class EpochProgress:
    """A one-line progress bar on stderr while an epoch runs (only when stderr is a terminal)."""

    def __init__(self, label: str, total: int, enabled: bool | None = None) -> None:
        self.label, self.total = label, max(total, 1)
        self.line = StatusLine(enabled, interval=0.2)

    @property
    def enabled(self) -> bool:
        return self.line.enabled

    def update(self, done: int, loss: float) -> None:
        if not (self.line.due() or (self.line.enabled and done >= self.total)):
            return
        rate = done / max(self.line.elapsed, 1e-9)
        self.line.draw(f"{self.label} {bar(done / self.total, 24)} {done}/{self.total} loss {loss:.4f} "
                       f"{rate:.1f} batch/s")

    def close(self) -> None:
        self.line.close()
