"""The TensorRT engine backend's buffering, splitting and padding, on CPU against honest fakes.

``FakeCudaRuntime`` mimics cuda-python's runtime calls with *lazy* streams: nothing queued on a
stream runs until the host synchronises on it (an event or the stream), and a stream waiting on an
event first runs the other stream up to that event. That is the most adversarial schedule CUDA
allows, so a missing event wait (a pinned buffer overwritten while its upload is pending, an
input overwritten while an execution still reads it) gives wrong numbers here. ``FakeTensorRT``
runs the tiny model's numpy reference on the bytes at the addresses TensorRT was given.

What this cannot show: real overlap, real TensorRT and CUDA behaviour. The test marked ``gpu`` at
the end builds a real engine where TensorRT and a GPU exist (run by benchmarks/gpu_check.py).
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.tiny_models import reference_scores

from nima_rt.contract.spec import ContractError, EngineInfo, ModelMetadata, engine_sidecar_json
from nima_rt.io.model_file import load_model_file
from nima_rt.runtime.backends import BackendOptions, choose_backend, cuda_driver, tensorrt_engine

SIZE = 16
H200 = cuda_driver.GpuInfo(name="NVIDIA H200", compute_capability="9.0", driver_version="12.8", device_count=1)


class FakeCudaRuntime:
    """cuda-python's runtime API (the calls the backend makes), with lazily executed streams."""

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

    def enqueue(self, stream: int, op) -> None:
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

    def _wait_for(self, event: int) -> None:
        if self.events[event] is not None:  # never recorded: nothing to wait for (as in CUDA)
            self._run_until(*self.events[event])

    def cudaEventSynchronize(self, event: int) -> tuple[int]:  # noqa: N802
        self.calls.append(("sync", event))
        self._wait_for(event)
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


class FakeTensorRT:
    """The slice of the TensorRT 10 Python API the backend uses, computing the tiny reference model."""

    __version__ = "10.3.0"

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            self.level = level

    class TensorIOMode:
        INPUT = "INPUT"
        OUTPUT = "OUTPUT"

    class DataType:
        UINT8 = "UINT8"
        FLOAT = "FLOAT"

    def __init__(self, cuda: FakeCudaRuntime, profile: tuple[int, int, int], input_dtype: str = "UINT8") -> None:
        self.cuda, self.profile, self.input_dtype = cuda, profile, input_dtype
        self.executed: list[int] = []

    def Runtime(self, logger):  # noqa: N802 - mirrors tensorrt.Runtime
        return self

    def deserialize_cuda_engine(self, data: bytes):
        return FakeEngine(self)


class FakeEngine:
    names = ["images", "dist", "mean", "std"]

    def __init__(self, trt: FakeTensorRT) -> None:
        self.trt = trt
        self.num_io_tensors = 4

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> str:
        return "INPUT" if name == "images" else "OUTPUT"

    def get_tensor_dtype(self, name: str) -> str:
        return self.trt.input_dtype if name == "images" else "FLOAT"

    def get_tensor_profile_shape(self, name: str, profile: int):
        return [(batch, SIZE, SIZE, 3) for batch in self.trt.profile]

    def create_execution_context(self):
        return FakeContext(self.trt)


class FakeContext:
    def __init__(self, trt: FakeTensorRT) -> None:
        self.trt = trt
        self.shape: tuple[int, ...] = ()
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        low, _, high = self.trt.profile
        self.shape = tuple(shape)
        return low <= shape[0] <= high

    def set_tensor_address(self, name: str, address: int) -> None:
        self.addresses[name] = address

    def execute_async_v3(self, stream: int) -> bool:
        rows, addresses = self.shape[0], dict(self.addresses)  # captured at enqueue, as TensorRT does

        def run() -> None:
            nbytes = rows * SIZE * SIZE * 3
            images = np.frombuffer(ctypes.string_at(addresses["images"], nbytes), np.uint8)
            outputs = reference_scores(images.reshape(rows, SIZE, SIZE, 3))
            for name, array in zip(("dist", "mean", "std"), outputs, strict=True):
                data = np.ascontiguousarray(array, dtype=np.float32).tobytes()
                ctypes.memmove(addresses[name], data, len(data))
            self.trt.executed.append(rows)

        self.trt.cuda.enqueue(stream, run)
        return True


