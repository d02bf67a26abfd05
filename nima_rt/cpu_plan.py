"""How a run on CPU splits the cores between decoding and inference (docs/runtime.md, "CPU scheduling").

Both sides are thread pools that block when they have nothing to do (decode threads wait for files,
ONNX Runtime's threads do not spin), so giving each side every core wastes nothing: whichever work
is ready runs, and the kernel shares the cores between them. What matters is the shape of the
inference side: one 1-thread session per core, each running its own batch, keeps every core inside
a kernel, where one session whose threads split each operator waits at every operator for the
slowest thread (measured in docs/benchmarks.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class CpuPlan:
    """Decode threads, parallel inference sessions and the intra-op threads each session uses."""

    decode_workers: int
    sessions: int
    threads_per_session: int

    @property
    def summary(self) -> str:
        per = "thread" if self.threads_per_session == 1 else "threads"
        return (f"cpu: {self.decode_workers} decode thread(s), {self.sessions} inference session(s) x "
                f"{self.threads_per_session} {per}")


def plan_cpu(cores: int | None = None, workers: int | None = None, threads: int | None = None,
             sessions: int | None = None) -> CpuPlan:
    """The split for ``cores`` (default: this machine's); each of ``workers`` (decode threads), ``threads``
    (inference threads in all) and ``sessions`` (inference sessions) overrides its part.

    Default: decode threads = cores, one 1-thread session per core. ``threads`` alone keeps one thread per
    session (``threads=1``: one session, one thread); ``sessions`` alone shares the cores between them
    (``sessions=1`` on 2 cores: one session of 2 threads, the schedule before sessions existed).
    """
    cores = cores or os.cpu_count() or 1
    for name, value in (("workers", workers), ("threads", threads), ("sessions", sessions)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    decode_workers = workers or cores
    if sessions is None:
        count = threads or cores
        return CpuPlan(decode_workers, count, 1)
    if threads is None:
        return CpuPlan(decode_workers, sessions, max(1, cores // sessions))
    if threads < sessions:
        raise ValueError(f"threads ({threads}) must be >= sessions ({sessions}): each session needs a thread")
    return CpuPlan(decode_workers, sessions, threads // sessions)
