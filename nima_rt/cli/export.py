"""``nima-rt export``: a checkpoint (or contract ONNX) to a verified ONNX model or TensorRT engine.

Registered through ``COMMAND_MODULES`` in ``nima_rt/cli/__init__.py``. Only typer and the light
runtime load at import; torch, onnx and tensorrt load inside the command.
"""

from __future__ import annotations

from pathlib import Path

import typer

from nima_rt.cli.common import fail, note
from nima_rt.contract.spec import ContractError
from nima_rt.io.model_file import ENGINE_SUFFIXES


def export(
    source: Path = typer.Argument(
        ..., help="A checkpoint (best.pt), a contract ONNX file (model.onnx), or a NIMA model to import: Keras "
        "HDF5 (idealo's weights_mobilenet_*.hdf5) or a PyTorch state dict (nima.pytorch, pyiqa); "
        "docs/guide/importing.md."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="File to write (default: beside SOURCE, e.g. best.onnx, best.fp16.onnx)."
    ),
    fmt: str | None = typer.Option(
        None, "--format", help="onnx | tensorrt (default: tensorrt for a .engine/.plan/.trt --output, else onnx)."
    ),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | fp16 | int8"),
    verify: bool = typer.Option(
        True, "--verify/--no-verify",
        help="Compare the result with float32 PyTorch (or the source ONNX) on decoded images; fail beyond "
        "tolerance (fp32 1e-4, fp16 0.02 on the mean score). INT8 is always checked.",
    ),
    verify_images: Path | None = typer.Option(
        None, "--verify-images", help="Folder of images for verification (default: generated images)."
    ),
    verify_count: int = typer.Option(64, "--verify-count", help="Images used for verification / INT8 evaluation."),
    calibration_images: Path | None = typer.Option(
        None, "--calibration-images",
        help="Folder of representative images for INT8 calibration (held-out images are never calibrated on).",
    ),
    calibration_count: int = typer.Option(128, "--calibration-count", help="Images used for INT8 calibration."),
    calibration_method: str = typer.Option(
        "minmax", "--calibration-method", help="INT8 range estimate (ONNX and TensorRT): minmax | entropy | percentile."
    ),
    simplify: bool = typer.Option(True, "--simplify/--no-simplify", help="onnxslim pass (kept only if outputs match)."),
    force: bool = typer.Option(
        False, "--force", help="Write an INT8 model below Spearman 0.99, or an fp16 one beyond 0.02, with a warning."
    ),
    min_batch: int = typer.Option(1, "--min-batch", help="TensorRT profile: smallest batch."),
    opt_batch: int = typer.Option(64, "--opt-batch", help="TensorRT profile: batch tuned for."),
    max_batch: int = typer.Option(256, "--max-batch", help="TensorRT profile: largest batch."),
    timing_cache: Path | None = typer.Option(None, "--timing-cache", help="TensorRT timing cache file."),
    calibration_cache: Path | None = typer.Option(
        None, "--calibration-cache", help="TensorRT INT8: the Q/DQ ONNX calibrated into (default: beside the engine)."
    ),
    workspace_gib: float | None = typer.Option(None, "--workspace-gib", help="TensorRT builder memory limit."),
    kind: str | None = typer.Option(
        None, "--kind", help="aesthetic | technical | custom (metadata; an imported Keras/PyTorch file defaults "
        "to what its name says, e.g. weights_mobilenet_aesthetic_0.07.hdf5 -> aesthetic)."
    ),
    name: str | None = typer.Option(None, "--name", help="Model name: the score columns' prefix (default: the kind)."),
    keras_padding: str = typer.Option(
        "keras", "--keras-padding",
        help="Keras imports: keras (Keras >= 2.2, tf.keras, Keras 3: bottom/right padding at stride 2) | symmetric "
        "(the MobileNet of Keras 2.1.5/2.1.6).",
    ),
) -> None:
    """Export a checkpoint to the contract ONNX model (fp32/fp16/INT8) or a TensorRT engine, and verify it."""
    from nima_rt.export.api import ExportRequest, run_export
    from nima_rt.export.tensorrt_build import TensorRTSettings

    if fmt is None:
        fmt = "tensorrt" if output is not None and output.suffix.lower() in ENGINE_SUFFIXES else "onnx"
    request = ExportRequest(
        source=source,
        output=output,
        format=fmt,
        precision=precision,
        verify=verify,
        verify_images=verify_images,
        verify_count=verify_count,
        calibration_images=calibration_images,
        calibration_count=calibration_count,
        calibration_method=calibration_method,
        simplify=simplify,
        force=force,
        tensorrt=TensorRTSettings(min_batch, opt_batch, max_batch, timing_cache, calibration_cache, workspace_gib),
        kind=kind,
        name=name,
        keras_padding=keras_padding,
    )
    try:
        result = run_export(request, note)
    except (ContractError, ValueError, OSError) as exc:
        fail(str(exc))
    for warning in result.warnings:
        note(f"warning: {warning}")
    note(f"wrote {result.output} ({result.metadata.name}, {precision}, input {result.metadata.input_size}px)")
    typer.echo(str(result.output))


def register(app: typer.Typer) -> None:
    app.command("export")(export)
