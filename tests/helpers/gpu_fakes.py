"""Fakes of NVIDIA's GPU libraries that compute real scores on the CPU, shared by the CPU tests and
``benchmarks/gpu_check.py --dry-run``.

- :class:`FakeCudaRuntime`: cuda-python's runtime calls on host memory, with *lazy* streams: nothing
  queued on a stream runs until the host synchronises on it (an event or the stream), and a stream
  waiting on an event first runs the other stream up to that event. That is the most adversarial
  schedule CUDA allows, so a missing event wait gives wrong numbers.
- :class:`FakeTensorRT`: the builder and runtime halves of the TensorRT Python API (10.x, or 11.x
  without the flags and calibrator 11 removed). The "plan" it builds carries the ONNX graph the
  parser read, and its engines run that graph with ONNX Runtime on the CPU, reading and writing
  the addresses TensorRT was given: an fp16 engine computes the fp16 graph, an INT8 one the Q/DQ graph.
- :class:`FakeOnnxRuntimeGpu`: ``onnxruntime`` as the GPU build looks (CUDA and TensorRT providers
  listed); its sessions run on the CPU and report the providers asked for, or, like the real GPU
  build without its CUDA libraries, fewer (``drops``).
- :func:`install_fake_gpu`: all of the above plus a fake GPU, torch-cuda and GPU decode on the CPU.

Names mirror NVIDIA's (tests/runtime/test_gpu_conformance.py checks the code against the real
bindings; these fakes only have to accept the same calls).
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import json
import types
from collections.abc import Callable
from typing import Any

import numpy as np

PLAN_MAGIC = b"nima-rt fake TensorRT plan\n"
FAKE_GPU_NAME = "fake GPU (CPU stand-in)"
GPU_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


class FakeCudaRuntime:
    """cuda-python's runtime API (the calls nima-rt makes), with lazily executed streams."""

    cudaStreamNonBlocking = 1
    cudaEventDisableTiming = 2

    class cudaMemcpyKind:  # noqa: N801 - mirrors cuda-python's name
        cudaMemcpyHostToDevice = "H2D"
        cudaMemcpyDeviceToHost = "D2H"

    def __init__(self) -> None:
        self.memory: dict[int, ctypes.Array] = {}
        self.streams: dict[int, list] = {}
        self.done: dict[int, int] = {}
        self.events: dict[int, tuple[int, int] | None] = {}
        self.calls: list[tuple] = []
        self._next = 1

    def _id(self) -> int:
        self._next += 1
        return self._next

    def _alloc(self, size: int) -> tuple[int, int]:
        buffer = ctypes.create_string_buffer(size)
        self.memory[ctypes.addressof(buffer)] = buffer
        return 0, ctypes.addressof(buffer)

    cudaMalloc = _alloc
    cudaMallocHost = _alloc

    def _free(self, pointer: int) -> tuple[int]:
        del self.memory[pointer]
        return (0,)

    cudaFree = _free
    cudaFreeHost = _free

    def cudaStreamCreateWithFlags(self, flags: int) -> tuple[int, int]:  # noqa: N802
        stream = self._id()
        self.streams[stream], self.done[stream] = [], 0
        return 0, stream

    def cudaEventCreateWithFlags(self, flags: int) -> tuple[int, int]:  # noqa: N802
        event = self._id()
        self.events[event] = None
        return 0, event

    def enqueue(self, stream: int, op: Callable[[], Any]) -> None:
        self.streams[stream].append(op)

    def _run_until(self, stream: int, position: int) -> None:
        ops = self.streams[stream]
        while self.done[stream] < position:
            op = ops[self.done[stream]]
            self.done[stream] += 1
            op()

    def cudaEventRecord(self, event: int, stream: int) -> tuple[int]:  # noqa: N802
        self.calls.append(("record", event, stream))
        self.events[event] = (stream, len(self.streams[stream]))
        return (0,)

    def cudaEventSynchronize(self, event: int) -> tuple[int]:  # noqa: N802
        self.calls.append(("sync", event))
        if self.events[event] is not None:  # never recorded: nothing to wait for (as in CUDA)
            self._run_until(*self.events[event])
        return (0,)

    def cudaStreamWaitEvent(self, stream: int, event: int, flags: int) -> tuple[int]:  # noqa: N802
        target = self.events[event]
        self.enqueue(stream, lambda: target is not None and self._run_until(*target))
        return (0,)

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: str, stream: int) -> tuple[int]:  # noqa: N802
        self.calls.append(("copy", kind, stream, count))
        self.enqueue(stream, lambda: ctypes.memmove(dst, src, count))
        return (0,)

    def cudaStreamSynchronize(self, stream: int) -> tuple[int]:  # noqa: N802
        self._run_until(stream, len(self.streams[stream]))
        return (0,)

    def cudaStreamDestroy(self, stream: int) -> tuple[int]:  # noqa: N802
        del self.streams[stream]
        return (0,)

    def cudaEventDestroy(self, event: int) -> tuple[int]:  # noqa: N802
        del self.events[event]
        return (0,)

    def cudaGetErrorName(self, error: int) -> tuple[int, bytes]:  # noqa: N802
        return 0, b"cudaErrorFake"


