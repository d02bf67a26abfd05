"""Build a TensorRT engine from a contract ONNX file with the TensorRT 10 Python API.

- the ONNX parser reads the graph (uint8 NHWC input, cast and normalisation inside);
- one optimisation profile covers the dynamic batch (``min``/``opt``/``max``);
- FP16 sets the builder's FP16 flag; INT8 sets INT8 (and FP16 for the layers INT8 cannot run) with
  an entropy calibrator (``IInt8EntropyCalibrator2``) fed with images decoded by the runtime's own
  decoder; its calibration cache is kept beside the engine, keyed by the ONNX file's sha256;
- a timing cache (per TensorRT version and GPU, in the user cache folder) makes rebuilds fast.

The engine and its sidecar ``<engine>.json`` (:func:`nima_rt.contract.spec.engine_sidecar_json`) are
first written under a provisional name, loaded by the runtime's own TensorRT backend (which checks
the sidecar against this machine) and run on held-out images against the float32 ONNX model (ONNX
Runtime on CPU). Only when INT8 keeps Spearman >= 0.99 (unless forced), or fp32/fp16 stay within
the ONNX tolerances, are they renamed to the requested name; otherwise both are deleted.

GPU name and compute capability come from :func:`nima_rt.runtime.backends.cuda_driver.probe_gpu`, the same
probe the runtime compares the sidecar with; device memory for calibration batches comes from
NVIDIA's cuda-python runtime bindings, which the TensorRT backend uses too.

Nothing here imports ``tensorrt`` at module level: ``import nima_rt.export`` works without it.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from nima_rt.contract.messages import one_line
from nima_rt.contract.spec import INPUT_NAME, ContractError, EngineInfo, ModelMetadata, engine_sidecar_json
from nima_rt.export.images import ImageSet, batches
from nima_rt.io.files import file_sha256, write_bytes_atomic
from nima_rt.io.model_file import load_model_file, sidecar_path

TENSORRT_MISSING = (
    "TensorRT export needs the 'gpu' extra (the tensorrt Python package is not installed): "
    "pip install 'nima-rt[gpu]'"
)
CALIBRATION_BATCH = 8
PROVISIONAL_TAG = ".unverified"

Log = Callable[[str], None]


class TensorRTUnavailable(ContractError):
    """TensorRT or a GPU is missing; ``str()`` says which in one line."""


class TensorRTBuildFailed(ContractError):
    """The builder or parser refused the model; ``str()`` carries TensorRT's first error."""


