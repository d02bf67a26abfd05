"""Checkpoints: network weights + model config + contract metadata (+ optional training state).

A checkpoint is a plain ``torch.save`` dict that loads with ``torch.load(weights_only=True)``
(no pickled classes)::

    format        "nima-rt-checkpoint"
    version       1
    model_config  JSON of :class:`~.model.ModelConfig`
    metadata      JSON of :class:`nima_rt.contract.spec.ModelMetadata` (what export writes into the ONNX)
    network       the network's state dict
    ...           training state passed as keyword arguments (optimizer, scheduler, epoch, RNG...)

``save_checkpoint`` makes the metadata agree with the config: ``input_size`` = ``image_size``,
``normalization`` = the backbone's, ``backbone`` filled in when empty.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nima_rt.contract.messages import one_line
from nima_rt.contract.spec import ContractError, ModelMetadata
from nima_rt.io.files import atomic_path, file_sha256
from nima_rt.train.model.network import ModelConfig, NimaNetwork, create_network, normalization_for

CHECKPOINT_FORMAT = "nima-rt-checkpoint"
CHECKPOINT_VERSION = 1
_RESERVED = ("format", "version", "model_config", "metadata", "network")


def metadata_for(config: ModelConfig, metadata: ModelMetadata) -> ModelMetadata:
    """``metadata`` with input size, normalisation and backbone taken from ``config``."""
    return dataclasses.replace(
        metadata,
        input_size=config.image_size,
        normalization=normalization_for(config),
        backbone=metadata.backbone or config.backbone,
    )


def save_checkpoint(
    path: str | os.PathLike[str], network: nn.Module, config: ModelConfig, metadata: ModelMetadata, **state: Any
) -> Path:
    """Write a checkpoint atomically (temporary file + rename) and return its path."""
    clash = sorted(set(state) & set(_RESERVED))
    if clash:
        raise ValueError(f"checkpoint state may not use the reserved key(s) {', '.join(clash)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_config": json.dumps(config.to_dict(), sort_keys=True),
        "metadata": metadata_for(config, metadata).to_json(),
        "network": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        **state,
    }
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)
    return path


@dataclass
class Checkpoint:
    """A loaded checkpoint; ``network`` is in eval mode."""

    network: NimaNetwork
    config: ModelConfig
    metadata: ModelMetadata
    path: Path
    sha256: str
    state: dict[str, Any] = field(default_factory=dict)

    def contract_module(self) -> nn.Module:
        """The network wrapped in the model contract (uint8 NHWC in; dist, mean, std out)."""
        from nima_rt.train.model.contract_module import ContractModule

        return ContractModule(self.network, self.metadata.normalization).eval()


def read_checkpoint_dict(path: str | os.PathLike[str], map_location: str | torch.device = "cpu",
                         data: Any = None) -> dict[str, Any]:
    """The raw checkpoint dict, validated; :class:`ContractError` naming the file otherwise. ``data``: what
    ``torch.load`` already read from ``path`` (on the CPU), so a classified file is not read twice."""
    path = Path(path)
    if not path.is_file():
        raise ContractError(f"{path}: checkpoint not found")
    try:
        if data is None:
            data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        reason = one_line(exc, 200, default=type(exc).__name__)
        raise ContractError(f"{path}: not a readable nima-rt checkpoint ({reason})") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise ContractError(f"{path}: not a nima-rt checkpoint (no 'format': '{CHECKPOINT_FORMAT}' entry)")
    if data.get("version") != CHECKPOINT_VERSION:
        raise ContractError(
            f"{path}: checkpoint version {data.get('version')!r} is not supported (expected {CHECKPOINT_VERSION})"
        )
    for key in ("model_config", "metadata", "network"):
        if key not in data:
            raise ContractError(f"{path}: checkpoint has no {key!r} entry")
    return data


def recorded_backbone(path: str | os.PathLike[str]) -> str | None:
    """The backbone a nima-rt checkpoint at ``path`` records; None for anything else (``imagenet``,
    ``none``, a backbone state dict, a missing file: their own errors come later)."""
    if os.fspath(path) in ("imagenet", "none") or not Path(path).is_file():
        return None
    try:
        data = read_checkpoint_dict(path)
        return ModelConfig.from_dict(json.loads(data["model_config"]), str(path)).backbone
    except (ContractError, json.JSONDecodeError, TypeError, ValueError):
        return None


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu",
                    data: Any = None) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``; ``data``: what
    ``torch.load`` already read from ``path``)."""
    path = Path(path)
    data = read_checkpoint_dict(path, map_location, data)
    try:
        config = ModelConfig.from_dict(json.loads(data["model_config"]), str(path))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ContractError(f"{path}: malformed model_config ({exc})") from None
    metadata = ModelMetadata.from_json(data["metadata"], str(path))
    network = create_network(config)
    try:
        network.load_state_dict(data["network"], strict=True)
    except RuntimeError as exc:
        reason = one_line(exc, 300)
        raise ContractError(f"{path}: weights do not fit a {config.backbone} network ({reason})") from None
    network.eval()
    state = {k: v for k, v in data.items() if k not in _RESERVED}
    return Checkpoint(network, config, metadata, path, file_sha256(path), state)
