"""Precision variants of the bundled models: ``--precision int8`` picks ``<name>.int8.onnx``.

A bundled model may ship an INT8 copy beside it (``nima_rt/models/technical.int8.onnx``), written by
``tools/ship_int8.py`` only when its ranking matched float32 (Spearman >= 0.99 on graded held-out
photos; docs/guide/export.md). ``--precision int8`` (``ScorerConfig(precision="int8")``) swaps each bundled
model for that copy; a model file named by path is never swapped (export an INT8 file with
``nima-rt export MODEL.onnx --precision int8`` and pass it with ``--model``, no ``--precision`` needed).
"""

from __future__ import annotations

import os
from pathlib import Path

from nima_rt.io.model_file import ModelNotFound, bundled_models, load_model_file

INT8_SUFFIX = ".int8"


def is_int8_file(path: str | os.PathLike[str]) -> bool:
    """True for a file named ``*.int8.onnx`` (the name export and the bundled variants use)."""
    return Path(path).name.lower().endswith(INT8_SUFFIX + ".onnx")


def check_same_source(fp32: Path, int8: Path) -> None:
    """Refuse an INT8 copy made from another model than the float32 file beside it (the float32 model
    was replaced and the copy not rebuilt): both carry the checkpoint's sha256 in their metadata."""
    ours, theirs = (load_model_file(path).metadata.source_checkpoint_sha256 for path in (fp32, int8))
    if ours != theirs:
        raise ModelNotFound(
            f"{int8}: INT8 copy of another model (checkpoint sha256 {theirs[:12] or 'none'}, {fp32.name} has "
            f"{ours[:12] or 'none'}); rebuild it with tools/ship_int8.py, or use --precision fp32"
        )


def int8_variant(spec: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """The model spec ``--precision int8`` runs instead of ``spec``: the bundled ``<name>.int8``
    for a bundled name, ``spec`` itself for an ``*.int8.onnx`` file.
    Raises ModelNotFound for anything else, saying what to do."""
    bundled = bundled_models()
    name = os.fspath(spec)
    if name in bundled and name.endswith(INT8_SUFFIX):
        return name
    if name in bundled:
        if name + INT8_SUFFIX in bundled:
            check_same_source(bundled[name], bundled[name + INT8_SUFFIX])
            return name + INT8_SUFFIX
        have = ", ".join(n for n in bundled if n.endswith(INT8_SUFFIX)) or "none"
        raise ModelNotFound(f"--precision int8: the bundled model {name} has no INT8 variant "
                            f"(bundled INT8 variants: {have}); use --precision fp32, or name the models that have "
                            f"one (e.g. --model technical --precision int8)")
    if spec is not None and is_int8_file(name):
        return spec
    raise ModelNotFound(
        f"{name}: --precision int8 picks a bundled model's INT8 variant; for this model export one "
        f"(`nima-rt export {name} --precision int8 --calibration-images PHOTOS/`) and pass that file with --model"
    )
