"""The types every importer shares: what to import (:class:`ImportRequest`), what comes back
(:class:`ImportedModel`) and the one refusal (:class:`ImportFailed`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nima_rt.contract.spec import ModelMetadata
from nima_rt.train.model.refusal import ImportFailed

__all__ = ["ImportFailed", "ImportRequest", "ImportedModel"]


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
