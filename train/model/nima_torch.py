"""PyTorch NIMA state dicts (nima.pytorch's, pyiqa's layouts) read into a nima-rt NIMA network.

The publishers' networks are rebuilt with their own module structure, so their state dicts load with
``strict=True`` and nothing is renamed by guesswork; each becomes a backbone of
:class:`~nima_rt.train.model.network.NimaNetwork` plus its linear head, so it scores, trains and exports
like any backbone:

- **nima.pytorch** (truskovskiyk, MIT): ``NIMA(base_model=nn.Sequential(*list(resnetN.children())[:-1]))``
  with ``head = Sequential(ReLU, Dropout, Linear(features, 10), Softmax)``; saved as
  ``{"model_type": "resnet18", "state_dict": ...}`` or a bare state dict (``base_model.0.weight``,
  ``head.2.weight``). Backbones: torchvision ResNet-18/34/50/101/152 (the head's ReLU is the backbone's
  last step here). Preprocessing: torchvision ``Resize((224, 224))`` (PIL bilinear, aspect ratio ignored)
  and ImageNet normalisation. Backbone name ``nima.pytorch:resnet18``.
- **pyiqa** (chaofengc/IQA-PyTorch): ``base_model = timm.create_model(name, features_only=True)``,
  the last feature map average-pooled, ``classifier = Sequential(Flatten, Dropout, Linear, Softmax)``;
  saved as ``{"params": ...}`` (``base_model.*``, ``classifier.2.weight``). Backbones tried:
  :data:`PYIQA_BACKBONES`. pyiqa scores full-resolution images; the contract needs one input size,
  so the import squashes to 224 (299 for Inception-ResNet-v2), bilinear. Backbone name ``pyiqa:vgg16``.

Backbones are built with random initial weights (no download) and then loaded from the file.
Anything else is refused with one line naming the keys found and the layouts supported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nima_rt.contract.spec import NUM_BINS, ContractError, ResizeSpec
from nima_rt.train.model.refusal import ImportFailed

NIMA_PYTORCH_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
# timm backbones pyiqa's NIMA uses (vgg16: AVA; inception_resnet_v2: KonIQ/SPAQ) and the key that tells each apart.
PYIQA_SIGNATURES = {
    "vgg16": "base_model.features_0.weight",
    "inception_resnet_v2": "base_model.conv2d_1a.conv.weight",
    "mobilenetv2_100": "base_model.conv_stem.weight",
    "resnet50": "base_model.conv1.weight",
}
PYIQA_BACKBONES = tuple(PYIQA_SIGNATURES)
PYIQA_INPUT_SIZE = {"inception_resnet_v2": 299}
PYIQA_DROPOUT = 0.0  # pyiqa's classifier Dropout
NIMA_PYTORCH_DROPOUT = 0.75
SUPPORTED = ("nima.pytorch (base_model.* + head.2.*, torchvision ResNet-18..152) and pyiqa NIMA "
             f"(base_model.* + classifier.2.*, timm {', '.join(PYIQA_BACKBONES)}) state dicts")
# nima.pytorch's first release wrapped its own MobileNetV2 (features[1] = InvertedResidual with a .conv Sequential).
OWN_MOBILENET_V2_KEY = "base_model.0.1.conv.0.weight"
LICENCES = {"nima.pytorch": "truskovskiyk/nima.pytorch: MIT",
            "pyiqa": "chaofengc/IQA-PyTorch: CC BY-NC-SA 4.0, non-commercial use only"}
# The resize both publishers' inference uses: PIL bilinear to S x S (torchvision Resize on PIL images).
BILINEAR_SQUASH = ResizeSpec(policy="squash", interpolation="bilinear", jpeg_draft=False)
HEAD_KEYS = {"nima.pytorch": "head.2", "pyiqa": "classifier.2"}


class NimaPytorchBackbone(nn.Module):
    """nima.pytorch's ``base_model`` on a torchvision ResNet, then its head's ReLU: pooled features out."""

    def __init__(self, name: str) -> None:
        super().__init__()
        import torchvision

        resnet = getattr(torchvision.models, name)(weights=None)
        self.num_features = resnet.fc.in_features
        self.base_model = nn.Sequential(*list(resnet.children())[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.base_model(x).flatten(1))


class PyiqaBackbone(nn.Module):
    """pyiqa's ``base_model`` (timm, ``features_only``) and global average pool: pooled features out."""

    def __init__(self, name: str) -> None:
        super().__init__()
        import timm

        self.base_model = timm.create_model(name, pretrained=False, features_only=True)
        self.num_features = self.base_model.feature_info.channels()[-1]
        self.global_pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.global_pool(self.base_model(x)[-1]).flatten(1)