def write_engine(folder: Path, profile: tuple[int, int, int]) -> Path:
    engine = folder / "tiny.engine"
    engine.write_bytes(b"fake engine")
    info = EngineInfo("10.3.0", H200.name, H200.compute_capability, "fp16", *profile, "0" * 64)
    sidecar = engine_sidecar_json(ModelMetadata(name="tiny", kind="technical", input_size=SIZE), info)
    (folder / "tiny.engine.json").write_text(sidecar, encoding="utf-8")
    return engine


def open_backend(folder: Path, profile: tuple[int, int, int], **kwargs) -> tuple[object, FakeTensorRT]:
    cuda = FakeCudaRuntime()
    trt = FakeTensorRT(cuda, profile, **kwargs)
    backend = tensorrt_engine.TensorRTBackend(load_model_file(write_engine(folder, profile)), trt, cuda)
    return backend, trt


def images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)


def assert_matches_reference(output, batch: np.ndarray) -> None:
    dist, mean, std = reference_scores(batch)
    np.testing.assert_allclose(output.dist, dist, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(output.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(output.std, std, rtol=1e-5)


def test_batches_split_to_the_profile_and_rows_land_in_order(tmp_path: Path) -> None:
    backend, trt = open_backend(tmp_path, (1, 4, 16))
    batch = images(11)
    assert_matches_reference(backend.run(batch), batch)
    assert trt.executed == [4, 4, 3]
    batch = images(16, seed=1)  # again, reusing both slots: stale buffers would show
    assert_matches_reference(backend.run(batch), batch)
    assert trt.executed[3:] == [4, 4, 4, 4]
    backend.close()


def test_next_chunk_uploads_before_the_host_waits_for_this_one(tmp_path: Path) -> None:
    backend, trt = open_backend(tmp_path, (1, 4, 16))
    backend.run(images(12))
    calls = backend._cuda.rt.calls
    uploads = [i for i, c in enumerate(calls) if c[0] == "copy" and c[1] == "H2D"]
    downloaded = {slot.downloaded for slot in backend.slots}
    first_wait = next(i for i, c in enumerate(calls) if c[0] == "sync" and c[1] in downloaded)
    assert len(uploads) == 3
    assert uploads[1] < first_wait  # chunk 2 was queued before the host blocked on chunk 1's results
    copy_stream = backend.copy_stream
    assert {calls[i][2] for i in uploads} == {copy_stream} and copy_stream != backend.compute_stream
    backend.close()


def test_small_batch_is_padded_to_the_profile_minimum(tmp_path: Path) -> None:
    backend, trt = open_backend(tmp_path, (4, 8, 8))
    batch = images(3)
    output = backend.run(batch)
    assert_matches_reference(output, batch)
    assert trt.executed == [4] and output.dist.shape == (3, 10)
    backend.close()


def test_close_frees_every_buffer_event_and_stream(tmp_path: Path) -> None:
    backend, _ = open_backend(tmp_path, (1, 4, 16))
    cuda = backend._cuda.rt
    backend.run(images(5))
    assert len(cuda.memory) == 2 * 8  # per slot: pinned + device input, 3 pinned + 3 device outputs
    backend.close()
    assert cuda.memory == {} and cuda.events == {} and cuda.streams == {}
    backend.close()  # twice is harmless


def test_engine_not_following_the_contract_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="engine input must be one uint8 tensor 'images', found images:FLOAT"):
        open_backend(tmp_path, (1, 4, 16), input_dtype="FLOAT")


def test_wrong_input_shape_is_refused_before_any_copy(tmp_path: Path) -> None:
    backend, _ = open_backend(tmp_path, (1, 4, 16))
    with pytest.raises(ContractError, match=r"expected uint8 images \[N, 16, 16, 3\], got uint8 \[2, 9, 9, 3\]"):
        backend.run(np.zeros((2, 9, 9, 3), np.uint8))
    backend.close()


def test_auto_choice_opens_the_engine_when_everything_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = FakeCudaRuntime()
    trt = FakeTensorRT(cuda, (1, 8, 32))
    monkeypatch.setattr(cuda_driver, "probe_gpu", lambda: H200)
    monkeypatch.setattr(tensorrt_engine, "tensorrt_version", lambda: "10.3.0")
    monkeypatch.setattr(tensorrt_engine, "import_cudart", lambda: cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    choice = choose_backend(load_model_file(write_engine(tmp_path, (1, 8, 32))), options=BackendOptions())
    assert choice.summary == "backend: tensorrt"
    batch = images(20)
    assert_matches_reference(choice.backend.run(batch), batch)
    assert trt.executed == [8, 8, 4]
    choice.backend.close()


def test_real_cuda_python_accepts_every_call_the_backend_makes() -> None:
    """The fakes mirror cuda-python; this checks the real binding takes the same calls and argument
    types (without a driver each returns an error code, which the backend turns into one line)."""
    cudart = pytest.importorskip("cuda.bindings.runtime")
    cuda = tensorrt_engine._Cuda(cudart)
    stream, event = cudart.cudaStream_t(), cudart.cudaEvent_t()
    kind = cudart.cudaMemcpyKind
    calls = [
        ("cudaStreamCreateWithFlags", cudart.cudaStreamNonBlocking),
        ("cudaEventCreateWithFlags", cudart.cudaEventDisableTiming),
        ("cudaMallocHost", 1024),
        ("cudaMalloc", 1024),
        ("cudaMemcpyAsync", 0, 0, 0, kind.cudaMemcpyHostToDevice, stream),
        ("cudaMemcpyAsync", 0, 0, 0, kind.cudaMemcpyDeviceToHost, stream),
        ("cudaStreamWaitEvent", stream, event, 0),
        ("cudaEventRecord", event, stream),
        ("cudaEventSynchronize", event),
        ("cudaStreamSynchronize", stream),
    ]
    for name, *args in calls:
        try:
            cuda(name, *args)
        except RuntimeError as exc:
            assert str(exc).startswith(f"CUDA {name} failed: cudaError"), str(exc)
    assert int(stream) == 0 and int(event) == 0  # handles convert to the ints TensorRT takes


# -- on a real GPU --------------------------------------------------------------------------------


@pytest.mark.gpu
def test_real_engine_matches_onnxruntime_cpu(tmp_path: Path) -> None:
    reason = tensorrt_engine.runtime_unavailable()
    if reason:
        pytest.skip(f"needs an NVIDIA GPU and TensorRT: {reason}")
    from helpers.gpu_helpers import build_engine
    from helpers.tiny_models import write_tiny_model

    onnx_path = write_tiny_model(tmp_path / "tiny.onnx", name="tiny", size=32)
    engine = build_engine(onnx_path, tmp_path / "tiny.engine", "fp32", (1, 8, 64))
    backend = choose_backend(load_model_file(engine), "cuda").backend
    cpu = choose_backend(load_model_file(onnx_path), "cpu").backend
    batch = np.random.default_rng(3).integers(0, 256, (70, 32, 32, 3), dtype=np.uint8)
    got, want = backend.run(batch), cpu.run(batch)
    np.testing.assert_allclose(got.mean, want.mean, atol=1e-4)
    np.testing.assert_allclose(got.dist, want.dist, atol=1e-5)
    backend.close()
    cpu.close()
