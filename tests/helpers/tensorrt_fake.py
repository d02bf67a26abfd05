"""A fake of NVIDIA's TensorRT Python API (10.x, or 11.x without what 11 removed) whose engines compute real
scores: the "plan" its builder writes carries the ONNX graph its parser read, and the engine runs that graph
with ONNX Runtime on the CPU, reading and writing the addresses TensorRT was given (through the fake CUDA
runtime's lazy streams, tests/helpers/gpu_fakes.py). An fp16 engine so computes the fp16 graph, an INT8
engine the Q/DQ graph. Names and values mirror NVIDIA's (tests/runtime/test_gpu_conformance.py checks the
code against the real bindings; this fake only has to accept the same calls).
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import json
import types
from typing import Any

import numpy as np

PLAN_MAGIC = b"nima-rt fake TensorRT plan\n"


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

    def __init__(self, cuda: Any, version: str = "10.16.1.11") -> None:
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
