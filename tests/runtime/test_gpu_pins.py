"""The ``gpu`` extra resolves to versions the code supports: its bounds against the code's constants,
and what a fresh ``pip install 'nima-rt[gpu]'`` would pick today (asked of the package registry).

Why each bound (docs/guide/gpu.md): everything is built for one CUDA major, 13, the CUDA of the train
extra's torch; TensorRT is the major onnxruntime-gpu's TensorRT provider links (10), which is also one the
code supports (it supports 11 as well). ``tensorrt>=10.0`` alone now resolves to TensorRT 11 and
``cuda-python>=12.6`` to 13.x beside CUDA 12 wheels; both are bounded here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.gpu_helpers import gpu_extra
from helpers.nvidia_wheels import RegistryUnreachable, pip
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from nima_rt.runtime.backends.tensorrt_engine import CUDA_MAJOR, SUPPORTED_TENSORRT_MAJORS

TENSORRT = f"tensorrt-cu{CUDA_MAJOR}"
FIRST_TENSORRT_FOR_CUDA = Version("10.13.2")  # tensorrt-cu13's first release
FIRST_ORT_GPU_FOR_CUDA = Version("1.27")  # onnxruntime-gpu 1.26 depends on CUDA 12 wheels, 1.27 on CUDA 13
# onnxruntime-gpu's TensorRT provider links libnvinfer.so.10 (read with readelf from the 1.31.1 wheel, the newest
# when this was written; docs/guide/gpu.md): the extra's TensorRT must be that major for onnxruntime-tensorrt to start.
ORT_TENSORRT_MAJOR = 10


def test_gpu_extra_is_bounded_to_the_majors_the_code_supports() -> None:
    extra = gpu_extra()
    assert set(extra) == {"onnxruntime-gpu", TENSORRT, "cuda-python"}
    for requirement in extra.values():  # every package has a floor and a ceiling
        assert {s.operator for s in requirement.specifier} == {">=", "<"}, requirement
    tensorrt = extra[TENSORRT].specifier
    assert ORT_TENSORRT_MAJOR in SUPPORTED_TENSORRT_MAJORS
    floor = Version(next(s.version for s in tensorrt if s.operator == ">="))
    assert floor >= FIRST_TENSORRT_FOR_CUDA and floor.major == ORT_TENSORRT_MAJOR
    assert Version(next(s.version for s in tensorrt if s.operator == "<")) == Version(str(ORT_TENSORRT_MAJOR + 1))
    assert tensorrt.contains(f"{ORT_TENSORRT_MAJOR}.99.0")
    assert not tensorrt.contains(f"{ORT_TENSORRT_MAJOR - 1}.99.0")
    cuda_python = extra["cuda-python"].specifier
    assert cuda_python.contains(f"{CUDA_MAJOR}.0.0") and cuda_python.contains(f"{CUDA_MAJOR}.99")
    assert not cuda_python.contains(f"{CUDA_MAJOR - 1}.9.9") and not cuda_python.contains(f"{CUDA_MAJOR + 1}.0")
    onnxruntime = extra["onnxruntime-gpu"]
    assert onnxruntime.extras == {"cuda", "cudnn"}  # the CUDA 13 and cuDNN wheels its CUDA provider loads
    assert not onnxruntime.specifier.contains("1.26.0") and onnxruntime.specifier.contains(str(FIRST_ORT_GPU_FOR_CUDA))


def test_a_fresh_install_of_the_gpu_extra_resolves_to_supported_versions(tmp_path: Path) -> None:
    """What pip would install today for each requirement (metadata only, nothing is installed)."""
    report = tmp_path / "report.json"
    try:
        pip("install", "--dry-run", "--ignore-installed", "--no-deps", "--no-build-isolation", "--quiet",
            "--report", str(report), *(str(r) for r in gpu_extra().values()))
    except RegistryUnreachable as exc:
        pytest.skip(str(exc))
    picked = {canonicalize_name(item["metadata"]["name"]): item["metadata"]
              for item in json.loads(report.read_text(encoding="utf-8"))["install"]}
    tensorrt = picked[TENSORRT]
    assert Version(tensorrt["version"]).major == ORT_TENSORRT_MAJOR
    needs = {canonicalize_name(r.name): str(r.specifier) for r in map(Requirement, tensorrt["requires_dist"])}
    assert needs[f"tensorrt-cu{CUDA_MAJOR}-bindings"] == f"=={tensorrt['version']}"  # the bindings of that CUDA
    cuda_python = picked["cuda-python"]
    assert Version(cuda_python["version"]).major == CUDA_MAJOR
    needs = [Requirement(d) for d in cuda_python["requires_dist"]]
    (binding,) = [r for r in needs if r.name == "cuda-bindings" and not r.marker]
    assert all(Version(s.version).major == CUDA_MAJOR for s in binding.specifier)
    onnxruntime = picked["onnxruntime-gpu"]
    runtime = [Requirement(d) for d in onnxruntime["requires_dist"] if d.startswith("nvidia-cuda-runtime")]
    assert runtime and all(Version(s.version).major == CUDA_MAJOR for r in runtime for s in r.specifier), runtime