@dataclass(frozen=True)
class TensorRTSettings:
    """Engine build options (``nima-rt export --format tensorrt``)."""

    min_batch: int = 1
    opt_batch: int = 64
    max_batch: int = 256
    timing_cache: Path | None = None  # default: user cache folder, per TensorRT version and GPU
    calibration_cache: Path | None = None  # default: beside the engine, keyed by the ONNX sha256
    workspace_gib: float | None = None  # builder scratch memory limit (default: TensorRT's)

    def check(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ContractError(
                "batch profile must satisfy 1 <= --min-batch <= --opt-batch <= --max-batch, got "
                f"{self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )


def tensorrt_installed() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def require_tensorrt() -> None:
    """Raise :class:`TensorRTUnavailable` naming what is missing: the package, a GPU, cuda-python."""
    if not tensorrt_installed():
        raise TensorRTUnavailable(TENSORRT_MISSING)
    from nima_rt.runtime.backends.base import BackendUnavailable
    from nima_rt.runtime.backends.cuda_driver import probe_gpu
    from nima_rt.runtime.backends.tensorrt_engine import import_cudart

    try:
        probe_gpu()
    except BackendUnavailable as exc:
        raise TensorRTUnavailable(f"TensorRT export needs an NVIDIA GPU ({exc})") from None
    try:
        import_cudart()
    except BackendUnavailable as exc:
        raise TensorRTUnavailable(f"TensorRT export needs NVIDIA's CUDA runtime bindings ({exc})") from None


def default_timing_cache(tensorrt_version: str, gpu_name: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nima-rt" / "tensorrt"
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower()
    return base / f"timing-{tensorrt_version}-{gpu}.cache"


def default_calibration_cache(engine: Path, onnx_sha256: str) -> Path:
    return engine.with_name(f"{engine.stem}.int8-calibration-{onnx_sha256[:12]}.cache")


def _logger_class(trt: Any) -> type:
    class Logger(trt.ILogger):
        """Keeps TensorRT's errors for the exception message; passes warnings to the log."""

        def __init__(self, log: Log) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self._log = log

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(one_line(msg))
            elif severity == trt.ILogger.Severity.WARNING:
                self._log(f"tensorrt warning: {one_line(msg)}")

    return Logger


def _cuda(cudart: Any, function: str, *args: Any) -> Any:
    """The runtime backend's ``cuda_call``, failing as a build error."""
    from nima_rt.runtime.backends.tensorrt_engine import CudaError, cuda_call

    try:
        return cuda_call(cudart, function, *args)
    except CudaError as exc:
        raise TensorRTBuildFailed(str(exc)) from None


def _calibrator_class(trt: Any) -> type:
    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds decoded uint8 batches to the builder; keeps the calibration cache."""

        def __init__(self, cudart: Any, images: np.ndarray, cache: Path, log: Log) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batch = min(CALIBRATION_BATCH, len(images))
            usable = len(images) - len(images) % self.batch  # every batch must be full
            self.batches = list(batches(images[:usable], self.batch))
            self.cudart = cudart
            self.buffer = int(_cuda(cudart, "cudaMalloc", self.batches[0].nbytes))
            self.cache = cache
            self.index = 0
            self._log = log

        def get_batch_size(self) -> int:
            return self.batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(self.batches):
                return None
            host = self.batches[self.index]
            _cuda(self.cudart, "cudaMemcpy", self.buffer, host.ctypes.data, host.nbytes,
                  self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
            self.index += 1
            return [self.buffer]

        def read_calibration_cache(self) -> bytes | None:
            if self.cache.is_file():
                self._log(f"INT8: reusing calibration cache {self.cache} (delete it to recalibrate)")
                return self.cache.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            self.cache.write_bytes(bytes(cache))
            self._log(f"INT8: wrote calibration cache {self.cache}")

        def free(self) -> None:
            if self.buffer:
                _cuda(self.cudart, "cudaFree", self.buffer)
                self.buffer = 0

    return EntropyCalibrator


def _first_error(logger: Any, fallback: str) -> str:
    return logger.errors[0] if logger.errors else fallback


def provisional_path(output: Path) -> Path:
    """``model.engine`` -> ``model.unverified.engine`` (same suffix, so the runtime loads it)."""
    return output.with_name(f"{output.stem}{PROVISIONAL_TAG}{output.suffix}")


@dataclass
class BuiltEngine:
    """A serialized engine held in memory until its scores have been checked."""

    plan: bytes
    output: Path
    metadata: ModelMetadata
    info: EngineInfo

    def write(self, path: Path | None = None) -> Path:
        """Write the engine and its sidecar to ``path`` (default: the requested output)."""
        path = path or self.output
        write_bytes_atomic(path, self.plan)
        sidecar_path(path).write_text(engine_sidecar_json(self.metadata, self.info) + "\n", encoding="utf-8")
        return path

    def check_against_onnx(self, onnx_path: Path, images: ImageSet, force: bool, log: Log):
        """Run the engine through the runtime's TensorRT backend against the float32 ONNX on ``images``.

        Writes engine + sidecar when it passes (or when ``force`` lets a failing INT8 engine through);
        returns ``(drift, warning)``, ``warning`` being the refusal text in the forced case.
        """
        from nima_rt.export.verify import check_tolerance, measure, onnx_scores
        from nima_rt.runtime.backends.base import BackendOptions
        from nima_rt.runtime.backends.tensorrt_engine import create

        provisional = self.write(provisional_path(self.output))
        try:
            reference, close_reference = onnx_scores(onnx_path)
            backend = create(load_model_file(provisional), BackendOptions())
            try:
                def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
                    out = backend.run(batch)
                    return out.dist, out.mean, out.std

                drift = measure(reference, run, images, batch=max(1, self.info.opt_batch))
            finally:
                backend.close()
                close_reference()
            log(drift.line(f"TensorRT {self.info.precision} {self.output.name} vs float32 ONNX ({images.source})"))
            warning = check_tolerance(drift, self.info.precision, str(self.output), force)
            os.replace(provisional, self.output)
            os.replace(sidecar_path(provisional), sidecar_path(self.output))
        finally:
            provisional.unlink(missing_ok=True)
            sidecar_path(provisional).unlink(missing_ok=True)
        log(f"wrote {self.output} and {sidecar_path(self.output).name}")
        return drift, warning


def build_engine(onnx_path: Path, output: Path, metadata: ModelMetadata, precision: str,
                 settings: TensorRTSettings, calibration: np.ndarray | None, log: Log) -> BuiltEngine:
    """Parse ``onnx_path`` and build an engine in memory (see :class:`BuiltEngine` for writing)."""
    settings.check()
    if precision == "int8" and calibration is None:
        raise ContractError("an INT8 engine needs calibration images")
    require_tensorrt()
    import tensorrt as trt

    from nima_rt.runtime.backends.cuda_driver import probe_gpu
    from nima_rt.runtime.backends.tensorrt_engine import import_cudart

    gpu = probe_gpu()
    logger = _logger_class(trt)(log)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        reason = "; ".join(errors)[:300]
        raise TensorRTBuildFailed(f"{onnx_path}: TensorRT's ONNX parser refused the model ({reason})")
    if network.num_inputs != 1 or network.get_input(0).name != INPUT_NAME:
        raise TensorRTBuildFailed(f"{onnx_path}: expected one input {INPUT_NAME!r}")
    size = metadata.input_size
    config = builder.create_builder_config()
    if settings.workspace_gib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_gib * (1 << 30)))
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (settings.min_batch, size, size, 3), (settings.opt_batch, size, size, 3),
                      (settings.max_batch, size, size, 3))
    config.add_optimization_profile(profile)
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: the 1e-4 tolerance applies
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    onnx_sha = file_sha256(onnx_path)
    calibrator = None
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        cache = settings.calibration_cache or default_calibration_cache(output, onnx_sha)
        calibrator = _calibrator_class(trt)(import_cudart(), calibration, cache, log)
        calibration_profile = builder.create_optimization_profile()
        shape = (calibrator.batch, size, size, 3)
        calibration_profile.set_shape(INPUT_NAME, shape, shape, shape)
        config.set_calibration_profile(calibration_profile)
        config.int8_calibrator = calibrator
        log(f"INT8: calibrating on {len(calibrator.batches) * calibrator.batch} images, batch {calibrator.batch}")
    timing_path = settings.timing_cache or default_timing_cache(trt.__version__, gpu.name)
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing, ignore_mismatch=False)
    log(f"building {precision} engine for {gpu.name} (sm {gpu.compute_capability}), TensorRT {trt.__version__}, "
        f"batch {settings.min_batch}/{settings.opt_batch}/{settings.max_batch}")
    try:
        plan = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
    if plan is None:
        raise TensorRTBuildFailed(f"{onnx_path}: TensorRT could not build the engine "
                                  f"({_first_error(logger, 'no error reported')})")
    timing_path.parent.mkdir(parents=True, exist_ok=True)
    timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    log(f"timing cache: {timing_path}")
    info = EngineInfo(
        tensorrt_version=trt.__version__,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        precision=precision,
        min_batch=settings.min_batch,
        opt_batch=settings.opt_batch,
        max_batch=settings.max_batch,
        source_onnx_sha256=onnx_sha,
        created=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    )
    return BuiltEngine(bytes(plan), output, metadata, info)
