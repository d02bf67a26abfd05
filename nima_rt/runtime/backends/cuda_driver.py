"""Which NVIDIA GPU this machine has, asked of the CUDA driver (``libcuda``) through ctypes.

Every GPU backend asks this first. It needs no torch, TensorRT or CUDA runtime, so a CPU machine
learns in microseconds that it has no GPU instead of importing torch (~2 s, ~800 MB) to find out.
The answer is the GPU the CUDA runtime calls device 0, i.e. the first one ``CUDA_VISIBLE_DEVICES``
leaves visible; nima-rt runs on that one.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass

from nima_rt.runtime.backends.base import BackendUnavailable

CUDA_SUCCESS = 0
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
DRIVER_LIBRARY = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"


@dataclass(frozen=True)
class GpuInfo:
    """The GPU nima-rt would run on: name and compute capability as TensorRT engine sidecars record them."""

    name: str  # e.g. "NVIDIA H200"
    compute_capability: str  # "major.minor", e.g. "9.0"
    driver_version: str  # CUDA version the driver supports, e.g. "12.8"
    device_count: int


def _error_name(lib: ctypes.CDLL, code: int) -> str:
    name = ctypes.c_char_p()
    try:
        if lib.cuGetErrorName(code, ctypes.byref(name)) == CUDA_SUCCESS and name.value:
            return name.value.decode()
    except AttributeError:
        pass
    return f"CUDA error {code}"


def probe_gpu() -> GpuInfo:
    """The first visible NVIDIA GPU; raise :class:`BackendUnavailable` saying why there is none."""
    try:
        lib = ctypes.CDLL(DRIVER_LIBRARY)
    except OSError:
        raise BackendUnavailable(f"no NVIDIA GPU driver: {DRIVER_LIBRARY} not found") from None
    code = lib.cuInit(0)
    if code != CUDA_SUCCESS:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" with CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
        raise BackendUnavailable(f"the CUDA driver found no usable GPU: cuInit returned {_error_name(lib, code)}{hint}")
    count = ctypes.c_int(0)
    code = lib.cuDeviceGetCount(ctypes.byref(count))
    if code != CUDA_SUCCESS or count.value < 1:
        raise BackendUnavailable("the CUDA driver found no GPU")
    device = ctypes.c_int(0)
    if lib.cuDeviceGet(ctypes.byref(device), 0) != CUDA_SUCCESS:
        raise BackendUnavailable("the CUDA driver cannot open GPU 0")
    name = ctypes.create_string_buffer(256)
    lib.cuDeviceGetName(name, len(name), device)
    major, minor, version = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
    lib.cuDeviceGetAttribute(ctypes.byref(major), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)
    lib.cuDeviceGetAttribute(ctypes.byref(minor), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)
    lib.cuDriverGetVersion(ctypes.byref(version))
    return GpuInfo(
        name=name.value.decode(errors="replace").strip(),
        compute_capability=f"{major.value}.{minor.value}",
        driver_version=f"{version.value // 1000}.{(version.value % 1000) // 10}",
        device_count=count.value,
    )
