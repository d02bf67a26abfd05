"""The few CUDA driver calls TensorRT export needs, through ctypes (no extra Python package).

GPU name and compute capability for the engine sidecar, and plain device buffers for INT8
calibration batches and for running the built engine once to check its scores. It uses the
device's primary context, the one the CUDA runtime (and so TensorRT) uses too.
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np

from nima_rt.contract import ContractError

LIBRARIES = ("nvcuda.dll",) if sys.platform == "win32" else ("libcuda.so.1", "libcuda.so")
_COMPUTE_CAPABILITY_MAJOR = 75  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
_COMPUTE_CAPABILITY_MINOR = 76


class CudaUnavailable(ContractError):
    """No usable NVIDIA GPU: the driver library is missing, fails to start, or sees no device."""


def load_driver(names: tuple[str, ...] = LIBRARIES) -> ctypes.CDLL:
    """The CUDA driver library, or :class:`CudaUnavailable` naming what was tried."""
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise CudaUnavailable(f"no NVIDIA GPU driver found ({' / '.join(names)} not loadable)")


class CudaDevice:
    """One GPU through the driver API; ``close()`` frees buffers and releases the context."""

    def __init__(self, index: int = 0, names: tuple[str, ...] = LIBRARIES) -> None:
        self._lib = load_driver(names)
        self._buffers: set[int] = set()
        self._call("cuInit", ctypes.c_uint(0))
        count = ctypes.c_int(0)
        self._call("cuDeviceGetCount", ctypes.byref(count))
        if count.value <= index:
            raise CudaUnavailable(f"the CUDA driver sees {count.value} GPU(s); device {index} does not exist")
        self._device = ctypes.c_int(0)
        self._call("cuDeviceGet", ctypes.byref(self._device), ctypes.c_int(index))
        self._context = ctypes.c_void_p(0)
        self._call("cuDevicePrimaryCtxRetain", ctypes.byref(self._context), self._device)
        self._call("cuCtxSetCurrent", self._context)

    def _call(self, name: str, *args: object) -> None:
        result = getattr(self._lib, name)(*args)
        if result != 0:
            text = ctypes.c_char_p()
            self._lib.cuGetErrorString(ctypes.c_int(result), ctypes.byref(text))
            reason = text.value.decode() if text.value else f"error {result}"
            raise CudaUnavailable(f"CUDA driver call {name} failed: {reason}")

    @property
    def name(self) -> str:
        buffer = ctypes.create_string_buffer(256)
        self._call("cuDeviceGetName", buffer, ctypes.c_int(len(buffer)), self._device)
        return buffer.value.decode()

    @property
    def compute_capability(self) -> str:
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        self._call("cuDeviceGetAttribute", ctypes.byref(major), ctypes.c_int(_COMPUTE_CAPABILITY_MAJOR), self._device)
        self._call("cuDeviceGetAttribute", ctypes.byref(minor), ctypes.c_int(_COMPUTE_CAPABILITY_MINOR), self._device)
        return f"{major.value}.{minor.value}"

    def alloc(self, nbytes: int) -> int:
        pointer = ctypes.c_uint64(0)
        self._call("cuMemAlloc_v2", ctypes.byref(pointer), ctypes.c_size_t(max(1, nbytes)))
        self._buffers.add(pointer.value)
        return pointer.value

    def free(self, pointer: int) -> None:
        if pointer in self._buffers:
            self._buffers.discard(pointer)
            self._call("cuMemFree_v2", ctypes.c_uint64(pointer))

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        self._call("cuMemcpyHtoD_v2", ctypes.c_uint64(pointer), array.ctypes.data_as(ctypes.c_void_p),
                   ctypes.c_size_t(array.nbytes))

    def from_device(self, pointer: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        array = np.empty(shape, dtype=dtype)
        self._call("cuMemcpyDtoH_v2", array.ctypes.data_as(ctypes.c_void_p), ctypes.c_uint64(pointer),
                   ctypes.c_size_t(array.nbytes))
        return array

    def synchronize(self) -> None:
        self._call("cuCtxSynchronize")

    def close(self) -> None:
        for pointer in list(self._buffers):
            self.free(pointer)
        if self._context.value:
            self._lib.cuDevicePrimaryCtxRelease_v2(self._device)
            self._context = ctypes.c_void_p(0)
