"""How a run on CPU splits the cores between decoding and inference (docs/guide/runtime.md, "CPU scheduling").

Both sides are thread pools that block when they have nothing to do (decode threads wait for files,
ONNX Runtime's threads do not spin), so giving each side every core wastes nothing: whichever work
is ready runs, and the kernel shares the cores between them. What matters is the shape of the
inference side: one stream per core, each running its own batch on one thread (one ONNX Runtime
session called from several threads), keeps every core inside a kernel, where one batch whose
threads split each operator waits at every operator for the slowest thread (measured in
docs/reference/benchmarks.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class CpuPlan:
    """Decode threads, inference streams (batches run at once) and the intra-op threads of each."""

    decode_workers: int
    streams: int
    threads_per_stream: int

    @property
    def summary(self) -> str:
        per = "thread" if self.threads_per_stream == 1 else "threads"
        return (f"cpu: {self.decode_workers} decode thread(s), {self.streams} inference stream(s) x "
                f"{self.threads_per_stream} {per}")


def plan_cpu(cores: int | None = None, workers: int | None = None, threads: int | None = None,
             streams: int | None = None) -> CpuPlan:
    """The split for ``cores`` (default: this machine's); each of ``workers`` (decode threads), ``threads``
    (inference threads in all) and ``streams`` (batches run at once) overrides its part.

    Default: decode threads = cores, one 1-thread stream per core. ``threads`` alone keeps one thread per
    stream (``threads=1``: one batch at a time on one thread); ``streams`` alone shares the cores between
    them (``streams=1`` on 2 cores: one batch at a time on 2 threads, the schedule before streams existed).
    """
    cores = cores or os.cpu_count() or 1
    for name, value in (("workers", workers), ("threads", threads), ("streams", streams)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    decode_workers = workers or cores
    if streams is None:
        count = threads or cores
        return CpuPlan(decode_workers, count, 1)
    if threads is None:
        return CpuPlan(decode_workers, streams, max(1, cores // streams))
    if threads < streams:
        raise ValueError(f"threads ({threads}) must be >= streams ({streams}): each stream needs a thread")
    return CpuPlan(decode_workers, streams, threads // streams)
