"""ONNX Runtime backend (CPU execution provider; CUDA/TensorRT providers where installed).

On CPU the backend can hold several sessions (``BackendOptions.sessions``), each with its own
intra-op threads, so that several batches run at once (the scorer sends up to ``concurrent_runs``
batches from as many threads). One 1-thread session per core keeps every core inside a convolution
kernel, where one session with one thread per core spends part of each operator waiting for its
slowest thread (docs/runtime.md, "CPU scheduling"). Sessions past the first open when a batch finds
all the others busy, so a one-image run loads the model once.
"""

from __future__ import annotations

import os
import queue
import threading

import numpy as np
import onnxruntime as ort

from ..contract import INPUT_NAME, OUTPUT_NAMES, ContractError, check_outputs
from ..model_file import ModelFile
from .base import BackendOptions, BackendOutput, BackendUnavailable

CPU_PROVIDER = "CPUExecutionProvider"


def provider_unavailable_reason(provider: str) -> str | None:
    """None when this onnxruntime build offers ``provider``, else the reason in one line."""
    available = ort.get_available_providers()
    if provider in available:
        return None
    return f"onnxruntime {ort.__version__} has no {provider} (has: {', '.join(available)})"


def session_options(threads: int | None, memory_pattern: bool = True) -> ort.SessionOptions:
    """The runtime's session settings. ``memory_pattern=False`` (the CPU backend) lets each run allocate
    from the arena as it goes instead of planning one block per input shape: measured on the bundled
    model with two sessions, peak RSS 250 vs 266 MB at batch 4 (337 vs 367 at 8) for no loss of speed."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.enable_mem_pattern = memory_pattern
    # Spinning threads steal the cores the decoders need (measured: -7% end to end on 2 cores).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def check_session_io(session: ort.InferenceSession, model: ModelFile) -> None:
    """Refuse a model whose inputs/outputs are not the contract's."""
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME or inputs[0].type != "tensor(uint8)":
        found = ", ".join(f"{i.name}:{i.type}" for i in inputs)
        raise ContractError(f"{model.path}: model input must be one uint8 tensor '{INPUT_NAME}', found {found}")
    names = [output.name for output in session.get_outputs()]
    missing = [name for name in OUTPUT_NAMES if name not in names]
    if missing:
        raise ContractError(f"{model.path}: model lacks output(s) {', '.join(missing)} (has {', '.join(names)})")


class OnnxRuntimeBackend:
    """Runs an ONNX contract model with up to ``sessions`` ONNX Runtime sessions of the same file.

    ``run`` may be called from ``concurrent_runs`` threads at once; each call takes a free session
    (opening another while fewer than ``sessions`` exist) and gives it back when done.
    """

    def __init__(
        self,
        model: ModelFile,
        providers: list[str | tuple[str, dict[str, str]]],
        name: str,
        options: BackendOptions = BackendOptions(),
        sessions: int = 1,
        memory_pattern: bool = True,
    ) -> None:
        if model.format != "onnx":
            raise BackendUnavailable(f"{name} runs ONNX models, not {model.format} files")
        if sessions < 1:
            raise ValueError(f"sessions must be >= 1, got {sessions}")
        self.name = name
        self.model = model
        self.concurrent_runs = sessions
        self._providers_wanted = providers
        self._threads = options.threads
        self._memory_pattern = memory_pattern
        self._free: queue.SimpleQueue[ort.InferenceSession] = queue.SimpleQueue()
        self._opened = 0
        self._lock = threading.Lock()
        self.session = self._open_session()
        check_session_io(self.session, model)
        self.providers = self.session.get_providers()
        self._free.put(self.session)

    def _open_session(self) -> ort.InferenceSession:
        try:
            session = ort.InferenceSession(
                str(self.model.path), sess_options=session_options(self._threads, self._memory_pattern), providers=self._providers_wanted
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            message = " ".join(str(exc).split())
            raise ContractError(f"{self.model.path}: onnxruntime cannot load the model ({message})") from None
        self._opened += 1
        return session

    def _take_session(self) -> ort.InferenceSession:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._opened < self.concurrent_runs:
                return self._open_session()
        return self._free.get()

    def run(self, images: np.ndarray) -> BackendOutput:
        if self.session is None:
            raise RuntimeError(f"{self.name}: backend is closed")
        session = self._take_session()
        try:
            dist, mean, std = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
        finally:
            self._free.put(session)
        check_outputs(dist, mean, std, images.shape[0], str(self.model.path))
        return BackendOutput(dist.astype(np.float32, copy=False), mean.astype(np.float32, copy=False),
                             std.astype(np.float32, copy=False))

    @property
    def sessions_opened(self) -> int:
        """How many sessions this backend has opened so far (at most ``concurrent_runs``)."""
        return self._opened

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
        self._free = queue.SimpleQueue()


def availability(model: ModelFile) -> str | None:
    """Why ``onnxruntime-cpu`` cannot run ``model`` here, or None when it can."""
    if model.format != "onnx":
        return f"runs .onnx models, not {model.format} files"
    return provider_unavailable_reason(CPU_PROVIDER)


def create(model: ModelFile, options: BackendOptions) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(model, [CPU_PROVIDER], "onnxruntime-cpu", options, sessions=options.sessions,
                              memory_pattern=False)
