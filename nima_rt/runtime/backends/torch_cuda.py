"""PyTorch CUDA backend: the model's training checkpoint run by PyTorch on the GPU.

For machines with torch (CUDA build) but neither TensorRT nor onnxruntime-gpu. PyTorch cannot run
an ONNX file, so this backend runs the checkpoint the ONNX was exported from, wrapped in the same
:class:`~nima_rt.train.model.contract_module.ContractModule` export traced:

- **How to point it at a checkpoint**: put the checkpoint beside the ONNX model with the same stem
  (``aesthetic.onnx`` + ``aesthetic.pt``). It is used only when its sha256 equals the ONNX
  metadata's ``source_checkpoint_sha256`` (written by ``nima-rt export``), so a stale or foreign
  checkpoint can never score under the ONNX model's name. No model_file change was needed.
- **Speed**: the network in half precision (``precision="fp16"``, the default where the model records a
  passed fp16 check, see ``contract.default_gpu_precision``; normalisation and
  the mean/std over the 10 bins stay float32), channels-last memory, uploads from a pinned buffer,
  and CUDA graphs for fixed batches: a batch size seen a second time is captured once and replayed
  from then on (up to MAX_GRAPHS sizes), so the Scorer's fixed batch runs as a graph while a run's
  last, smaller batch runs eagerly instead of paying for a capture it would use once.

Not yet run on a GPU: CPU tests run the same class on ``device="cpu"`` (no graphs, no pinning).
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from nima_rt.contract.choices import GPU_PRECISIONS
from nima_rt.contract.messages import one_line
from nima_rt.contract.spec import NUM_BINS, ContractError, check_outputs, default_gpu_precision
from nima_rt.io.files import file_sha256
from nima_rt.io.model_file import ModelFile
from nima_rt.runtime.backends import cuda_driver
from nima_rt.runtime.backends.base import BackendOptions, BackendOutput, BackendUnavailable

NAME = "torch-cuda"
CHECKPOINT_SUFFIX = ".pt"
WARMUP_RUNS = 3  # eager runs on a side stream before capture, as PyTorch's CUDA graph docs ask
MAX_GRAPHS = 4  # batch sizes kept as captured graphs


def checkpoint_for(model: ModelFile) -> Path:
    """The checkpoint beside ``model`` (same stem, ``.pt``) whose sha256 the metadata records."""
    path = model.path.with_suffix(CHECKPOINT_SUFFIX)
    if not path.is_file():
        raise BackendUnavailable(
            f"needs the training checkpoint {path.name} beside {model.path.name}, see docs/guide/gpu.md"
        )
    expected = model.metadata.source_checkpoint_sha256
    if not expected:
        raise BackendUnavailable(
            f"{model.path.name} records no source_checkpoint_sha256, so {path.name} cannot be matched to it"
        )
    actual = file_sha256(path)
    if actual != expected:
        raise BackendUnavailable(
            f"{path.name} has sha256 {actual[:16]}, but {model.path.name} was exported from {expected[:16]}"
        )
    return path


def availability(model: ModelFile) -> str | None:
    """Why ``torch-cuda`` cannot run ``model`` here, or None when it can. Imports torch last."""
    try:
        cuda_driver.probe_gpu()
        if model.format != "onnx":
            return f"runs .onnx models with their checkpoint beside them, not {model.format} files"
        checkpoint_for(model)
    except BackendUnavailable as exc:
        return str(exc)
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed: pip install 'nima-rt[train]'"
    torch = importlib.import_module("torch")
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} cannot use the GPU: torch.cuda.is_available() is False"
    return None


def create(model: ModelFile, options: BackendOptions) -> TorchCudaBackend:
    reason = availability(model)
    if reason is not None:
        raise BackendUnavailable(reason)
    if options.checkpoint_loader is None:
        raise BackendUnavailable(
            "no checkpoint loader given (the nima-rt CLI passes one; through the API set "
            "ScorerConfig(checkpoint_loader=nima_rt.train.load_contract_module))"
        )
    checkpoint = checkpoint_for(model)
    try:
        contract = options.checkpoint_loader(checkpoint)
    except Exception as exc:  # let --device auto fall back; the row of reasons says what went wrong
        message = one_line(exc)
        raise BackendUnavailable(f"cannot load {checkpoint.name}: {type(exc).__name__}: {message}") from None
    precision = options.precision or default_gpu_precision(model.metadata)
    return TorchCudaBackend(contract, model.metadata.input_size, precision, options.max_batch, source=str(checkpoint))


def _half_network(network: Any) -> Any:
    """Wrap a float network so it runs in fp16 channels-last and hands float32 back."""
    import torch
    from torch import nn

    class HalfNetwork(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner.half().to(memory_format=torch.channels_last)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.half().contiguous(memory_format=torch.channels_last)).float()

    return HalfNetwork(network)


class TorchCudaBackend:
    """Runs a ContractModule (uint8 NHWC in; dist, mean, std out) with PyTorch.

    Takes ownership of ``contract`` (its network is converted in place). ``device="cpu"`` exists
    for tests: no pinned memory, no CUDA graphs.
    """

    name = NAME

    def __init__(self, contract: Any, input_size: int, precision: str = "fp16", max_batch: int = 256,
                 device: str = "cuda", graphs: bool = True, source: str = "<module>") -> None:
        import torch

        if precision not in GPU_PRECISIONS:
            raise BackendUnavailable(f"{NAME}: precision {precision!r} is not one of {', '.join(GPU_PRECISIONS)}")
        self.torch = torch
        self.device = torch.device(device)
        self.precision = precision
        self.source = source
        self.image_shape = (input_size, input_size, 3)
        self.max_batch = max_batch
        on_cuda = self.device.type == "cuda"
        module = contract.eval()
        if precision == "fp16":
            module.network = _half_network(module.network)
        else:
            module.network = module.network.to(memory_format=torch.channels_last)
        self.module = module.to(self.device)
        self.graphs = graphs and on_cuda
        self._seen: set[int] = set()  # batch sizes run once (eagerly)
        self._graphs: dict[int, tuple[Any, Any, Any]] = {}  # batch size -> (graph, static input, outputs)
        self._staging = torch.empty((max_batch, *self.image_shape), dtype=torch.uint8, pin_memory=on_cuda)

    def run(self, images: np.ndarray) -> BackendOutput:
        if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ContractError(f"{self.source}: expected uint8 images [N, {', '.join(map(str, self.image_shape))}], "
                                f"got {images.dtype} {list(images.shape)}")
        empty = (np.empty((0, NUM_BINS), np.float32), np.empty(0, np.float32), np.empty(0, np.float32))
        parts = [self._run_part(images[start:start + self.max_batch])
                 for start in range(0, images.shape[0], self.max_batch)] or [empty]
        dist, mean, std = (np.concatenate([part[i] for part in parts]) for i in range(3))
        check_outputs(dist, mean, std, images.shape[0], self.source)
        return BackendOutput(dist, mean, std)

    def _run_part(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        torch = self.torch
        count = images.shape[0]
        staged = self._staging[:count]
        staged.copy_(torch.from_numpy(images))  # the previous run's .cpu() synchronised: buffer is free
        with torch.no_grad():
            use_graph = self.graphs and (count in self._graphs or
                                         (count in self._seen and len(self._graphs) < MAX_GRAPHS))
            self._seen.add(count)
            if use_graph:
                outputs = self._replay(staged)
            else:
                outputs = self.module(staged.to(self.device, non_blocking=True))
            return tuple(o.float().cpu().numpy() for o in outputs)  # type: ignore[return-value]

    def _replay(self, staged: Any) -> Any:
        torch = self.torch
        count = staged.shape[0]
        if count not in self._graphs:
            static_in = torch.zeros_like(staged, device=self.device)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP_RUNS):
                    self.module(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.module(static_in)
            self._graphs[count] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[count]
        static_in.copy_(staged, non_blocking=True)
        graph.replay()
        return static_out

    def close(self) -> None:
        self._graphs = {}
        self.module = None
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()
