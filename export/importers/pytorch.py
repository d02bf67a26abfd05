"""Import a PyTorch NIMA state dict (nima.pytorch's or pyiqa's layout) as a contract module.

The network is rebuilt with its publisher's own module structure, so the state dict loads with
``strict=True`` and nothing is renamed by guesswork:

- **nima.pytorch** (truskovskiyk, MIT): ``NIMA(base_model=nn.Sequential(*list(resnetN.children())[:-1]))``
  with ``head = Sequential(ReLU, Dropout, Linear(features, 10), Softmax)``; saved as
  ``{"model_type": "resnet18", "state_dict": ...}`` or a bare state dict (``base_model.0.weight``,
  ``head.2.weight``). Backbones: torchvision ResNet-18/34/50/101/152. Preprocessing: torchvision
  ``Resize((224, 224))`` (PIL bilinear, aspect ratio ignored) and ImageNet normalisation.
- **pyiqa** (chaofengc/IQA-PyTorch): ``base_model = timm.create_model(name, features_only=True)``,
  the last feature map average-pooled, ``classifier = Sequential(Flatten, Dropout, Linear, Softmax)``;
  saved as ``{"params": ...}`` (``base_model.*``, ``classifier.2.weight``). Backbones tried:
  :data:`PYIQA_BACKBONES`. pyiqa scores full-resolution images; the contract needs one input size,
  so the import squashes to 224 (299 for Inception-ResNet-v2), bilinear.

Backbones are built with random initial weights (no download) and then loaded from the file.
Anything else is refused with one line naming the keys found and the layouts supported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nima_rt.contract.spec import IMAGENET_MEAN, IMAGENET_STD, NUM_BINS, ModelMetadata, Normalization, ResizeSpec
from nima_rt.export.importers.base import ImportedModel, ImportFailed, ImportRequest

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
SUPPORTED = ("nima.pytorch (base_model.* + head.2.*, torchvision ResNet-18..152) and pyiqa NIMA "
             f"(base_model.* + classifier.2.*, timm {', '.join(PYIQA_BACKBONES)}) state dicts")
# nima.pytorch's first release wrapped its own MobileNetV2 (features[1] = InvertedResidual with a .conv Sequential).
OWN_MOBILENET_V2_KEY = "base_model.0.1.conv.0.weight"
LICENCES = {"nima.pytorch": "truskovskiyk/nima.pytorch: MIT",
            "pyiqa": "chaofengc/IQA-PyTorch: CC BY-NC-SA 4.0, non-commercial use only"}
# The resize both publishers' inference uses: PIL bilinear to S x S (torchvision Resize on PIL images).
BILINEAR_SQUASH = ResizeSpec(policy="squash", interpolation="bilinear", jpeg_draft=False)


def load_torch_file(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``; None when the file is not a readable torch file."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch raises many types for unreadable files
        return None


def _state_dict(data: Any) -> tuple[dict[str, Any], str | None]:
    """The tensors (``params``/``state_dict``/``model`` entry or the dict itself) and a ``model_type``."""
    import torch

    model_type = data.get("model_type") if isinstance(data.get("model_type"), str) else None
    for key in ("params", "state_dict", "model", "network"):
        if isinstance(data.get(key), Mapping):
            data = data[key]
            break
    tensors = {k.removeprefix("module."): v for k, v in data.items() if isinstance(v, torch.Tensor)}
    return tensors, model_type


def _without_counters(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _fits(module, state: Mapping[str, Any]) -> bool:
    return _without_counters(module.state_dict()) == _without_counters(state)


def _nima_pytorch(name: str):
    """nima.pytorch's NIMA module on a torchvision ResNet (random weights)."""
    import torchvision
    from torch import nn

    resnet = getattr(torchvision.models, name)(weights=None)
    features = resnet.fc.in_features

    class NimaPytorch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base_model = nn.Sequential(*list(resnet.children())[:-1])
            self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.75), nn.Linear(features, NUM_BINS), nn.Softmax(dim=1))

        def forward(self, x):
            return self.head(self.base_model(x).flatten(1))

    return NimaPytorch()