# -- TensorRT -------------------------------------------------------------------------------------


class _Flag(int):
    """An enum member: ``int()`` gives its value and ``str()`` its name, like pybind11 enums."""

    label = ""

    def __str__(self) -> str:
        return self.label


def _members(enum: str, **values: int) -> type:
    members = {}
    for name, value in values.items():
        members[name] = _Flag(value)
        members[name].label = f"{enum}.{name}"
    return type(enum, (), members)


class FakeTensorRT(types.ModuleType):
    """The TensorRT Python API nima-rt uses, building "plans" that run their ONNX graph on ONNX Runtime.

    ``version`` 10.x has ``BuilderFlag.FP16``/``INT8`` (unused by nima-rt since it builds strongly typed
    networks); 11.x has only ``TF32`` among the precision flags, as NVIDIA's 11.x bindings.
    """

    def __init__(self, cuda: FakeCudaRuntime, version: str = "10.16.1.11") -> None:
        super().__init__("tensorrt")
        self.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
        self.__file__ = "<fake tensorrt>"
        self.__version__ = version
        self.cuda = cuda
        self.networks: list[FakeNetwork] = []
        self.configs: list[FakeConfig] = []
        self.timing_in: list[bytes] = []
        self.executed: list[int] = []
        major = int(version.split(".")[0])
        severity = _members("Severity", INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        class ILogger:
            Severity = severity

            def __init__(self) -> None:
                pass

        class Logger(ILogger):
            WARNING = severity.WARNING

            def __init__(self, min_severity: int = severity.WARNING) -> None:
                super().__init__()
                self.min_severity = min_severity

        self.ILogger, self.Logger = ILogger, Logger
        # NVIDIA's values: 10.x EXPLICIT_BATCH=0, STRONGLY_TYPED=1; 11.x dropped EXPLICIT_BATCH, STRONGLY_TYPED=0
        creation = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1} if major < 11 else {"STRONGLY_TYPED": 0}
        self.NetworkDefinitionCreationFlag = _members("NetworkDefinitionCreationFlag", **creation)
        self.BuilderFlag = _members("BuilderFlag", TF32=7, **({"FP16": 0, "INT8": 1} if major < 11 else {}))
        self.MemoryPoolType = _members("MemoryPoolType", WORKSPACE=0)
        self.TensorIOMode = _members("TensorIOMode", NONE=0, INPUT=1, OUTPUT=2)
        self.DataType = _members("DataType", FLOAT=0, HALF=1, INT8=2, INT32=3, BOOL=4, UINT8=5)
        fake = self

        class Builder:
            def __init__(self, logger: ILogger) -> None:
                self.logger = logger

            def create_network(self, flags: int = 0) -> FakeNetwork:
                network = FakeNetwork(int(flags))
                fake.networks.append(network)
                return network

            def create_builder_config(self) -> FakeConfig:
                config = FakeConfig(fake)
                fake.configs.append(config)
                return config

            def create_optimization_profile(self) -> dict:
                return FakeProfile()

            def build_serialized_network(self, network: FakeNetwork, config: FakeConfig) -> bytes:
                header = {"profiles": config.profiles, "flags": sorted(config.flags),
                          "strongly_typed": network.strongly_typed(fake)}
                return PLAN_MAGIC + json.dumps(header).encode() + b"\n" + network.onnx

        class OnnxParser:
            num_errors = 0

            def __init__(self, network: FakeNetwork, logger: ILogger) -> None:
                self.network = network

            def parse_from_file(self, model: str) -> bool:
                import onnx

                with open(model, "rb") as file:
                    data = file.read()
                graph = onnx.load_from_string(data).graph
                initializers = {i.name for i in graph.initializer}
                self.network.inputs = [i.name for i in graph.input if i.name not in initializers]
                self.network.onnx, self.network.parsed = data, model
                return True

        class Runtime:
            def __init__(self, logger: ILogger) -> None:
                self.logger = logger

            def deserialize_cuda_engine(self, serialized_engine: bytes) -> FakeEngine | None:
                data = bytes(serialized_engine)
                if not data.startswith(PLAN_MAGIC):
                    return None
                header, onnx_bytes = data[len(PLAN_MAGIC):].split(b"\n", 1)
                return FakeEngine(fake, json.loads(header), onnx_bytes)

        self.Builder, self.OnnxParser, self.Runtime = Builder, OnnxParser, Runtime


