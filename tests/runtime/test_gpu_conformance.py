"""Every TensorRT and CUDA call nima-rt makes, checked on CPU against NVIDIA's real Python bindings.

For each TensorRT release the gpu extra allows that matters (its oldest, the newest 10.x, the newest
11.x), NVIDIA's ``tensorrt`` package and bindings wheel are fetched from the registry and imported
against a stub library built here with gcc (tests/helpers/nvidia_wheels.py). A subprocess then
(tests/helpers/conformance_run.py):

- lists the call sites from the source (tests/helpers/api_conformance.py: every module touching the
  TensorRT, CUDA runtime or CUDA driver APIs, found by reading the code) and checks each against the
  real ``tensorrt``, ``cuda.bindings.runtime`` and ``cuda.bindings.driver``: names, enum members,
  pybind11/Cython signatures, subclassed bases;
- drives nima-rt's no-GPU error paths through the real bindings: the logger subclass, ``trt.Builder`` and
  ``trt.Runtime`` failing as real TensorRT fails when CUDA cannot initialise, a CUDA runtime call on a
  machine without a driver.

What this cannot show: that the calls do the right thing on a GPU (benchmarks/gpu_check.py).
Skipped only where the package registry cannot be reached (or there is no C compiler).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers.gpu_helpers import gpu_extra
from helpers.nvidia_wheels import RegistryUnreachable, build_stub, cuda_bindings_site, install_target, tensorrt_site
from helpers.paths import REPO
from packaging.version import Version

from nima_rt.runtime.backends.tensorrt_engine import CUDA_MAJOR, SUPPORTED_TENSORRT_MAJORS

BINDINGS = f"tensorrt-cu{CUDA_MAJOR}-bindings"
START_FAILURE = ("TensorRT could not start: trt.{} failed (pybind11::init(): factory function returned nullptr); "
                 "TensorRT could not initialise CUDA (check the NVIDIA driver, that the GPU is visible, and that "
                 f"the driver supports CUDA {CUDA_MAJOR})")


def tensorrt_targets() -> dict[str, str]:
    """Bindings requirements to check, from the gpu extra's bounds: its oldest release series and the newest
    release of each supported major."""
    specifier = gpu_extra()[f"tensorrt-cu{CUDA_MAJOR}"].specifier
    floor = Version(next(s.version for s in specifier if s.operator == ">="))
    targets = {"oldest allowed": f"{BINDINGS}=={floor}.*"}
    for major in SUPPORTED_TENSORRT_MAJORS:
        low = max(floor, Version(f"{major}.0"))
        targets[f"newest {major}.x"] = f"{BINDINGS}>={low},<{major + 1}"
    return targets


TARGETS = tensorrt_targets()


@pytest.fixture(scope="session")
def nvidia_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One download folder per test session (pip keeps its own HTTP cache across sessions)."""
    return tmp_path_factory.mktemp("nvidia")


def _fetch(requirement: str, cache: Path) -> tuple[list[Path], str, Path]:
    """Folders for PYTHONPATH (TensorRT, and cuda-bindings unless the installed one is CUDA 13), the version,
    the stub library folder."""
    try:
        site, version = tensorrt_site(requirement, cache)
        cuda = cuda_bindings_site(CUDA_MAJOR, cache)
    except RegistryUnreachable as exc:
        pytest.skip(str(exc))
    try:
        stub = build_stub(cache, Version(version).major)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    return [site] + ([cuda] if cuda else []), version, stub


def run_conformance(sites: list[Path], stub: Path, *modules: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*map(str, sites), str(REPO / "tests")]),
               LD_LIBRARY_PATH=str(stub), CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-m", "helpers.conformance_run", *map(str, modules)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("requirement", TARGETS.values(), ids=TARGETS.keys())
def test_every_tensorrt_and_cuda_call_site_matches_nvidias_bindings(requirement: str, nvidia_cache: Path) -> None:
    sites, version, stub = _fetch(requirement, nvidia_cache)
    result = run_conformance(sites, stub)
    assert (result["tensorrt"], result["tensorrt_file"]) == (version, str(sites[0] / "tensorrt" / "__init__.py"))
    assert Version(result["cuda_bindings"]).major == CUDA_MAJOR, result["cuda_bindings"]  # the extra's major
    assert result["problems"] == []
    assert {"export/tensorrt_build.py", "nima_rt/runtime/backends/tensorrt_engine.py",
            "nima_rt/runtime/backends/cuda_driver.py"} <= set(result["modules"])
    kinds = Counter(line.split()[0] for line in result["sites"])
    assert kinds["tensorrt"] >= 50 and kinds["cudart"] >= 40 and kinds["driver"] >= 10, kinds
    whats = {line.split(" ", 2)[2] for line in result["sites"]}
    assert {"trt.Builder(_)", "Builder.create_network(_)", "IBuilderConfig.set_timing_cache(_, ignore_mismatch=)",
            "class Logger(trt.ILogger).log('severity', 'msg')", "IExecutionContext.execute_async_v3(_)",
            "cudaMemcpyAsync(_, _, _, _, _)", "cudaMemcpyKind.cudaMemcpyDeviceToHost", "cuDeviceGetName",
            "CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75"} <= whats
    behaviour = result["behaviour"]
    assert behaviour["import_tensorrt"] == version
    strongly_typed = 1 << behaviour["strongly_typed_value"]
    assert behaviour["network_flags"] == (0 if Version(version).major >= 11 else strongly_typed)
    assert behaviour["logger"] == {"errors": ["parser refused"], "lines": ["tensorrt warning: slow tactic"]}
    nullptr = "TypeError: pybind11::init(): factory function returned nullptr"
    assert behaviour["runtime_with_our_logger"] == behaviour["builder_with_our_logger"] == nullptr
    assert behaviour["export_without_cuda"] == "TensorRTUnavailable: " + START_FAILURE.format("Builder")
    assert behaviour["runtime_without_cuda"] == "BackendUnavailable: " + START_FAILURE.format("Runtime")
    assert behaviour["cuda_malloc"].startswith("CudaError: CUDA cudaMalloc failed: cudaError"), behaviour
    assert behaviour["driver_probe"].startswith("BackendUnavailable: "), behaviour