def _pyiqa(name: str):
    """pyiqa's NIMA module on a timm backbone (random weights, ``features_only``)."""
    import timm
    from torch import nn

    class NimaPyiqa(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base_model = timm.create_model(name, pretrained=False, features_only=True)
            channels = self.base_model.feature_info.channels()[-1]
            self.global_pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.0), nn.Linear(channels, NUM_BINS),
                                            nn.Softmax(dim=-1))

        def forward(self, x):
            return self.classifier(self.global_pool(self.base_model(x)[-1]))

    return NimaPyiqa()


def _candidates(state: Mapping[str, Any], model_type: str | None) -> list[tuple[str, str, Callable[[], Any]]]:
    """(layout, backbone, builder) worth trying for these keys, most likely first."""
    if "head.2.weight" in state:
        names = [model_type] if model_type in NIMA_PYTORCH_RESNETS else list(NIMA_PYTORCH_RESNETS)
        return [("nima.pytorch", n, lambda n=n: _nima_pytorch(n)) for n in names]
    if "classifier.2.weight" in state:
        names = [n for n, key in PYIQA_SIGNATURES.items() if key in state] or list(PYIQA_BACKBONES)
        return [("pyiqa", n, lambda n=n: _pyiqa(n)) for n in names]
    return []


def _refusal(path: Path, state: Mapping[str, Any], reason: str) -> ImportFailed:
    keys = list(state)
    shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
    return ImportFailed(f"{path}: {reason} ({len(keys)} tensors: {shown}); nima-rt imports {SUPPORTED}")


def import_torch(request: ImportRequest, data: Any) -> ImportedModel:
    """The state dict's network (``data``: what :func:`load_torch_file` read from ``request.path``) as a
    ContractModule; refuses layouts it cannot rebuild exactly."""
    from nima_rt.train.model.contract_module import ContractModule

    path = request.path
    if not isinstance(data, Mapping):
        raise ImportFailed(f"{path}: not a PyTorch state dict nima-rt can import; it imports {SUPPORTED}")
    state, model_type = _state_dict(data)
    head = state.get("head.2.weight", state.get("classifier.2.weight"))
    if head is not None and tuple(head.shape)[0] != NUM_BINS:
        raise _refusal(path, state, f"the head has {tuple(head.shape)[0]} outputs, NIMA's has {NUM_BINS}")
    if OWN_MOBILENET_V2_KEY in state:
        raise _refusal(path, state, "nima.pytorch's own MobileNetV2 (its pretrain-model.pth: ReLU stem and an "
                                    "expansion convolution in the first block, which neither torchvision's nor timm's "
                                    "MobileNetV2 has)")
    candidates = _candidates(state, model_type)
    if not candidates:
        raise _refusal(path, state, "not a nima-rt checkpoint and no NIMA head (head.2.* or classifier.2.*)")
    fit = next(((layout, backbone, network) for layout, backbone, network in
                ((c[0], c[1], c[2]()) for c in candidates) if _fits(network, state)), None)
    if fit is None:
        tried = ", ".join(NIMA_PYTORCH_RESNETS if candidates[0][0] == "nima.pytorch" else PYIQA_BACKBONES)
        raise _refusal(path, state, f"a {candidates[0][0]} NIMA head on a backbone that is none of {tried}")
    layout, backbone, network = fit
    network.load_state_dict(state, strict=False)  # counters (num_batches_tracked) may be absent
    size = PYIQA_INPUT_SIZE.get(backbone, 224) if layout == "pyiqa" else 224
    normalization = Normalization(IMAGENET_MEAN, IMAGENET_STD)
    metadata = ModelMetadata(
        name=request.name,
        kind=request.kind,
        input_size=size,
        resize=BILINEAR_SQUASH,
        normalization=normalization,
        backbone=f"{layout}:{backbone}",
        trained_on="imported PyTorch NIMA weights (see notes)",
        source_checkpoint_sha256=request.sha256,
        created=request.created,
        licenses=[f"weights imported from {path.name}: the licence of their publisher applies ({LICENCES[layout]})"],
        notes=f"imported from a {layout} state dict {path.name} ({backbone}); preprocessing: "
              f"PIL bilinear squash to {size} x {size}, ImageNet normalisation",
    )
    notes = [] if layout == "nima.pytorch" else [
        f"pyiqa scores full-resolution images; this model sees a {size} x {size} squash (the contract's fixed size)"]
    return ImportedModel(ContractModule(network.eval(), normalization).eval(), metadata, notes)