def fake_plan(onnx_bytes: bytes, input_name: str, size: int, profile: tuple[int, int, int]) -> bytes:
    """What :class:`FakeTensorRT`'s builder writes for ``onnx_bytes`` with one batch profile (min, opt, max)."""
    shapes = [[batch, size, size, 3] for batch in profile]
    header = {"profiles": [{input_name: shapes}], "flags": ["TF32"], "strongly_typed": True}
    return PLAN_MAGIC + json.dumps(header).encode() + b"\n" + onnx_bytes


class FakeNetwork:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs: list[str] = []
        self.onnx = b""
        self.parsed = ""

    def strongly_typed(self, trt: FakeTensorRT) -> bool:
        """TensorRT 11 networks always are; on 10.x only with the STRONGLY_TYPED creation flag."""
        if int(trt.__version__.split(".")[0]) >= 11:
            return True
        return bool(self.flags & (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)))

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, index: int) -> Any:
        return types.SimpleNamespace(name=self.inputs[index])


class FakeProfile(dict):
    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 - TensorRT's names
        self[input] = [list(min), list(opt), list(max)]


class FakeTimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> bytes:
        return self.data + b"+timings"


class FakeConfig:
    def __init__(self, trt: FakeTensorRT) -> None:
        self.trt = trt
        self.flags = {"TF32"}  # TensorRT's default
        self.profiles: list[dict] = []
        self.workspace: int | None = None
        self.timing: FakeTimingCache | None = None

    def _name(self, flag: int) -> str:
        return next(n for n, v in vars(self.trt.BuilderFlag).items() if not n.startswith("_") and v == flag)

    def set_flag(self, flag: int) -> None:
        self.flags.add(self._name(flag))

    def clear_flag(self, flag: int) -> None:
        self.flags.discard(self._name(flag))

    def set_memory_pool_limit(self, pool: int, pool_size: int) -> None:
        self.workspace = pool_size

    def add_optimization_profile(self, profile: dict) -> int:
        self.profiles.append(dict(profile))
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache: bytes) -> FakeTimingCache:
        self.trt.timing_in.append(bytes(serialized_timing_cache))
        return FakeTimingCache(bytes(serialized_timing_cache))

    def set_timing_cache(self, cache: FakeTimingCache, ignore_mismatch: bool) -> bool:
        self.timing = cache
        return True

    def get_timing_cache(self) -> FakeTimingCache | None:
        return self.timing


ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 9: "BOOL", 2: "UINT8"}


class FakeEngine:
    """An engine whose execution runs its ONNX graph on ONNX Runtime (CPU, one thread)."""

    def __init__(self, trt: FakeTensorRT, header: dict, onnx_bytes: bytes) -> None:
        import onnx
        import onnxruntime as ort

        self.trt, self.header = trt, header
        graph = onnx.load_from_string(onnx_bytes).graph
        initializers = {i.name for i in graph.initializer}
        tensors = [i for i in graph.input if i.name not in initializers] + list(graph.output)
        self.inputs = [i.name for i in graph.input if i.name not in initializers]
        self.names = [t.name for t in tensors]
        self.types = {t.name: getattr(trt.DataType, ONNX_TO_TRT[t.type.tensor_type.elem_type]) for t in tensors}
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in graph.output]

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> int:
        return self.trt.TensorIOMode.INPUT if name in self.inputs else self.trt.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> int:
        return self.types[name]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        return [tuple(shape) for shape in self.header["profiles"][profile_index][name]]

    def create_execution_context(self) -> FakeContext:
        return FakeContext(self)


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.shape: tuple[int, ...] = ()
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        low, _, high = self.engine.get_tensor_profile_shape(name, 0)
        self.shape = tuple(shape)
        return low[0] <= shape[0] <= high[0] and tuple(shape[1:]) == tuple(low[1:])

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self.addresses[name] = memory
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        engine, shape, addresses = self.engine, self.shape, dict(self.addresses)  # captured at enqueue

        def run() -> None:
            name = engine.inputs[0]
            raw = ctypes.string_at(addresses[name], int(np.prod(shape)))
            outputs = engine.session.run(engine.outputs, {name: np.frombuffer(raw, np.uint8).reshape(shape)})
            for output, array in zip(engine.outputs, outputs, strict=True):
                data = np.ascontiguousarray(array, dtype=np.float32).tobytes()
                ctypes.memmove(addresses[output], data, len(data))
            engine.trt.executed.append(shape[0])

        engine.trt.cuda.enqueue(int(stream_handle), run)
        return True


# -- ONNX Runtime GPU build -----------------------------------------------------------------------


