"""The Backend protocol every runtime implements, and the errors shared by all of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


class BackendUnavailable(RuntimeError):
    """This backend cannot run here; ``str()`` says why in one line."""


@dataclass(frozen=True)
class BackendOutput:
    """One batch's results: ``dist`` [N, 10], ``mean`` [N], ``std`` [N], all float32."""

    dist: np.ndarray
    mean: np.ndarray
    std: np.ndarray


@dataclass(frozen=True)
class BackendOptions:
    """Settings a backend may use; each ignores what it does not need."""

    threads: int | None = None  # CPU intra-op threads of each inference stream (None: all cores)
    streams: int = 1  # onnxruntime-cpu: batches run at the same time (each on `threads` threads)
    cache_dir: str | None = None  # engine/compile caches (TensorRT EP)
    max_batch: int = 256  # the largest batch the caller will send
    precision: str | None = None  # GPU backends: "fp16" | "fp32" (None: the model's policy, fp32 unless its
    # metadata records a passed fp16 check: contract.spec.default_gpu_precision)
    # torch-cuda: turns a training checkpoint into a ContractModule. The runtime never imports the training
    # code itself; the layer that has it (the CLI, or an API user) passes nima_rt.train.load_contract_module.
    checkpoint_loader: Callable[[Path], Any] | None = None


def concurrent_runs(backend: Backend) -> int:
    """How many ``run`` calls ``backend`` takes at once from different threads: its ``concurrent_runs``
    attribute where it has one (onnxruntime-cpu with several streams), else 1 (GPU backends, which keep
    one stream, are called from one thread)."""
    return max(1, int(getattr(backend, "concurrent_runs", 1)))


@runtime_checkable
class Backend(Protocol):
    """Runs a contract model on a uint8 batch [N, S, S, 3]."""

    name: str

    def run(self, images: np.ndarray) -> BackendOutput:
        """Score one batch; raises on failure (the caller decides what a failed batch means)."""
        ...

    def close(self) -> None:
        """Free sessions, engines and device memory."""
        ...
