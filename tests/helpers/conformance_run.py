"""Run in a subprocess by tests/runtime/test_gpu_conformance.py, with NVIDIA's real ``tensorrt`` on
``PYTHONPATH`` and the stub libraries on ``LD_LIBRARY_PATH`` (tests/helpers/nvidia_wheels.py):

    python -m helpers.conformance_run [MODULE.py ...]

Checks every TensorRT/CUDA call site of the given modules (default: all that touch those APIs,
found by helpers.api_conformance.discover) against the real bindings, then, for the default run,
drives nima-rt's own no-GPU error paths through the real bindings. Prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from helpers.api_conformance import SOURCE_FOLDERS, Checker, discover
from helpers.paths import REPO


def _error(call: Any) -> str:
    try:
        call()
    except Exception as exc:  # the point is to record what the real bindings make of it
        return f"{type(exc).__name__}: {exc}"
    return "no error"


def behaviour(trt: Any, cudart: Any) -> dict[str, Any]:
    """nima-rt's TensorRT and CUDA code driven through the real bindings, up to where a GPU is needed."""
    from nima_rt.contract.spec import EngineInfo, ModelMetadata, engine_sidecar_json
    from nima_rt.export import tensorrt_build
    from nima_rt.io.model_file import load_model_file
    from nima_rt.runtime.backends import BackendOptions, cuda_driver, tensorrt_engine

    out: dict[str, Any] = {"import_tensorrt": tensorrt_engine.import_tensorrt().__version__,
                           "network_flags": tensorrt_build.strongly_typed_flags(trt),
                           "strongly_typed_value": int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)}
    lines: list[str] = []
    logger = tensorrt_build._logger_class(trt)(lines.append)
    logger.log(trt.ILogger.Severity.ERROR, "parser\nrefused")
    logger.log(trt.ILogger.Severity.WARNING, "slow  tactic")
    logger.log(trt.ILogger.Severity.INFO, "ignored")
    out["logger"] = {"errors": logger.errors, "lines": lines}
    out["runtime_with_our_logger"] = _error(lambda: trt.Runtime(logger))
    out["builder_with_our_logger"] = _error(lambda: trt.Builder(logger))
    out["cuda_malloc"] = _error(lambda: tensorrt_engine.cuda_call(cudart, "cudaMalloc", 16))
    out["driver_probe"] = _error(cuda_driver.probe_gpu)
    gpu = cuda_driver.GpuInfo(name="NVIDIA H100 80GB HBM3", compute_capability="9.0", driver_version="13.0",
                              device_count=1)
    cuda_driver.probe_gpu = lambda: gpu  # a machine whose driver reports a GPU, where CUDA still fails
    metadata = ModelMetadata(name="tiny", kind="technical", input_size=32)
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = Path(folder) / "tiny.onnx"
        onnx_path.write_bytes(b"never parsed: the builder fails first")
        out["export_without_cuda"] = _error(lambda: tensorrt_build.build_engine(
            onnx_path, Path(folder) / "tiny.engine", metadata, "fp16", tensorrt_build.TensorRTSettings(), None,
            lambda line: None))
        engine = Path(folder) / "tiny.engine"
        engine.write_bytes(b"not deserialised: the runtime fails first")
        info = EngineInfo(trt.__version__, gpu.name, gpu.compute_capability, "fp16", 1, 8, 64, "0" * 64)
        (Path(folder) / "tiny.engine.json").write_text(engine_sidecar_json(metadata, info), encoding="utf-8")
        out["runtime_without_cuda"] = _error(lambda: tensorrt_engine.create(load_model_file(engine), BackendOptions()))
    return out


def main(argv: list[str]) -> int:
    import cuda.bindings
    import cuda.bindings.driver as driver
    import cuda.bindings.runtime as cudart
    import tensorrt as trt

    modules = [Path(a).resolve() for a in argv] or discover(REPO)
    checker = Checker(trt, cudart, driver)
    checker.exclude_project_methods([p for folder in SOURCE_FOLDERS for p in (REPO / folder).rglob("*.py")])
    for module in modules:
        checker.check_file(module, REPO if module.is_relative_to(REPO) else module.parent)
    result = {
        "tensorrt": trt.__version__,
        "tensorrt_file": trt.__file__,
        "cuda_bindings": cuda.bindings.__version__,
        "modules": [str(m.relative_to(REPO)) if m.is_relative_to(REPO) else m.name for m in modules],
        "sites": checker.report.sites,
        "problems": checker.report.problems,
    }
    if not argv:
        result["behaviour"] = behaviour(trt, cudart)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