@dataclass(frozen=True)
class TorchNimaSpec:
    """What a ``nima.pytorch:<resnet>`` / ``pyiqa:<timm name>`` backbone name says."""

    layout: str  # "nima.pytorch" | "pyiqa"
    backbone: str

    @property
    def name(self) -> str:
        return f"{self.layout}:{self.backbone}"

    @property
    def input_size(self) -> int:
        return PYIQA_INPUT_SIZE.get(self.backbone, 224) if self.layout == "pyiqa" else 224

    @property
    def dropout(self) -> float:
        return PYIQA_DROPOUT if self.layout == "pyiqa" else NIMA_PYTORCH_DROPOUT

    def build(self) -> nn.Module:
        return NimaPytorchBackbone(self.backbone) if self.layout == "nima.pytorch" else PyiqaBackbone(self.backbone)


def parse_backbone(name: str) -> TorchNimaSpec | None:
    """The spec a backbone name gives, or None when it is not a PyTorch NIMA layout's name."""
    layout, _, backbone = name.partition(":")
    if layout == "nima.pytorch" and backbone in NIMA_PYTORCH_RESNETS:
        return TorchNimaSpec(layout, backbone)
    if layout == "pyiqa" and backbone in PYIQA_BACKBONES:
        return TorchNimaSpec(layout, backbone)
    if layout in HEAD_KEYS:
        raise ContractError(f"unknown {layout} backbone {backbone!r}: use one of "
                            f"{', '.join(NIMA_PYTORCH_RESNETS if layout == 'nima.pytorch' else PYIQA_BACKBONES)}")
    return None


def load_torch_file(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``; None when the file is not a readable torch file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch raises many types for unreadable files
        return None


def state_dict_of(data: Any) -> tuple[dict[str, Any], str | None]:
    """The tensors (``params``/``state_dict``/``model`` entry or the dict itself) and a ``model_type``."""
    model_type = data.get("model_type") if isinstance(data.get("model_type"), str) else None
    for key in ("params", "state_dict", "model", "network"):
        if isinstance(data.get(key), Mapping):
            data = data[key]
            break
    tensors = {k.removeprefix("module."): v for k, v in data.items() if isinstance(v, torch.Tensor)}
    return tensors, model_type


def _shapes(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _candidates(state: Mapping[str, Any], model_type: str | None) -> list[TorchNimaSpec]:
    """Layouts and backbones worth trying for these keys, most likely first."""
    if "head.2.weight" in state:
        names = [model_type] if model_type in NIMA_PYTORCH_RESNETS else list(NIMA_PYTORCH_RESNETS)
        return [TorchNimaSpec("nima.pytorch", name) for name in names]
    if "classifier.2.weight" in state:
        names = [n for n, key in PYIQA_SIGNATURES.items() if key in state] or list(PYIQA_BACKBONES)
        return [TorchNimaSpec("pyiqa", name) for name in names]
    return []


def refusal(path: Path, state: Mapping[str, Any], reason: str) -> ImportFailed:
    keys = list(state)
    shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
    return ImportFailed(f"{path}: {reason} ({len(keys)} tensors: {shown}); nima-rt imports {SUPPORTED}")


def read_torch_nima(path: Path, data: Any) -> tuple[TorchNimaSpec, nn.Module, dict[str, torch.Tensor]]:
    """The state dict ``data`` (read from ``path``) as ``(spec, backbone with its weights, head state)``, the
    head state keyed ``weight``/``bias`` for a ``Linear(features, 10)``; refuses layouts it cannot rebuild."""
    if not isinstance(data, Mapping):
        raise ImportFailed(f"{path}: not a PyTorch state dict nima-rt can import; it imports {SUPPORTED}")
    state, model_type = state_dict_of(data)
    head = state.get("head.2.weight", state.get("classifier.2.weight"))
    if head is not None and tuple(head.shape)[0] != NUM_BINS:
        raise refusal(path, state, f"the head has {tuple(head.shape)[0]} outputs, NIMA's has {NUM_BINS}")
    if OWN_MOBILENET_V2_KEY in state:
        raise refusal(path, state, "nima.pytorch's own MobileNetV2 (its pretrain-model.pth: ReLU stem and an "
                                   "expansion convolution in the first block, which neither torchvision's nor timm's "
                                   "MobileNetV2 has)")
    candidates = _candidates(state, model_type)
    if not candidates:
        raise refusal(path, state, "not a nima-rt checkpoint and no NIMA head (head.2.* or classifier.2.*)")
    for spec in candidates:
        backbone = spec.build()
        prefix = HEAD_KEYS[spec.layout]
        wanted = {f"base_model.{k}": v for k, v in _shapes(backbone.base_model.state_dict()).items()}
        wanted.update({f"{prefix}.weight": (NUM_BINS, backbone.num_features), f"{prefix}.bias": (NUM_BINS,)})
        if wanted == _shapes(state):
            base = {k.removeprefix("base_model."): v for k, v in state.items() if k.startswith("base_model.")}
            backbone.base_model.load_state_dict(base, strict=False)  # counters (num_batches_tracked) may be absent
            return spec, backbone, {"weight": state[f"{prefix}.weight"], "bias": state[f"{prefix}.bias"]}
    tried = ", ".join(NIMA_PYTORCH_RESNETS if candidates[0].layout == "nima.pytorch" else PYIQA_BACKBONES)
    raise refusal(path, state, f"a {candidates[0].layout} NIMA head on a backbone that is none of {tried}")
