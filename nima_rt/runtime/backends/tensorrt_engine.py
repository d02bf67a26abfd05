"""TensorRT engine backend: runs a ``.engine`` built by ``nima-rt export --format tensorrt``.

Before loading, the engine's sidecar (``<engine>.json``) is checked against this machine: the
TensorRT version, the compute capability and the GPU name must all match, else the engine is
refused with a message naming both sides (TensorRT engines are not portable across versions or
GPUs).

Execution uses ``IExecutionContext.set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3`` on
device buffers, the same calls in TensorRT 10 and 11 (:data:`SUPPORTED_TENSORRT_MAJORS`; every call is
checked against NVIDIA's bindings of both in tests/runtime/test_gpu_conformance.py). Memory, streams and events come
from NVIDIA's cuda-python runtime bindings (``cuda.bindings.runtime``), imported lazily. We chose
cuda-python over torch because it is what the TensorRT samples use, it is small (a TensorRT
deployment need not carry a 2 GB torch install), and PyTorch CUDA wheels already depend on it.

A caller's batch is split into chunks of the engine profile's ``opt`` batch (clamped to the
profile). Two slots, each with a pinned host input, device input, device outputs and pinned host
outputs, alternate: chunk k+1 is copied host->device on a copy stream while chunk k executes on
the compute stream; events order the streams (a slot's device input is overwritten only after the
execution reading it finished; its pinned input only after its upload finished). A chunk smaller
than the profile's ``min`` batch is padded with zeros and the padding rows are dropped. (Reading
chunk k-1's results before queueing chunk k+1 already implies both slot rules; the explicit event
waits keep each rule local to the slot, so a change of the reading order cannot break them.)

Not yet run on a GPU: the pipeline logic is tested on CPU against fakes of ``tensorrt`` and
``cuda.bindings.runtime`` (tests/runtime/test_gpu_tensorrt.py), the calls against the real bindings;
real runs are in benchmarks/gpu_check.py.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from nima_rt.contract.messages import one_line
from nima_rt.contract.spec import INPUT_NAME, NUM_BINS, OUTPUT_NAMES, ContractError, check_outputs
from nima_rt.io.model_file import ModelFile
from nima_rt.runtime.backends import cuda_driver
from nima_rt.runtime.backends.base import BackendOptions, BackendOutput, BackendUnavailable

NAME = "tensorrt"
INSTALL_HINT = "pip install 'nima-rt[gpu]'"
# TensorRT major versions this code is written and checked for (tests/runtime/test_gpu_conformance.py
# checks every call against NVIDIA's bindings of each; pyproject.toml's gpu extra must stay inside them).
SUPPORTED_TENSORRT_MAJORS = (10, 11)
CUDA_MAJOR = 13  # the CUDA the gpu extra's wheels are built for (tensorrt-cu13, cuda-python 13, onnxruntime-gpu)
CUDART_MODULE = "cuda.bindings.runtime"
REBUILD_HINT = "rebuild it on this machine with `nima-rt export MODEL.onnx --format tensorrt`"
OUTPUT_TAILS: dict[str, tuple[int, ...]] = {"dist": (NUM_BINS,), "mean": (), "std": ()}


@dataclass(frozen=True)
class EngineTarget:
    """What an engine must have been built for to load here (the sidecar's three checked fields)."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str


def engine_mismatch(model: ModelFile, target: EngineTarget) -> str | None:
    """Why ``model``'s engine cannot load on ``target``, naming both sides; None when it can."""
    built = model.engine
    name = model.path.name
    if built is None:
        return f"{name} has no engine build information in its sidecar {name}.json"
    if built.tensorrt_version != target.tensorrt_version:
        return (f"{name} was built with TensorRT {built.tensorrt_version}, this machine has TensorRT "
                f"{target.tensorrt_version}; {REBUILD_HINT}")
    if built.compute_capability != target.compute_capability:
        return (f"{name} was built for compute capability {built.compute_capability} ({built.gpu_name}), "
                f"this GPU ({target.gpu_name}) has compute capability {target.compute_capability}; {REBUILD_HINT}")
    if built.gpu_name != target.gpu_name:
        return f"{name} was built for GPU {built.gpu_name}, this machine has GPU {target.gpu_name}; {REBUILD_HINT}"
    return None


def module_installed(name: str) -> bool:
    """Whether ``import name`` could find something (an entry in ``sys.modules`` counts)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:  # in sys.modules without a __spec__ (set by hand)
        return True


def import_tensorrt() -> ModuleType:
    """NVIDIA's ``tensorrt`` module, checked to be the real thing and a supported major version.

    Raises BackendUnavailable (one line) when it is missing, does not import, is only an empty
    namespace package (``tensorrt-stubs`` installs ``tensorrt/__init__.pyi`` and nothing else, so
    ``import tensorrt`` succeeds on a machine without TensorRT), or is a major version this code was
    not written for (:data:`SUPPORTED_TENSORRT_MAJORS`, the bounds of the ``gpu`` extra).
    """
    if not module_installed("tensorrt"):
        raise BackendUnavailable(f"tensorrt is not installed: {INSTALL_HINT}")
    try:
        trt = importlib.import_module("tensorrt")
    except Exception as exc:  # a broken install raises OSError/ImportError from its loader
        raise BackendUnavailable(f"tensorrt does not import: {one_line(exc)}") from None
    version = getattr(trt, "__version__", None)
    if getattr(trt, "__file__", None) is None or not isinstance(version, str) or not hasattr(trt, "Builder"):
        where = ", ".join(str(p) for p in getattr(trt, "__path__", [])) or "unknown"
        raise BackendUnavailable(f"tensorrt at {where} is an empty package (type stubs such as tensorrt-stubs?), "
                                 f"not NVIDIA's TensorRT: {INSTALL_HINT}")
    major = version.split(".", 1)[0]
    if not major.isdigit() or int(major) not in SUPPORTED_TENSORRT_MAJORS:
        supported = " and ".join(f"{m}.x" for m in SUPPORTED_TENSORRT_MAJORS)
        raise BackendUnavailable(f"TensorRT {version} is not supported (nima-rt is written for TensorRT {supported}): "
                                 f"{INSTALL_HINT}")
    return trt


def tensorrt_version() -> str:
    """``tensorrt.__version__`` of a usable TensorRT (see :func:`import_tensorrt`)."""
    return str(import_tensorrt().__version__)


def import_cudart() -> ModuleType:
    """NVIDIA's CUDA runtime bindings, ``cuda.bindings.runtime`` (cuda-bindings 13, the ``gpu`` extra)."""
    try:
        return importlib.import_module(CUDART_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name in ("cuda", "cuda.bindings", CUDART_MODULE):
            raise BackendUnavailable(f"cuda-python is not installed: {INSTALL_HINT}") from None
        raise BackendUnavailable(f"{CUDART_MODULE} does not import: {one_line(exc)}") from None
    except ImportError as exc:  # installed but broken (a missing shared library, a wrong build)
        raise BackendUnavailable(f"{CUDART_MODULE} does not import: {one_line(exc)}") from None


def current_target() -> EngineTarget:
    """This machine's TensorRT version, GPU name and compute capability (what export records)."""
    gpu = cuda_driver.probe_gpu()
    return EngineTarget(tensorrt_version(), gpu.name, gpu.compute_capability)


def runtime_unavailable() -> str | None:
    """Why TensorRT engines cannot run on this machine at all (GPU, tensorrt, cuda-python), or None."""
    try:
        cuda_driver.probe_gpu()
        tensorrt_version()
        import_cudart()
    except BackendUnavailable as exc:
        return str(exc)
    return None


def availability(model: ModelFile) -> str | None:
    """Why the TensorRT engine backend cannot run ``model`` here, or None when it can."""
    try:
        cuda_driver.probe_gpu()
        if model.format != "engine":
            return f"needs a TensorRT .engine file, not an {model.format} model"
        target = current_target()
        import_cudart()
    except BackendUnavailable as exc:
        return str(exc)
    return engine_mismatch(model, target)


def create(model: ModelFile, options: BackendOptions) -> TensorRTBackend:
    reason = availability(model)
    if reason is not None:
        raise BackendUnavailable(reason)
    return TensorRTBackend(model, import_tensorrt(), import_cudart())


def start_failure(factory: str, exc: BaseException) -> str:
    """The one line for a TensorRT factory that returned nothing. NVIDIA's bindings raise
    ``TypeError: pybind11::init(): factory function returned nullptr`` from ``trt.Builder`` and
    ``trt.Runtime`` when TensorRT cannot initialise CUDA (no usable GPU, a driver too old for its CUDA)."""
    return (f"TensorRT could not start: {factory} failed ({one_line(exc)}); TensorRT could not initialise CUDA "
            f"(check the NVIDIA driver, that the GPU is visible, and that the driver supports CUDA {CUDA_MAJOR})")


class CudaError(RuntimeError):
    """A CUDA runtime call failed; ``str()`` is ``CUDA <function> failed: <error name>``."""


def cuda_call(cudart: Any, function: str, *args: Any) -> Any:
    """Call a cuda-python runtime function (they return ``(error, *values)``): raise on error, else the value(s)."""
    result = getattr(cudart, function)(*args)
    error, values = result[0], result[1:]
    if int(error) != 0:
        named = cudart.cudaGetErrorName(error) if hasattr(cudart, "cudaGetErrorName") else None
        text = named[1].decode() if isinstance(named, tuple) and isinstance(named[1], bytes) else str(error)
        raise CudaError(f"CUDA {function} failed: {text}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


class _Cuda:
    """``cuda_call`` bound to one cuda-python runtime module."""

    def __init__(self, cudart: Any) -> None:
        self.rt = cudart

    def __call__(self, function: str, *args: Any) -> Any:
        return cuda_call(self.rt, function, *args)


@dataclass
class _Slot:
    """One half of the double buffer."""

    host_input: np.ndarray
    device_input: int
    host_outputs: dict[str, np.ndarray]
    device_outputs: dict[str, int]
    uploaded: Any  # event: the host->device copy from host_input finished
    computed: Any  # event: the execution reading device_input finished
    downloaded: Any  # event: the device->host copies into host_outputs finished


class TensorRTBackend:
    """Runs a contract TensorRT engine; see the module docstring for the buffering scheme."""

    name = NAME

    def __init__(self, model: ModelFile, trt: Any, cudart: Any) -> None:
        self.model = model
        self.precision = model.engine.precision if model.engine else "unknown"
        self._cuda = _Cuda(cudart)
        self._allocated: list[tuple[str, int]] = []  # (free function, pointer)
        self._streams: list[Any] = []
        self._events: list[Any] = []
        self.slots: list[_Slot] = []
        self.logger = trt.Logger(trt.Logger.WARNING)
        try:
            self.runtime = trt.Runtime(self.logger)
        except TypeError as exc:
            raise BackendUnavailable(start_failure("trt.Runtime", exc)) from None
        self.engine = self.runtime.deserialize_cuda_engine(model.path.read_bytes())
        if self.engine is None:
            raise ContractError(f"{model.path}: TensorRT could not deserialize the engine (see the messages above)")
        size = model.metadata.input_size
        self.image_shape = (size, size, 3)
        self.min_batch, self.opt_batch, self.max_batch = self._check_io(trt)
        self.chunk = min(max(self.opt_batch, self.min_batch), self.max_batch)
        self.context = self.engine.create_execution_context()
        try:
            self._allocate(cudart)
        except Exception:
            self.close()
            raise

    # -- setup ----------------------------------------------------------------------------------

    def _check_io(self, trt: Any) -> tuple[int, int, int]:
        path, engine = self.model.path, self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if inputs != [INPUT_NAME] or engine.get_tensor_dtype(INPUT_NAME) != trt.DataType.UINT8:
            found = ", ".join(f"{n}:{engine.get_tensor_dtype(n)}" for n in inputs)
            raise ContractError(f"{path}: engine input must be one uint8 tensor '{INPUT_NAME}', found {found}")
        missing = [n for n in OUTPUT_NAMES if n not in names]
        if missing:
            raise ContractError(f"{path}: engine lacks output(s) {', '.join(missing)} (has {', '.join(names)})")
        for output in OUTPUT_NAMES:
            if engine.get_tensor_dtype(output) != trt.DataType.FLOAT:
                raise ContractError(f"{path}: engine output {output!r} must be float32, "
                                    f"is {engine.get_tensor_dtype(output)}")
        low, opt, high = (tuple(int(d) for d in shape) for shape in engine.get_tensor_profile_shape(INPUT_NAME, 0))
        for shape in (low, opt, high):
            if shape[1:] != self.image_shape:
                raise ContractError(f"{path}: engine profile input shape {shape} does not match the sidecar's "
                                    f"input size (expected [N, {', '.join(map(str, self.image_shape))}])")
        return low[0], opt[0], high[0]

    def _malloc(self, nbytes: int, pinned: bool) -> int:
        pointer = int(self._cuda("cudaMallocHost" if pinned else "cudaMalloc", nbytes))
        self._allocated.append(("cudaFreeHost" if pinned else "cudaFree", pointer))
        return pointer

    def _pinned_array(self, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        pointer = self._malloc(nbytes, pinned=True)
        raw = (ctypes.c_uint8 * nbytes).from_address(pointer)
        return np.frombuffer(raw, dtype=np.uint8).view(dtype).reshape(shape)

    def _allocate(self, cudart: Any) -> None:
        self.copy_stream = self._cuda("cudaStreamCreateWithFlags", cudart.cudaStreamNonBlocking)
        self.compute_stream = self._cuda("cudaStreamCreateWithFlags", cudart.cudaStreamNonBlocking)
        self._streams = [self.copy_stream, self.compute_stream]
        for _ in range(2):
            host_input = self._pinned_array((self.chunk, *self.image_shape), np.uint8)
            device_input = self._malloc(host_input.nbytes, pinned=False)
            host_outputs = {n: self._pinned_array((self.chunk, *OUTPUT_TAILS[n]), np.float32) for n in OUTPUT_NAMES}
            device_outputs = {n: self._malloc(a.nbytes, pinned=False) for n, a in host_outputs.items()}
            events = [self._cuda("cudaEventCreateWithFlags", cudart.cudaEventDisableTiming) for _ in range(3)]
            self._events.extend(events)
            self.slots.append(_Slot(host_input, device_input, host_outputs, device_outputs, *events))

    # -- running --------------------------------------------------------------------------------

    def run(self, images: np.ndarray) -> BackendOutput:
        if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            expected = ", ".join(map(str, self.image_shape))
            raise ContractError(f"{self.model.path}: expected uint8 images [N, {expected}], "
                                f"got {images.dtype} {list(images.shape)}")
        count = images.shape[0]
        results = {n: np.empty((count, *OUTPUT_TAILS[n]), np.float32) for n in OUTPUT_NAMES}
        waiting: tuple[_Slot, int, int] | None = None
        for index, start in enumerate(range(0, count, self.chunk)):
            stop = min(start + self.chunk, count)
            slot = self.slots[index % 2]
            rows = self._upload(slot, images[start:stop])
            self._execute(slot, rows)
            if waiting is not None:  # chunk k's results are read while chunk k+1 is already queued
                self._collect(*waiting, results)
            waiting = (slot, start, stop)
        if waiting is not None:
            self._collect(*waiting, results)
        dist, mean, std = (results[n] for n in OUTPUT_NAMES)
        check_outputs(dist, mean, std, count, str(self.model.path))
        return BackendOutput(dist, mean, std)

    def _upload(self, slot: _Slot, part: np.ndarray) -> int:
        rt = self._cuda.rt
        rows = max(len(part), self.min_batch)
        self._cuda("cudaEventSynchronize", slot.uploaded)  # the last copy out of this pinned buffer is done
        slot.host_input[: len(part)] = part
        slot.host_input[len(part) : rows] = 0
        self._cuda("cudaStreamWaitEvent", self.copy_stream, slot.computed, 0)  # device input free again
        nbytes = rows * slot.host_input[0].nbytes
        self._cuda("cudaMemcpyAsync", slot.device_input, slot.host_input.ctypes.data, nbytes,
                   rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.copy_stream)
        self._cuda("cudaEventRecord", slot.uploaded, self.copy_stream)
        return rows

    def _execute(self, slot: _Slot, rows: int) -> None:
        rt = self._cuda.rt
        self._cuda("cudaStreamWaitEvent", self.compute_stream, slot.uploaded, 0)
        if not self.context.set_input_shape(INPUT_NAME, (rows, *self.image_shape)):
            raise RuntimeError(f"{self.model.path}: TensorRT refused input shape {(rows, *self.image_shape)}")
        self.context.set_tensor_address(INPUT_NAME, slot.device_input)
        for name in OUTPUT_NAMES:
            self.context.set_tensor_address(name, slot.device_outputs[name])
        if not self.context.execute_async_v3(int(self.compute_stream)):
            raise RuntimeError(f"{self.model.path}: TensorRT execute_async_v3 failed (see the messages above)")
        self._cuda("cudaEventRecord", slot.computed, self.compute_stream)
        for name in OUTPUT_NAMES:
            host = slot.host_outputs[name]
            self._cuda("cudaMemcpyAsync", host.ctypes.data, slot.device_outputs[name], rows * host[0].nbytes,
                       rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.compute_stream)
        self._cuda("cudaEventRecord", slot.downloaded, self.compute_stream)

    def _collect(self, slot: _Slot, start: int, stop: int, results: dict[str, np.ndarray]) -> None:
        self._cuda("cudaEventSynchronize", slot.downloaded)
        for name in OUTPUT_NAMES:
            results[name][start:stop] = slot.host_outputs[name][: stop - start]

    def close(self) -> None:
        """Wait for queued work, then free buffers, events, streams, context and engine."""
        cuda = getattr(self, "_cuda", None)
        if cuda is None:
            return
        for stream in self._streams:
            cuda("cudaStreamSynchronize", stream)
        self.slots = []
        for free, pointer in reversed(self._allocated):
            cuda(free, pointer)
        for event in self._events:
            cuda("cudaEventDestroy", event)
        for stream in self._streams:
            cuda("cudaStreamDestroy", stream)
        self._allocated, self._events, self._streams = [], [], []
        self.context = self.engine = self.runtime = None
        self._cuda = None  # type: ignore[assignment]