PLANTED = '''
import ctypes
from tensorrt import Builder

CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 76


class Calibrator(trt.IInt8EntropyCalibrator2):
    pass


def build(trt, cudart, calibrator):
    builder = trt.Builder(trt.Logger())
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    config.int8_calibrator = calibrator
    config.set_calibration_profile(builder.create_optimization_profile())
    network = builder.create_network(0, 1)
    cuda_call(cudart, "cudaMallocc", 16)
    cuda_call(cudart, "cudaMemcpyAsync", 0, 0, 16, 1)
    ctypes.CDLL("libcuda.so.1").cuDeviceGetNames()
    return network


def run(engine):
    return engine.create_execution_context()
'''


def test_planted_calls_that_tensorrt_11_removed_or_never_had_are_caught(nvidia_cache: Path, tmp_path: Path) -> None:
    sites, _, stub = _fetch(TARGETS[f"newest {max(SUPPORTED_TENSORRT_MAJORS)}.x"], nvidia_cache)
    planted = tmp_path / "planted.py"
    planted.write_text(PLANTED, encoding="utf-8")
    problems = run_conformance(sites, stub, planted)["problems"]
    expected = [
        ":3 from tensorrt import ...: import the module (import tensorrt as trt) so the check can follow its calls",
        ":8 trt.IInt8EntropyCalibrator2: no attribute 'IInt8EntropyCalibrator2'",
        ":15 trt.BuilderFlag.FP16: no attribute 'FP16' on trt.BuilderFlag",
        ":16 IBuilderConfig.int8_calibrator: IBuilderConfig has no attribute 'int8_calibrator'",
        ":17 IBuilderConfig.set_calibration_profile: IBuilderConfig has no attribute 'set_calibration_profile'",
        ":18 Builder.create_network(_, _): no overload takes these arguments; the bindings have (flags=…)",
        ':19 "cudaMallocc": not a function of cuda.bindings.runtime',
        ":20 cudaMemcpyAsync(_, _, _, _): cudaMemcpyAsync(dst, src, count, kind: 'cudaMemcpyKind', stream) does not "
        "take 4 arguments (missing a required argument: 'stream')",
        ":21 cuDeviceGetNames: not in cuda.bindings.driver",
        ":5 CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 76: the driver's value is 75",
        ":26 ?.create_execution_context(...): a TensorRT method called on a value whose TensorRT type cannot be "
        "inferred (assign it from a trt call so the check can follow it)",
    ]
    assert sorted(problem.split("planted.py", 1)[1] for problem in problems) == sorted(expected)


def test_tensorrt_stubs_are_not_taken_for_tensorrt(nvidia_cache: Path) -> None:
    """``tensorrt-stubs`` installs ``tensorrt/__init__.pyi`` only: ``import tensorrt`` succeeds (an empty
    namespace package), so a probe that only tries the import would report TensorRT present."""
    try:
        stubs = install_target(["tensorrt-stubs"], nvidia_cache / "tensorrt-stubs")
    except RegistryUnreachable as exc:
        pytest.skip(str(exc))
    code = """
import json, tensorrt
from nima_rt.export import tensorrt_build
from nima_rt.runtime.backends import BackendUnavailable, cuda_driver, tensorrt_engine
out = {"imports": tensorrt.__file__ is None, "installed": tensorrt_build.tensorrt_installed()}
try:
    tensorrt_engine.import_tensorrt()
except BackendUnavailable as exc:
    out["runtime"] = str(exc)
cuda_driver.probe_gpu = lambda: cuda_driver.GpuInfo("NVIDIA H100", "9.0", "13.0", 1)
try:
    tensorrt_build.require_tensorrt()
except tensorrt_build.TensorRTUnavailable as exc:
    out["export"] = str(exc)
print(json.dumps(out))
"""
    env = dict(os.environ, PYTHONPATH=str(stubs))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    reason = (f"tensorrt at {stubs / 'tensorrt'} is an empty package (type stubs such as tensorrt-stubs?), "
              "not NVIDIA's TensorRT: pip install 'nima-rt[gpu]'")
    assert out == {"imports": True, "installed": True, "runtime": reason,
                   "export": f"TensorRT export needs NVIDIA's TensorRT ({reason})"}
