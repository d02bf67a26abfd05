"""The NIMA network: a timm backbone plus a 10-bin softmax head.

``create_network(config)`` returns a :class:`NimaNetwork` whose forward takes normalised
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

Weights: :func:`create_network` initialises them at random; :mod:`nima_rt.train.model.pretrained`
loads ImageNet, checkpoint or state-dict weights on top.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nima_rt.contract.spec import NUM_BINS, ContractError, Normalization

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


def create_backbone(config: ModelConfig, **kwargs: Any) -> nn.Module:
    """The backbone ``config`` names, with random weights: a timm model, or a publisher's NIMA backbone rebuilt
    as it was (``keras_mobilenet_v1_*``: :mod:`.keras_mobilenet`; ``nima.pytorch:*``, ``pyiqa:*``:
    :mod:`.nima_torch`) so imported weights load into it."""
    foreign = _foreign_backbone(config.backbone)
    if foreign is not None:
        if config.head == "multilevel" and not hasattr(foreign, "forward_intermediates"):
            raise ContractError(f"backbone {config.backbone!r} has no forward_intermediates: use head 'linear'")
        return foreign
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


def _foreign_backbone(name: str) -> nn.Module | None:
    from nima_rt.train.model import keras_mobilenet, nima_torch

    keras = keras_mobilenet.parse_backbone(name)
    if keras is not None:
        return keras_mobilenet.KerasMobileNet(keras)
    torch_nima = nima_torch.parse_backbone(name)
    return torch_nima.build() if torch_nima is not None else None


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
            dim = self.features(torch.zeros(1, 3, 96, 96)).shape[1]  # 96: Inception-ResNet-v2's least is 75
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
    """The per-channel normalisation the backbone's weights expect (timm's data config; Keras's
    ``preprocess_input`` for Keras MobileNets, ImageNet's for the PyTorch NIMA layouts)."""
    from nima_rt.train.model import keras_mobilenet, nima_torch

    if keras_mobilenet.parse_backbone(config.backbone) is not None:
        return keras_mobilenet.KERAS_NORMALIZATION
    if nima_torch.parse_backbone(config.backbone) is not None:
        return Normalization()
    import timm

    name = config.timm_name
    if not timm.is_model(name):
        raise ContractError(f"unknown backbone {config.backbone!r}")
    cfg = timm.get_pretrained_cfg(name)
    mean = getattr(cfg, "mean", None) or (0.485, 0.456, 0.406)
    std = getattr(cfg, "std", None) or (0.229, 0.224, 0.225)
    return Normalization(tuple(float(v) for v in mean), tuple(float(v) for v in std))


def create_network(config: ModelConfig) -> NimaNetwork:
    """The network for ``config`` with randomly initialised weights (a checkpoint's or pretrained weights
    load on top: :mod:`nima_rt.train.model.pretrained`)."""
    return NimaNetwork(create_backbone(config), config)
