"""Fakes of NVIDIA's GPU libraries that compute real scores on the CPU, shared by the CPU tests and
``benchmarks/gpu_check.py --dry-run``.

- :class:`FakeCudaRuntime`: cuda-python's runtime calls on host memory, with *lazy* streams: nothing
  queued on a stream runs until the host synchronises on it (an event or the stream), and a stream
  waiting on an event first runs the other stream up to that event. That is the most adversarial
  schedule CUDA allows, so a missing event wait gives wrong numbers.
- :class:`~helpers.tensorrt_fake.FakeTensorRT` (tests/helpers/tensorrt_fake.py): TensorRT 10.x or 11.x whose
  engines run the ONNX graph the parser read on ONNX Runtime.
- :class:`FakeOnnxRuntimeGpu`: ``onnxruntime`` as the GPU build looks (CUDA and TensorRT providers
  listed); its sessions run on the CPU and report the providers asked for, or, like the real GPU
  build without its CUDA libraries, fewer (``drops``).
- :func:`install_fake_gpu`: all of the above plus a fake GPU, torch-cuda and GPU decode on the CPU.

Names mirror NVIDIA's (tests/runtime/test_gpu_conformance.py checks the code against the real
bindings; these fakes only have to accept the same calls).
"""

from __future__ import annotations

import ctypes
import types
from collections.abc import Callable
from typing import Any

from helpers.tensorrt_fake import FakeTensorRT

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
