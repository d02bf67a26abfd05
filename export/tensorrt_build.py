"""Build a TensorRT engine from a contract ONNX file with the TensorRT 10 Python API.

- the ONNX parser reads the graph (uint8 NHWC input, cast and normalisation inside);
- one optimisation profile covers the dynamic batch (``min``/``opt``/``max``);
- FP16 sets the builder's FP16 flag; INT8 sets INT8 (and FP16 for the layers INT8 cannot run) with
  an entropy calibrator (``IInt8EntropyCalibrator2``) fed with images decoded by the runtime's own
  decoder; its calibration cache is kept beside the engine, keyed by the ONNX file's sha256;
- a timing cache (per TensorRT version and GPU, in the user cache folder) makes rebuilds fast.

The engine is written only after it has been run on held-out images and compared with the float32
ONNX model (ONNX Runtime on CPU): INT8 must keep Spearman >= 0.99 unless forced; fp32 and fp16 must
stay within the ONNX tolerances. Then ``<engine>.json`` is written with
:func:`nima_rt.contract.engine_sidecar_json`, which the runtime checks before loading the engine.

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

from nima_rt.contract import INPUT_NAME, OUTPUT_NAMES, ContractError, EngineInfo, ModelMetadata, engine_sidecar_json
from nima_rt.model_file import file_sha256, sidecar_path

from .images import ImageSet, batches

TENSORRT_MISSING = (
    "TensorRT export needs the 'gpu' extra (the tensorrt Python package is not installed): "
    "pip install 'nima-rt[gpu]'"
)
CALIBRATION_BATCH = 8
RUN_BATCH = 16

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
    device: int = 0

    def check(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ContractError(
                "batch profile must satisfy 1 <= --min-batch <= --opt-batch <= --max-batch, got "
                f"{self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )


def require_tensorrt(device: int = 0) -> None:
    """Raise :class:`TensorRTUnavailable` naming what is missing (the package, or a GPU)."""
    if importlib.util.find_spec("tensorrt") is None:
        raise TensorRTUnavailable(TENSORRT_MISSING)
    from .cuda_driver import CudaDevice, CudaUnavailable

    try:
        CudaDevice(device).close()
    except CudaUnavailable as exc:
        raise TensorRTUnavailable(f"TensorRT export needs an NVIDIA GPU: {exc}") from None


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
                self.errors.append(" ".join(msg.split()))
            elif severity == trt.ILogger.Severity.WARNING:
                self._log(f"tensorrt warning: {' '.join(msg.split())}")

    return Logger


def _calibrator_class(trt: Any) -> type:
    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds decoded uint8 batches to the builder; keeps the calibration cache."""

        def __init__(self, device: Any, images: np.ndarray, cache: Path, log: Log) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batch = min(CALIBRATION_BATCH, len(images))
            usable = len(images) - len(images) % self.batch  # every batch must be full
            self.batches = list(batches(images[:usable], self.batch))
            self.device = device
            self.buffer = device.alloc(self.batches[0].nbytes)
            self.cache = cache
            self.index = 0
            self._log = log

        def get_batch_size(self) -> int:
            return self.batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(self.batches):
                return None
            self.device.to_device(self.buffer, self.batches[self.index])
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

    return EntropyCalibrator


def _first_error(logger: Any, fallback: str) -> str:
    return logger.errors[0] if logger.errors else fallback


@dataclass
class BuiltEngine:
    """A serialized engine held in memory until its scores have been checked."""

    plan: bytes
    output: Path
    metadata: ModelMetadata
    info: EngineInfo

    def check_against_onnx(self, onnx_path: Path, images: ImageSet, force: bool, log: Log):
        """Compare with the float32 ONNX on ``images``; write engine + sidecar when it passes.

        Returns ``(drift, warning)``; ``warning`` is the refusal text when ``force`` let a failing
        INT8 engine through.
        """
        from .verify import check_int8, check_tolerance, measure, onnx_scores

        reference, close_reference = onnx_scores(onnx_path)
        runner = EngineRunner(self.plan, self.info, self.metadata.input_size)
        try:
            drift = measure(reference, runner.run, images, batch=RUN_BATCH)
        finally:
            runner.close()
            close_reference()
        log(drift.line(f"TensorRT {self.info.precision} {self.output.name} vs float32 ONNX ({images.source})"))
        warning = None
        if self.info.precision == "int8":
            warning = check_int8(drift, str(self.output), force)
        else:
            check_tolerance(drift, self.info.precision, str(self.output))
        self.write()
        log(f"wrote {self.output} and {sidecar_path(self.output).name}")
        return drift, warning

    def write(self) -> None:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.output.with_name(self.output.name + ".tmp")
        tmp.write_bytes(self.plan)
        os.replace(tmp, self.output)
        sidecar_path(self.output).write_text(engine_sidecar_json(self.metadata, self.info) + "\n", encoding="utf-8")


