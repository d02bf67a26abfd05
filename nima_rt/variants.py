"""Precision variants of the bundled models: ``--precision int8`` picks ``<name>.int8.onnx``.

A bundled model may ship an INT8 copy beside it (``nima_rt/models/technical.int8.onnx``), written by
``tools/ship_int8.py`` only when its ranking matched float32 (Spearman >= 0.99 on graded held-out
photos; docs/export.md). ``--precision int8`` (``ScorerConfig(precision="int8")``) swaps each bundled
model for that copy; a model file named by path is never swapped (export an INT8 file with
``nima-rt export MODEL.onnx --precision int8`` and pass it with ``--model``, no ``--precision`` needed).
"""

from __future__ import annotations

import os
from pathlib import Path

from .model_file import DEFAULT_MODEL, ModelNotFound, bundled_models

INT8_SUFFIX = ".int8"


def is_int8_file(path: str | os.PathLike[str]) -> bool:
    """True for a file named ``*.int8.onnx`` (the name export and the bundled variants use)."""
    return Path(path).name.lower().endswith(INT8_SUFFIX + ".onnx")


def int8_variant(spec: str | os.PathLike[str] | None) -> str | os.PathLike[str]:
    """The model spec ``--precision int8`` runs instead of ``spec``: the bundled ``<name>.int8``
    for a bundled name (None: the default model), ``spec`` itself for an ``*.int8.onnx`` file.
    Raises ModelNotFound for anything else, saying what to do."""
    bundled = bundled_models()
    name = DEFAULT_MODEL if spec is None else os.fspath(spec)
    if name in bundled and name.endswith(INT8_SUFFIX):
        return name
    if name in bundled:
        if name + INT8_SUFFIX in bundled:
            return name + INT8_SUFFIX
        have = ", ".join(n for n in bundled if n.endswith(INT8_SUFFIX)) or "none"
        raise ModelNotFound(f"--precision int8: the bundled model {name} has no INT8 variant "
                            f"(bundled INT8 variants: {have}); use --precision fp32")
    if spec is not None and is_int8_file(name):
        return spec
    raise ModelNotFound(
        f"{name}: --precision int8 picks a bundled model's INT8 variant; for this model export one "
        f"(`nima-rt export {name} --precision int8 --calibration-images PHOTOS/`) and pass that file with --model"
    )
