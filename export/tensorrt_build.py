"""Build a TensorRT engine from a contract ONNX file, the same way on TensorRT 10.x and 11.x.

Every network is **strongly typed**: the types in the ONNX graph are the engine's, so the precision
is chosen by the graph TensorRT parses, not by builder flags (TensorRT 11 removed ``BuilderFlag.FP16``,
``BuilderFlag.INT8`` and the INT8 calibrator API; strongly typed networks exist since TensorRT 9):

- fp32: the float32 contract ONNX as given; the TF32 flag is cleared (fp32 means fp32: the 1e-4 bar);
- fp16: the fp16 ONNX made by the export's own converter (:func:`nima_rt.export.onnx_export.to_fp16`,
  the file ``--precision fp16`` writes: uint8 input, fp16 network, the contract's nodes and outputs float32);
- int8: a Q/DQ ONNX made by the export's own quantiser (:func:`nima_rt.export.quantize.quantize_qdq`)
  with TensorRT's rules (:data:`TENSORRT_QDQ`: signed int8 with zero point 0, weights per channel,
  bias left float) from calibration images decoded by the runtime's decoder; TensorRT runs the Q/DQ
  layers in INT8 and the rest in the graph's float32. The Q/DQ file is kept beside the engine,
  keyed by the calibration method and the ONNX file's sha256 (the calibration cache of this design).

The ONNX parser reads the graph; one optimisation profile covers the dynamic batch
(``min``/``opt``/``max``); a timing cache (per TensorRT version and GPU, in the user cache folder)
makes rebuilds fast.

The engine and its sidecar ``<engine>.json`` (:func:`nima_rt.contract.spec.engine_sidecar_json`) are
first written under a provisional name, loaded by the runtime's own TensorRT backend (which checks
the sidecar against this machine) and run on held-out images against the float32 ONNX model (ONNX
Runtime on CPU). Only when INT8 keeps Spearman >= 0.99 (unless forced), or fp32/fp16 stay within
the ONNX tolerances, are they renamed to the requested name; otherwise both are deleted.

GPU name and compute capability come from :func:`nima_rt.runtime.backends.cuda_driver.probe_gpu`, the same
probe the runtime compares the sidecar with.

Nothing here imports ``tensorrt`` at module level: ``import nima_rt.export`` works without it. Every
``trt.*`` call below is checked against NVIDIA's real bindings of TensorRT 10 and 11 on CPU
(tests/runtime/test_gpu_conformance.py); building still needs a GPU.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from nima_rt.contract.messages import one_line
from nima_rt.contract.spec import INPUT_NAME, ContractError, EngineInfo, ModelMetadata, engine_sidecar_json
from nima_rt.export.images import ImageSet
from nima_rt.io.files import file_sha256, write_bytes_atomic
from nima_rt.io.model_file import load_model_file, sidecar_path
from nima_rt.runtime.backends.base import BackendUnavailable

TENSORRT_MISSING = (
    "TensorRT export needs the 'gpu' extra (the tensorrt Python package is not installed): "
    "pip install 'nima-rt[gpu]'"
)
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
    calibration_cache: Path | None = None  # INT8: the Q/DQ ONNX (default: beside the engine, keyed by the ONNX sha256)
    workspace_gib: float | None = None  # builder scratch memory limit (default: TensorRT's)

    def check(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ContractError(
                "batch profile must satisfy 1 <= --min-batch <= --opt-batch <= --max-batch, got "
                f"{self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )


def tensorrt_installed() -> bool:
    """Whether a ``tensorrt`` package is there at all (:func:`require_tensorrt` checks it is the real one)."""
    from nima_rt.runtime.backends.tensorrt_engine import module_installed

    return module_installed("tensorrt")


def require_tensorrt() -> Any:
    """NVIDIA's ``tensorrt`` module when export can build here, else :class:`TensorRTUnavailable` naming
    what is missing: the package, a GPU, a real and supported TensorRT, cuda-python."""
    if not tensorrt_installed():
        raise TensorRTUnavailable(TENSORRT_MISSING)
    from nima_rt.runtime.backends.cuda_driver import probe_gpu
    from nima_rt.runtime.backends.tensorrt_engine import import_cudart, import_tensorrt

    try:
        probe_gpu()
    except BackendUnavailable as exc:
        raise TensorRTUnavailable(f"TensorRT export needs an NVIDIA GPU ({exc})") from None
    try:
        trt = import_tensorrt()
    except BackendUnavailable as exc:
        raise TensorRTUnavailable(f"TensorRT export needs NVIDIA's TensorRT ({exc})") from None
    try:
        import_cudart()
    except BackendUnavailable as exc:
        raise TensorRTUnavailable(f"TensorRT export needs NVIDIA's CUDA runtime bindings ({exc})") from None
    return trt


def default_timing_cache(tensorrt_version: str, gpu_name: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nima-rt" / "tensorrt"
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower()
    return base / f"timing-{tensorrt_version}-{gpu}.cache"


def default_calibration_cache(engine: Path, onnx_sha256: str, method: str = "minmax") -> Path:
    """Where the INT8 Q/DQ ONNX of ``engine`` is kept: ``<stem>.int8-qdq-<method>-<sha12>.onnx``."""
    return engine.with_name(f"{engine.stem}.int8-qdq-{method}-{onnx_sha256[:12]}.onnx")


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


def tensorrt_qdq_settings(method: str = "minmax") -> Any:
    """The export quantiser's recipe with TensorRT's explicit-quantisation rules: int8 activations and
    weights, symmetric (TensorRT takes zero point 0 only, no uint8), weights per channel at full 8 bits,
    biases left float (TensorRT has no int32 DequantizeLinear); the float32 stem and depthwise
    convolutions of the CPU recipe are kept (docs/guide/export.md measured why)."""
    from nima_rt.export.quantize import QuantizeSettings

    return QuantizeSettings(method=method, reduce_range=False, signed_activations=True)


def strongly_typed_flags(trt: Any) -> int:
    """``create_network`` flags: strongly typed. TensorRT 11 knows no other mode (its flag is deprecated
    and ignored, so none is passed); on 10.x ``STRONGLY_TYPED`` asks for it."""
    if int(str(trt.__version__).split(".", 1)[0]) >= 11:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def network_onnx(onnx_path: Path, output: Path, metadata: ModelMetadata, precision: str,
                 settings: TensorRTSettings, calibration: np.ndarray | None, method: str, scratch: Path,
                 log: Log) -> Path:
    """The ONNX file whose types are the engine's precision: the float32 file itself, its fp16 copy
    (in ``scratch``) or its Q/DQ INT8 copy (kept beside the engine and reused; see the module docstring)."""
    if precision == "fp32":
        return onnx_path
    import onnx

    from nima_rt.export.onnx_export import save_model, to_fp16

    if precision == "fp16":
        half = scratch / f"{onnx_path.stem}.fp16.onnx"
        save_model(to_fp16(onnx.load(str(onnx_path))), half)
        log(f"fp16: TensorRT parses the fp16 copy of {onnx_path.name} (strongly typed network)")
        return half
    if calibration is None:
        raise ContractError("an INT8 engine needs calibration images")
    from nima_rt.export.quantize import quantize_qdq

    qdq = settings.calibration_cache or default_calibration_cache(output, file_sha256(onnx_path), method)
    if qdq.is_file():
        log(f"INT8: reusing the Q/DQ model {qdq} (delete it to recalibrate)")
        return qdq
    log(f"INT8: calibrating on {len(calibration)} images ({method}) into Q/DQ model {qdq}")
    staged = scratch / qdq.name
    quantize_qdq(onnx_path, staged, calibration, metadata, tensorrt_qdq_settings(method))
    qdq.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(qdq, staged.read_bytes())
    return qdq


def _builder_config(trt: Any, builder: Any, settings: TensorRTSettings, size: int, precision: str) -> Any:
    """Workspace limit, the one batch profile, and TF32 off for fp32 (the precision is the graph's)."""
    config = builder.create_builder_config()
    if settings.workspace_gib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_gib * (1 << 30)))
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (settings.min_batch, size, size, 3), (settings.opt_batch, size, size, 3),
                      (settings.max_batch, size, size, 3))
    config.add_optimization_profile(profile)
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: the 1e-4 tolerance applies
    return config


