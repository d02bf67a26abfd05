"""Models published by other NIMA projects, imported as PyTorch contract modules for export.

``import_model`` dispatches on what the file is: a Keras HDF5 file (:mod:`.keras`: idealo's and
titu1994's MobileNet v1 models) or a PyTorch state dict (:mod:`.pytorch`: nima.pytorch's and
pyiqa's layouts). Each importer returns an :class:`ImportedModel`, which export traces, verifies
and writes exactly like a nima-rt checkpoint.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nima_rt.contract.spec import MODEL_KINDS
from nima_rt.export.importers.base import ImportedModel, ImportFailed, ImportRequest

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


@dataclass(frozen=True)
class SourceFile:
    """A weights file, what it holds, and (torch files) what ``torch.load`` read from it, so it is read once.

    ``kind``: ``keras`` (by its suffix: ``.h5``, ``.hdf5``, ``.weights.h5``, ``.keras``), ``checkpoint`` (a
    nima-rt checkpoint, or a file torch cannot read: the checkpoint loader's message names it) or ``torch``
    (any other readable torch file: a foreign state dict)."""

    path: Path
    kind: str  # "keras" | "checkpoint" | "torch"
    data: Any = None


def identity(path: Path, kind: str | None, name: str | None) -> tuple[str, str]:
    """``(kind, name)`` for an imported file: as given, else from the file name.

    ``weights_mobilenet_aesthetic_0.07.hdf5`` -> ``("aesthetic", "aesthetic")``; a name without
    ``aesthetic``/``technical`` -> ``("custom", <file stem>)``.
    """
    stem = path.name.split(".")[0]
    if kind is None:
        kind = next((k for k in ("aesthetic", "technical") if k in path.name.lower()), "custom")
    if kind not in MODEL_KINDS:
        raise ImportFailed(f"--kind must be one of {', '.join(MODEL_KINDS)}, got {kind!r}")
    if name is None:
        name = kind if kind != "custom" else re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_") or "imported"
    if not name.strip():
        raise ImportFailed("--name must not be empty")
    return kind, name


def is_keras_file(path: Path) -> bool:
    return path.suffix.lower() in KERAS_SUFFIXES


def classify(path: Path) -> SourceFile:
    """What the weights file at ``path`` holds, deciding once (torch files are loaded here, ``weights_only``)."""
    if is_keras_file(path):
        return SourceFile(path, "keras")
    from nima_rt.train.model.checkpoint import CHECKPOINT_FORMAT
    from nima_rt.train.model.nima_torch import load_torch_file

    data = load_torch_file(path)
    if not isinstance(data, Mapping) or data.get("format") == CHECKPOINT_FORMAT:
        return SourceFile(path, "checkpoint", data)
    return SourceFile(path, "torch", data)


def import_model(request: ImportRequest, source: SourceFile, log: Callable[[str], None]) -> ImportedModel:
    """The file's network as a contract module; :class:`ImportFailed` naming what was found otherwise."""
    if source.kind == "keras":
        from nima_rt.export.importers.keras import import_keras

        imported = import_keras(request)
    elif source.kind == "torch":
        from nima_rt.export.importers.pytorch import import_torch

        imported = import_torch(request, source.data)
    else:
        raise ImportFailed(f"{source.path}: a nima-rt checkpoint is not imported: export it as it is")
    for note in imported.notes:
        log(f"note: {note}")
    return imported