class EngineRunner:
    """Runs a serialized engine on uint8 batches (used to check it before it is written)."""

    def __init__(self, plan: bytes, info: EngineInfo, input_size: int, device_index: int = 0) -> None:
        import tensorrt as trt

        from .cuda_driver import CudaDevice

        self.device = CudaDevice(device_index)
        self.logger = _logger_class(trt)(lambda line: None)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            self.device.close()
            raise TensorRTBuildFailed(f"TensorRT cannot load the engine it built ({_first_error(self.logger, '?')})")
        self.context = self.engine.create_execution_context()
        self.max_batch = min(RUN_BATCH, info.max_batch)
        self.size = input_size
        self.buffers = {
            INPUT_NAME: self.device.alloc(self.max_batch * input_size * input_size * 3),
            "dist": self.device.alloc(self.max_batch * 10 * 4),
            "mean": self.device.alloc(self.max_batch * 4),
            "std": self.device.alloc(self.max_batch * 4),
        }
        for name, pointer in self.buffers.items():
            self.context.set_tensor_address(name, pointer)

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        results: list[list[np.ndarray]] = [[], [], []]
        for chunk in batches(images, self.max_batch):
            n = len(chunk)
            self.context.set_input_shape(INPUT_NAME, (n, self.size, self.size, 3))
            self.device.to_device(self.buffers[INPUT_NAME], chunk)
            if not self.context.execute_async_v3(0):
                raise TensorRTBuildFailed(f"TensorRT engine failed to run ({_first_error(self.logger, '?')})")
            self.device.synchronize()
            shapes = {"dist": (n, 10), "mean": (n,), "std": (n,)}
            for index, name in enumerate(OUTPUT_NAMES):
                results[index].append(self.device.from_device(self.buffers[name], shapes[name], np.float32))
        dist, mean, std = (np.concatenate(parts) for parts in results)
        return dist, mean, std

    def close(self) -> None:
        self.context = None
        self.engine = None
        self.device.close()


def build_engine(onnx_path: Path, output: Path, metadata: ModelMetadata, precision: str,
                 settings: TensorRTSettings, calibration: np.ndarray | None, log: Log) -> BuiltEngine:
    """Parse ``onnx_path`` and build an engine in memory (see :class:`BuiltEngine` for writing)."""
    settings.check()
    if precision == "int8" and calibration is None:
        raise ContractError("an INT8 engine needs calibration images")
    require_tensorrt(settings.device)
    import tensorrt as trt

    from .cuda_driver import CudaDevice

    device = CudaDevice(settings.device)
    try:
        gpu_name, capability = device.name, device.compute_capability
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
        calibrator = None
        onnx_sha = file_sha256(onnx_path)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            cache = settings.calibration_cache or default_calibration_cache(output, onnx_sha)
            calibrator = _calibrator_class(trt)(device, calibration, cache, log)
            calibration_profile = builder.create_optimization_profile()
            shape = (calibrator.batch, size, size, 3)
            calibration_profile.set_shape(INPUT_NAME, shape, shape, shape)
            config.set_calibration_profile(calibration_profile)
            config.int8_calibrator = calibrator
            log(f"INT8: calibrating on {len(calibrator.batches) * calibrator.batch} images, batch {calibrator.batch}")
        timing_path = settings.timing_cache or default_timing_cache(trt.__version__, gpu_name)
        timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
        config.set_timing_cache(timing, ignore_mismatch=False)
        log(f"building {precision} engine for {gpu_name} (sm {capability}), TensorRT {trt.__version__}, batch "
            f"{settings.min_batch}/{settings.opt_batch}/{settings.max_batch}")
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise TensorRTBuildFailed(f"{onnx_path}: TensorRT could not build the engine "
                                      f"({_first_error(logger, 'no error reported')})")
        timing_path.parent.mkdir(parents=True, exist_ok=True)
        timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
        info = EngineInfo(
            tensorrt_version=trt.__version__,
            gpu_name=gpu_name,
            compute_capability=capability,
            precision=precision,
            min_batch=settings.min_batch,
            opt_batch=settings.opt_batch,
            max_batch=settings.max_batch,
            source_onnx_sha256=onnx_sha,
            created=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        )
        return BuiltEngine(bytes(plan), output, metadata, info)
    finally:
        device.close()
