"""The types every importer shares: what to import (:class:`ImportRequest`), what comes back
(:class:`ImportedModel`) and the one refusal (:class:`ImportFailed`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nima_rt.contract.spec import ModelMetadata
from nima_rt.train.model.refusal import ImportFailed

__all__ = ["ImportFailed", "ImportRequest", "ImportedModel", "imported_model"]


@dataclass(frozen=True)
class ImportRequest:
    """One foreign weights file and the identity its exported model gets."""

    path: Path
    kind: str
    name: str
    sha256: str
    created: str
    keras_padding: str = "keras"  # keras_mobilenet.PADDINGS: how the Keras file's MobileNet padded


@dataclass
class ImportedModel:
    """A PyTorch contract module with the metadata the exported ONNX file will carry."""

    module: object  # ContractModule in eval mode: uint8 NHWC in; dist, mean, std out
    metadata: ModelMetadata
    notes: list[str] = field(default_factory=list)


def imported_model(request: ImportRequest, model: Any, publisher: str, notes: str) -> ImportedModel:
    """The ImportedModel of a foreign model read by :mod:`nima_rt.train.model.foreign` (``model``: its
    ForeignModel): its network as a ContractModule, and metadata with the request's identity, the model's
    preprocessing and licences, ``imported {publisher} NIMA weights`` as provenance and ``notes``."""
    from nima_rt.train.model.contract_module import ContractModule

    metadata = ModelMetadata(
        name=request.name,
        kind=request.kind,
        input_size=model.input_size,
        resize=model.resize,
        normalization=model.normalization,
        backbone=model.config.backbone,
        trained_on=f"imported {publisher} NIMA weights (see notes)",
        source_checkpoint_sha256=request.sha256,
        created=request.created,
        licenses=model.licenses,
        notes=notes,
    )
    return ImportedModel(ContractModule(model.network, model.normalization).eval(), metadata, model.notes)