class FakeOnnxRuntimeGpu(types.ModuleType):
    """``onnxruntime`` as the GPU build presents itself; everything else is the real module.

    Sessions run on the CPU and report the providers they were asked for, less ``drops``: nothing
    dropped is a GPU that works; dropping the GPU providers is what the real onnxruntime-gpu does when
    the CUDA/cuDNN/TensorRT libraries are missing (it warns and runs on the CPU).
    """

    def __init__(self, real: types.ModuleType, drops: frozenset[str] = frozenset()) -> None:
        super().__init__("onnxruntime")
        self._real = real
        self.sessions: list[Any] = []
        fake_module = self

        class InferenceSession:
            def __init__(self, path_or_bytes: Any, sess_options: Any = None, providers: Any = None) -> None:
                self._session = real.InferenceSession(path_or_bytes, sess_options, providers=["CPUExecutionProvider"])
                self.asked = providers
                fake_module.sessions.append(self)
                names = [p[0] if isinstance(p, tuple) else p for p in providers or ["CPUExecutionProvider"]]
                self._providers = [n for n in dict.fromkeys([*names, "CPUExecutionProvider"]) if n not in drops]

            def get_providers(self) -> list[str]:
                return list(self._providers)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._session, name)

        self.InferenceSession = InferenceSession

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def get_available_providers(self) -> list[str]:
        return list(GPU_PROVIDERS)

    def preload_dlls(self, *args: Any, **kwargs: Any) -> None:
        """The GPU build loads CUDA/cuDNN from the nvidia-* wheels here; nothing to load for a fake."""


# -- everything at once ---------------------------------------------------------------------------


def fake_gpu_info() -> Any:
    from nima_rt.runtime.backends import cuda_driver

    return cuda_driver.GpuInfo(name=FAKE_GPU_NAME, compute_capability="9.0", driver_version="13.0", device_count=1)


def install_fake_gpu(patch: Any, tensorrt_version: str = "10.16.1.11") -> FakeTensorRT:
    """Make every GPU path of nima-rt run on the CPU: a GPU the driver probe reports, TensorRT and
    cuda-python fakes, onnxruntime's GPU providers, torch-cuda and GPU decode on ``device="cpu"``.

    ``patch`` is a ``pytest.MonkeyPatch`` (``setattr``/``setitem``; undone by its ``undo``).
    Returns the fake TensorRT module (its ``cuda`` is the fake CUDA runtime).
    """
    import sys

    import onnxruntime

    from nima_rt.runtime import gpu_decode
    from nima_rt.runtime.backends import cuda_driver, onnxruntime_backend, onnxruntime_gpu, tensorrt_engine, torch_cuda

    cuda = FakeCudaRuntime()
    trt = FakeTensorRT(cuda, tensorrt_version)
    patch.setattr(cuda_driver, "probe_gpu", fake_gpu_info)
    patch.setitem(sys.modules, "tensorrt", trt)
    patch.setattr(tensorrt_engine, "import_cudart", lambda: cuda)
    fake_ort = FakeOnnxRuntimeGpu(onnxruntime)
    patch.setattr(onnxruntime_backend, "ort", fake_ort)
    patch.setattr(onnxruntime_gpu, "ort", fake_ort)

    real_availability = torch_cuda.availability

    def availability(model: Any) -> str | None:
        import torch

        with _patched(torch.cuda, "is_available", lambda: True):
            return real_availability(model)

    class CpuTorchBackend(torch_cuda.TorchCudaBackend):
        """torch-cuda on the CPU. Asked for fp16 it still says fp16 but computes in float32: PyTorch's CPU
        half-precision convolutions take seconds per image (tests/runtime/test_gpu_torch.py runs the fp16
        network on the CPU where that is the point)."""

        def __init__(self, contract: Any, input_size: int, precision: str = "fp16", *args: Any, **kwargs: Any):
            kwargs.update(device="cpu", graphs=False)
            super().__init__(contract, input_size, "fp32", *args, **kwargs)
            self.precision = precision

    class CpuGpuDecoder(gpu_decode.GpuDecoder):
        def __init__(self, specs: Any, options: Any = None, device: str = "cuda") -> None:
            super().__init__(specs, options or gpu_decode.DecodeOptions(), "cpu")
            self.description += " (fake GPU: torchvision's CPU decoder)"

    patch.setattr(torch_cuda, "availability", availability)
    patch.setattr(torch_cuda, "TorchCudaBackend", CpuTorchBackend)
    patch.setattr(gpu_decode, "GpuDecoder", CpuGpuDecoder)
    return trt


class _patched:
    """Set one attribute for the duration of a ``with`` block."""

    def __init__(self, owner: Any, name: str, value: Any) -> None:
        self.owner, self.name, self.value = owner, name, value

    def __enter__(self) -> None:
        self.saved = getattr(self.owner, self.name)
        setattr(self.owner, self.name, self.value)

    def __exit__(self, *exc: object) -> None:
        setattr(self.owner, self.name, self.saved)