def build_engine(onnx_path: Path, output: Path, metadata: ModelMetadata, precision: str,
                 settings: TensorRTSettings, calibration: np.ndarray | None, log: Log,
                 calibration_method: str = "minmax") -> BuiltEngine:
    """Parse the ``precision`` graph of ``onnx_path`` (float32) into a strongly typed network and build
    an engine in memory (see :class:`BuiltEngine` for writing)."""
    settings.check()
    if precision not in ("fp32", "fp16", "int8"):
        raise ContractError(f"TensorRT precision must be fp32, fp16 or int8, got {precision!r}")
    if precision == "int8" and calibration is None:
        raise ContractError("an INT8 engine needs calibration images")
    trt = require_tensorrt()
    from nima_rt.runtime.backends.cuda_driver import probe_gpu
    from nima_rt.runtime.backends.tensorrt_engine import start_failure

    gpu = probe_gpu()
    logger = _logger_class(trt)(log)
    try:
        builder = trt.Builder(logger)
    except TypeError as exc:  # what real TensorRT raises when it cannot initialise CUDA
        raise TensorRTUnavailable(start_failure("trt.Builder", exc)) from None
    network = builder.create_network(strongly_typed_flags(trt))
    parser = trt.OnnxParser(network, logger)
    with tempfile.TemporaryDirectory(prefix="nima-rt-tensorrt-") as scratch:  # alive until the build is done
        graph = network_onnx(onnx_path, output, metadata, precision, settings, calibration, calibration_method,
                             Path(scratch), log)
        if not parser.parse_from_file(str(graph)):
            errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
            reason = "; ".join(errors)[:300]
            raise TensorRTBuildFailed(f"{graph}: TensorRT's ONNX parser refused the model ({reason})")
        if network.num_inputs != 1 or network.get_input(0).name != INPUT_NAME:
            raise TensorRTBuildFailed(f"{graph}: expected one input {INPUT_NAME!r}")
        config = _builder_config(trt, builder, settings, metadata.input_size, precision)
        timing_path = settings.timing_cache or default_timing_cache(trt.__version__, gpu.name)
        timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
        config.set_timing_cache(timing, ignore_mismatch=False)
        log(f"building {precision} engine for {gpu.name} (sm {gpu.compute_capability}), TensorRT "
            f"{trt.__version__}, strongly typed, batch {settings.min_batch}/{settings.opt_batch}/{settings.max_batch}")
        plan = builder.build_serialized_network(network, config)
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
        source_onnx_sha256=file_sha256(onnx_path),
        created=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    )
    return BuiltEngine(bytes(plan), output, metadata, info)
