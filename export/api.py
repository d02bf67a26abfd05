"""One export: a checkpoint or contract ONNX in, a verified ONNX model or TensorRT engine out.

``run_export`` is what ``nima-rt export`` calls; tests call it directly. Every path checks its
result against float32 on decoded images before it reports success:

- fp32 / fp16 ONNX: max |Δ mean score| against the PyTorch checkpoint (or the source ONNX);
- INT8 (ONNX QDQ or TensorRT): Spearman and mean |Δ| against float32 on images disjoint from
  the calibration set; below :data:`~.verify.INT8_MIN_SPEARMAN` nothing is written unless forced.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from nima_rt.contract.choices import PRECISIONS
from nima_rt.contract.spec import ContractError, ModelMetadata
from nima_rt.export.fp16_check import record_fp16_check, save_fp16_check
from nima_rt.export.tensorrt_build import TensorRTSettings
from nima_rt.io.model_file import ENGINE_SUFFIXES, ModelFile, load_model_file

FORMATS = ("onnx", "tensorrt")

Log = Callable[[str], None]


class ExportFailed(ContractError):
    """The export could not proceed; ``str()`` is one line naming the file and the reason."""


@dataclass
class ExportRequest:
    """What ``nima-rt export`` was asked to do."""

    source: Path
    output: Path | None = None
    format: str = "onnx"
    precision: str = "fp32"
    verify: bool = True
    verify_images: Path | None = None
    verify_count: int = 64
    calibration_images: Path | None = None
    calibration_count: int = 128
    calibration_method: str = "minmax"
    simplify: bool = True
    force: bool = False
    tensorrt: TensorRTSettings = field(default_factory=TensorRTSettings)
    # Identity of the exported model (metadata kind/name); an imported Keras/PyTorch file defaults
    # to what its file name says (export/importers/dispatch.py: identity), a checkpoint to its own metadata.
    kind: str | None = None
    name: str | None = None
    # Keras imports only: "keras" (Keras >= 2.2, tf.keras, Keras 3) or "symmetric" (Keras 2.1.5/2.1.6's MobileNet).
    keras_padding: str = "keras"


@dataclass
class ExportResult:
    """What was written and how close it is to float32."""

    output: Path
    metadata: ModelMetadata
    drift: object | None = None  # verify.Drift, when measured
    onnx_path: Path | None = None  # the float32 ONNX a TensorRT engine was built from
    warnings: list[str] = field(default_factory=list)


def _need(module: str, extra: str, purpose: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ExportFailed(
            f"{purpose} needs the '{extra}' extra ({module} is not installed): pip install 'nima-rt[{extra}]'"
        )


def default_output(source: Path, fmt: str, precision: str) -> Path:
    """``best.pt`` -> ``best.onnx`` / ``best.fp16.onnx`` / ``best.int8.engine`` beside the source."""
    stem = source.stem
    for suffix in (".fp16", ".int8", ".fp32"):
        stem = stem.removesuffix(suffix)
    tag = "" if precision == "fp32" and fmt == "onnx" else f".{precision}"
    return source.with_name(f"{stem}{tag}{'.engine' if fmt == 'tensorrt' else '.onnx'}")


def _validate(request: ExportRequest) -> tuple[str, Path]:
    if request.format not in FORMATS:
        raise ExportFailed(f"--format must be one of {', '.join(FORMATS)}, got {request.format!r}")
    if request.precision not in PRECISIONS:
        raise ExportFailed(f"--precision must be one of {', '.join(PRECISIONS)}, got {request.precision!r}")
    source = request.source
    if not source.is_file():
        raise ExportFailed(f"{source}: no such checkpoint or ONNX file")
    kind = "onnx" if source.suffix.lower() == ".onnx" else "checkpoint"
    output = request.output or default_output(source, request.format, request.precision)
    suffix = output.suffix.lower()
    if request.format == "onnx" and suffix != ".onnx":
        raise ExportFailed(f"{output}: an ONNX export must be written to a .onnx file (or pass --format tensorrt)")
    if request.format == "tensorrt" and suffix not in ENGINE_SUFFIXES:
        raise ExportFailed(f"{output}: a TensorRT engine must be written to a {'/'.join(ENGINE_SUFFIXES)} file")
    if output.resolve() == source.resolve():
        raise ExportFailed(f"{output}: the output would overwrite the source")
    if kind == "onnx" and request.format == "onnx" and request.precision == "fp32":
        raise ExportFailed(
            f"{source}: already a float32 ONNX model; export a checkpoint, or ask for --precision fp16|int8 "
            "or --format tensorrt"
        )
    for name, count in (("--verify-count", request.verify_count), ("--calibration-count", request.calibration_count)):
        if count < 2:
            raise ExportFailed(f"{name} must be at least 2, got {count}")
    for name, folder in (("--verify-images", request.verify_images),
                         ("--calibration-images", request.calibration_images)):
        if folder is not None and not folder.is_dir():
            raise ExportFailed(f"{folder}: {name} must be a folder of images")
    if request.format == "tensorrt":
        request.tensorrt.check()
    return kind, output


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _with_note(metadata: ModelMetadata, note: str) -> ModelMetadata:
    notes = f"{metadata.notes}; {note}" if metadata.notes else note
    return dataclasses.replace(metadata, notes=notes, created=_now())


def run_export(request: ExportRequest, log: Log = lambda line: None) -> ExportResult:
    """Carry out ``request``; raise :class:`ExportFailed`/ContractError with one line on failure."""
    kind, output = _validate(request)
    _need("onnx", "train", "export")
    if kind == "onnx":
        source_model = load_model_file(request.source)  # refuses corrupt and foreign files
        if source_model.format != "onnx":
            raise ExportFailed(f"{request.source}: not an ONNX model")
        _require_float32(source_model)
    if request.format == "tensorrt":
        from nima_rt.export.tensorrt_build import require_tensorrt

        require_tensorrt()
    with tempfile.TemporaryDirectory(prefix="nima-rt-export-") as scratch:
        if kind == "checkpoint":
            fp32_path, metadata, reference = _from_checkpoint(request, output, Path(scratch), log)
        else:
            fp32_path, metadata, reference = request.source, _renamed(source_model.metadata, request), None
        if request.format == "tensorrt":
            return _tensorrt(request, fp32_path, metadata, output, log)
        if request.precision == "fp32":
            images = _verification_images(request, metadata, log) if request.verify else None
            drift = _verify_fp(request, output, reference, metadata, log, images=images)
            if drift is not None:  # the fp16 check measures on the images verification decoded
                metadata = record_fp16_check(output, metadata, reference, images, Path(scratch), log)
            return ExportResult(output, metadata, drift)
        if request.precision == "fp16":
            return _fp16(request, fp32_path, metadata, output, reference, log)
        return _int8_onnx(request, fp32_path, metadata, output, log)


def _require_float32(model: ModelFile) -> None:
    """Variants and engines are made from the float32 graph, never from another variant."""
    if model.precision != "fp32":
        raise ExportFailed(
            f"{model.path}: is an {model.precision} model; export from the float32 ONNX model or the checkpoint instead"
        )


def _from_checkpoint(request: ExportRequest, output: Path, scratch: Path, log: Log):
    """Trace the checkpoint to a float32 ONNX: ``output`` itself for fp32, else a scratch/sibling file."""
    _need("torch", "train", "exporting a checkpoint")
    from nima_rt.export.onnx_export import finish_model, save_model, trace_to_onnx
    from nima_rt.export.verify import torch_scores

    module, metadata = _load_network(request, log)
    if request.format == "tensorrt":
        fp32_path = default_output(output, "onnx", "fp32")  # model.int8.engine -> model.onnx
    elif request.precision == "fp32":
        fp32_path = output
    else:
        fp32_path = scratch / "fp32.onnx"
    model, report = finish_model(trace_to_onnx(module, metadata.input_size), metadata, str(fp32_path),
                                 simplify_graph=request.simplify)
    log(f"traced {request.source} (opset {_opset(model)}): {report.simplify_note}")
    save_model(model, fp32_path)
    if request.format == "tensorrt":
        log(f"wrote {fp32_path} (the float32 graph the engine is built from)")
        if request.verify:
            _verify_fp(dataclasses.replace(request, precision="fp32"), fp32_path, torch_scores(module), metadata, log)
    return fp32_path, metadata, torch_scores(module)


def _load_network(request: ExportRequest, log: Log):
    """The contract module and metadata of a nima-rt checkpoint, or of a foreign NIMA model imported
    (a Keras file, a PyTorch state dict: export/importers/dispatch.py). The file is classified and read once."""
    from nima_rt.export.importers.base import ImportRequest
    from nima_rt.export.importers.dispatch import classify, identity, import_model
    from nima_rt.io.files import file_sha256
    from nima_rt.train.model.checkpoint import load_checkpoint

    source = classify(request.source)
    if source.kind != "checkpoint":
        if source.kind == "keras":
            _need("h5py", "train", "importing a Keras file")
        kind, name = identity(source.path, request.kind, request.name)
        imported = import_model(ImportRequest(source.path, kind, name, file_sha256(source.path), _now(),
                                              request.keras_padding), source, log)
        return imported.module, imported.metadata
    checkpoint = load_checkpoint(source.path, data=source.data)
    metadata = dataclasses.replace(_renamed(checkpoint.metadata, request), source_checkpoint_sha256=checkpoint.sha256,
                                   created=_now())
    return checkpoint.contract_module(), metadata


def _renamed(metadata: ModelMetadata, request: ExportRequest) -> ModelMetadata:
    """``metadata`` with the kind and name ``--kind``/``--name`` asked for (unchanged when not given)."""
    renamed = {k: v for k, v in (("kind", request.kind), ("name", request.name)) if v is not None}
    return dataclasses.replace(metadata, **renamed) if renamed else metadata


def _opset(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _verification_images(request: ExportRequest, metadata: ModelMetadata, log: Log):
    """The decoded verification images (``--verify-images`` or generated ones), decoded once per export."""
    from nima_rt.export.images import verification_set

    images = verification_set(request.verify_images, metadata, request.verify_count)
    _log_skipped(images, log)
    return images


def _verify_fp(request: ExportRequest, path: Path, reference, metadata: ModelMetadata, log: Log,
               warnings: list[str] | None = None, images=None):
    """fp32/fp16 parity against the reference on ``images`` (decoded here when not given); raises
    VerificationFailed beyond tolerance.

    With ``--force`` an fp16 file beyond tolerance is kept and the failure added to ``warnings``.
    """
    if not request.verify:
        return None
    from nima_rt.export.verify import TOLERANCES, check_tolerance, measure, onnx_scores

    images = images if images is not None else _verification_images(request, metadata, log)
    candidate, close = onnx_scores(path)
    try:
        drift = measure(reference, candidate, images)
    finally:
        close()
    log(drift.line(f"verify {request.precision} {path.name} vs float32 ({images.source})"))
    try:
        warning = check_tolerance(drift, request.precision, str(path), request.force)
    except ContractError:
        path.unlink(missing_ok=True)
        raise
    if warning is None:
        log(f"verify {request.precision}: within tolerance {TOLERANCES[request.precision]:g}")
    elif warnings is not None:
        warnings.append(warning)
    return drift


def _log_skipped(images, log: Log) -> None:
    if images.skipped:
        log(f"skipped {len(images.skipped)} undecodable file(s), e.g. {images.skipped[0]}")


def _fp16(request, fp32_path: Path, metadata: ModelMetadata, output: Path, reference, log: Log) -> ExportResult:
    """Half-precision copy of the float32 graph, checked against ``reference`` (PyTorch) or the float32 ONNX."""
    import onnx

    from nima_rt.export.onnx_export import check_contract_graph, save_model, set_metadata, to_fp16
    from nima_rt.export.verify import onnx_scores

    metadata = _with_note(metadata, "fp16 weights and compute; uint8 input and float32 outputs as ever")
    half = to_fp16(onnx.load(str(fp32_path)))
    set_metadata(half, metadata)
    check_contract_graph(half, metadata.input_size, str(output))
    save_model(half, output)
    close = None
    if reference is None and request.verify:
        reference, close = onnx_scores(fp32_path)
    try:
        result = ExportResult(output, metadata)
        result.drift = _verify_fp(request, output, reference, metadata, log, result.warnings)
        if result.drift is not None:
            result.metadata = save_fp16_check(output, metadata, result.drift)
        return result
    finally:
        if close is not None:
            close()


def _int8_onnx(request: ExportRequest, fp32_path: Path, metadata: ModelMetadata, output: Path,
               log: Log) -> ExportResult:
    from nima_rt.export.images import calibration_set, evaluation_set, plan_split
    from nima_rt.export.quantize import QuantizeSettings, quantize_qdq
    from nima_rt.export.verify import INT8_MIN_IMAGES, INT8_MIN_SPEARMAN, check_int8, measure, onnx_scores

    plan = plan_split(request.calibration_images, request.verify_images, request.calibration_count,
                      request.verify_count)
    calibration = calibration_set(plan, metadata, request.calibration_count)
    evaluation = evaluation_set(plan, metadata, request.verify_count)
    _log_skipped(calibration, log)
    _log_skipped(evaluation, log)
    log(f"INT8 calibration: {len(calibration.paths)} images from {calibration.source}; "
        f"evaluation: {len(evaluation.paths)} held-out images from {evaluation.source}")
    _require_enough_held_out(len(evaluation.paths), output, request.force)
    staged = output.with_name(output.name + ".staged")
    try:
        settings = QuantizeSettings(method=request.calibration_method)
        quantize_qdq(fp32_path, staged, calibration.images, metadata, settings)
        reference, close_ref = onnx_scores(fp32_path)
        candidate, close = onnx_scores(staged)
        try:
            drift = measure(reference, candidate, evaluation)
        finally:
            close(), close_ref()
        log(drift.line(f"INT8 {output.name} vs float32"))
        warning = check_int8(drift, str(output), request.force)
        if warning is None:
            log(f"INT8 gate: Spearman {drift.spearman:.4f} >= {INT8_MIN_SPEARMAN} on {drift.count} held-out images "
                f"(the gate needs at least {INT8_MIN_IMAGES})")
        note = (f"INT8 static QDQ ({request.calibration_method}, {len(calibration.paths)} calibration images); "
                f"Spearman {drift.spearman:.4f}, mean |Δ mean| {drift.mean_abs_mean:.3g} vs float32 on "
                f"{drift.count} held-out images")
        final = _with_note(metadata, note)
        import onnx

        from nima_rt.export.onnx_export import save_model, set_metadata

        model = onnx.load(str(staged))
        set_metadata(model, final)
        save_model(model, output)
    finally:
        staged.unlink(missing_ok=True)
    result = ExportResult(output, final, drift)
    if warning:
        result.warnings.append(warning)
    return result


def _require_enough_held_out(count: int, output: Path, force: bool) -> None:
    """Refuse an INT8 export before quantising when its gate would judge on too few images (--force
    goes on: the verdict then comes as a warning)."""
    from nima_rt.export.verify import VerificationFailed, int8_too_few

    reason = int8_too_few(count, str(output))
    if reason is not None and not force:
        raise VerificationFailed(f"{reason}; nothing written (--force writes it anyway)")


def _tensorrt(request: ExportRequest, onnx_path: Path, metadata: ModelMetadata, output: Path,
              log: Log) -> ExportResult:
    from nima_rt.export.images import calibration_set, evaluation_set, plan_split, verification_set
    from nima_rt.export.tensorrt_build import build_engine

    calibration = None
    if request.precision == "int8":
        plan = plan_split(request.calibration_images, request.verify_images, request.calibration_count,
                          request.verify_count)
        calibration = calibration_set(plan, metadata, request.calibration_count)
        evaluation = evaluation_set(plan, metadata, request.verify_count)
        log(f"INT8 calibration: {len(calibration.paths)} images from {calibration.source}; "
            f"evaluation: {len(evaluation.paths)} held-out images from {evaluation.source}")
        _require_enough_held_out(len(evaluation.paths), output, request.force)
    else:
        evaluation = verification_set(request.verify_images, metadata, request.verify_count)
    engine = build_engine(onnx_path, output, metadata, request.precision, request.tensorrt,
                          calibration.images if calibration is not None else None, log, request.calibration_method)
    result = ExportResult(output, metadata, onnx_path=onnx_path)
    if not request.verify and request.precision != "int8":  # INT8 is always checked
        engine.write()
        log(f"wrote {output} (not verified: --no-verify)")
        return result
    drift, warning = engine.check_against_onnx(onnx_path, evaluation, request.force, log)
    result.drift = drift
    if warning:
        result.warnings.append(warning)
    return result

