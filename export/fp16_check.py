"""The fp16 check every verified float32 export records: an fp16 copy measured against the reference.

GPU backends run a model in fp16 by default only when the check recorded in its metadata passed
(``precision_checks.fp16``; docs/design/architecture.md, precision policy).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nima_rt.contract.spec import ModelMetadata


def fp16_check(drift: Any) -> dict[str, object]:
    from nima_rt.export.verify import TOLERANCES

    return {"passed": bool(drift.max_abs_mean <= TOLERANCES["fp16"]), "max_abs_mean": float(drift.max_abs_mean),
            "tolerance": TOLERANCES["fp16"], "images": int(drift.count)}


def save_fp16_check(path: Path, metadata: ModelMetadata, drift: Any) -> ModelMetadata:
    """Record an fp16 check in ``path``'s metadata (the GPU precision policy reads it) and rewrite the file."""
    import onnx

    from nima_rt.export.onnx_export import save_model, set_metadata

    metadata = dataclasses.replace(metadata, precision_checks={**metadata.precision_checks, "fp16": fp16_check(drift)})
    model = onnx.load(str(path))
    set_metadata(model, metadata)
    save_model(model, path)
    return metadata


def record_fp16_check(fp32_path: Path, metadata: ModelMetadata, reference: Any, images: Any, scratch: Path,
                      log: Callable[[str], None]) -> ModelMetadata:
    """Measure an fp16 copy of the verified float32 file on the verification ``images`` (an ImageSet, as
    export decoded them), and record the verdict in it.

    GPU backends run a model in fp16 by default only when this check passed (docs/design/architecture.md).
    """
    import onnx

    from nima_rt.export.onnx_export import save_model, to_fp16
    from nima_rt.export.verify import measure, onnx_scores

    half_path = scratch / "fp16-check.onnx"
    save_model(to_fp16(onnx.load(str(fp32_path))), half_path)
    candidate, close = onnx_scores(half_path)
    try:
        drift = measure(reference, candidate, images)
    finally:
        close()
    check = fp16_check(drift)
    log(f"fp16 check for GPU backends: max |Δ mean| {drift.max_abs_mean:.2e} "
        f"({'passed' if check['passed'] else 'failed'} the {check['tolerance']:g} bar; GPUs default to "
        f"{'fp16' if check['passed'] else 'fp32'})")
    return save_fp16_check(fp32_path, metadata, drift)
