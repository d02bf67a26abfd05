"""Training configuration: one dataclass per part, named presets, JSON/TOML files, overrides.

Resolution order (later wins): preset -> ``--config FILE`` -> command-line options. The resolved
config is written to ``<run>/config.json`` and is all ``--resume`` needs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nima_rt.contract.spec import MODEL_KINDS, ContractError, check_model_name
from nima_rt.train.model.network import ModelConfig

OPTIMIZERS = ("adam", "adamw", "sgd")


class ConfigError(ValueError):
    """A configuration value or file is not usable; the message names it."""


@dataclass
class StageConfig:
    """One training stage.

    ``frozen``: ``backbone`` (stage 1: only the head trains; backbone batch-norm statistics are
    frozen too), ``none`` (all layers), or ``blocks:N`` (the stem and the first N backbone blocks).
    ``decay``: Keras-style inverse-time decay per optimizer step, ``lr / (1 + decay * step)``
    (what the seed's ``decay_all`` meant). ``cache_views``: with ``frozen = backbone``, compute the
    backbone features of K augmented views of every training image once and train the head on
    them, each epoch drawing one view per image from a generator seeded by (seed, epoch); 0 runs
    the backbone on freshly augmented images every epoch. Works on CPU too.
    ``rank_weight``: weight of the within-reference ranking term added to the EMD
    (:func:`.losses.within_group_margin_loss`, pairs of images of the same group with different
    labels, ``rank_margin`` in score units). ``per_group``: with cached features, build each batch
    from runs of this many images of one group (``train/data/sampling.py``; 0 = plain shuffling), so
    batches hold pairs for the ranking term. ``cross_weight``: weight of the same margin term over
    all pairs of a batch, across photos, whose labels differ by more than ``cross_gap`` points.
    ``rank_type_weights``: per distortion type (a build-dataset split file's ``distortion`` column), the
    weight of that type's pairs in the ranking term (``{underexposure = 20}``; types not named weigh 1).
    """

    epochs: int = 1
    lr: float = 1e-3
    decay: float = 0.0
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    frozen: str = "backbone"
    cache_views: int = 0
    rank_weight: float = 0.0
    rank_margin: float = 0.25
    per_group: int = 0
    cross_weight: float = 0.0
    cross_gap: float = 2.0
    rank_type_weights: dict[str, float] = field(default_factory=dict)

    def validate(self, name: str) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise ConfigError(f"{name}.epochs must be an integer >= 0, got {self.epochs!r}")
        if not self.lr > 0:
            raise ConfigError(f"{name}.lr must be > 0, got {self.lr!r}")
        if self.decay < 0 or self.weight_decay < 0:
            raise ConfigError(f"{name}.decay and {name}.weight_decay must be >= 0")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"{name}.optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        frozen_blocks(self.frozen, name)
        if not isinstance(self.cache_views, int) or self.cache_views < 0:
            raise ConfigError(f"{name}.cache_views must be an integer >= 0")
        if self.cache_views and self.frozen != "backbone":
            raise ConfigError(f"{name}.cache_views needs frozen = 'backbone' (trained backbone features change)")
        if not self.rank_weight >= 0 or not self.rank_margin >= 0 or not self.cross_weight >= 0:
            raise ConfigError(f"{name}.rank_weight, {name}.rank_margin and {name}.cross_weight must be >= 0")
        if not self.cross_gap >= 0:
            raise ConfigError(f"{name}.cross_gap must be >= 0")
        if not isinstance(self.rank_type_weights, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                for k, v in self.rank_type_weights.items()):
            raise ConfigError(f"{name}.rank_type_weights must map distortion type names to numbers >= 0, "
                              f"got {self.rank_type_weights!r}")
        if self.rank_type_weights and not self.rank_weight > 0:
            raise ConfigError(f"{name}.rank_type_weights needs rank_weight > 0 (they weigh the ranking term's pairs)")
        if not isinstance(self.per_group, int) or self.per_group < 0:
            raise ConfigError(f"{name}.per_group must be an integer >= 0")
        if self.per_group and not self.cache_views:
            raise ConfigError(f"{name}.per_group needs cache_views > 0 (grouped batches are drawn from the cache)")


def frozen_blocks(frozen: str, name: str = "stage") -> int | None:
    """``backbone`` -> -1 (everything), ``none`` -> None, ``blocks:N`` -> N."""
    if frozen == "backbone":
        return -1
    if frozen == "none":
        return None
    prefix, _, count = frozen.partition(":")
    if prefix == "blocks" and count.isdigit():
        return int(count)
    raise ConfigError(f"{name}.frozen {frozen!r} is not 'backbone', 'none' or 'blocks:N'")


@dataclass
class DataConfig:
    """Where labels and images are; how the validation set is made."""

    labels: str = ""
    images: str | None = None
    format: str | None = None
    scale: str | None = None  # score scale of mean-based labels: a name in labels.SCALES or LOW:HIGH
    val_labels: str | None = None
    val_images: str | None = None
    val_fraction: float = 0.1  # used when val_labels is not given; split by group
    workers: int = -1  # DataLoader worker processes; -1 = automatic


@dataclass
class TrainConfig:
    """Everything a run needs; stored resolved as ``config.json`` in the run folder."""

    name: str = "nima"
    kind: str = "custom"  # contract metadata kind: aesthetic | technical | custom
    trained_on: str = ""  # free text for the model metadata; defaults to the label file name
    # Weights that can be had offline: ImageNet EfficientNet-Lite0 from a pip package (train extra).
    model: ModelConfig = field(default_factory=lambda: ModelConfig(backbone="efficientnet_lite0"))
    pretrained: str = "imagenet"  # imagenet | none | a bundled model name (aesthetic) | a model or weights file
    batch_size: int = 32
    head: StageConfig = field(default_factory=lambda: StageConfig(epochs=5, lr=1e-3, frozen="backbone"))
    full: StageConfig = field(default_factory=lambda: StageConfig(epochs=9, lr=3e-5, decay=2.3e-5, frozen="none"))
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    channels_last: bool = True
    threads: int = 0  # CPU threads for torch; 0 keeps torch's default (one per core)
    out: str = "runs"
    # The model fine-tuned from (nima_rt.train.model.pretrained.Parent as a dict), set when a run starts: the
    # models it saves keep its preprocessing and licences and name it as their parent.
    parent: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ConfigError(f"kind {self.kind!r} is not one of {', '.join(MODEL_KINDS)}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        self.head.validate("head")
        self.full.validate("full")
        if self.head.epochs + self.full.epochs < 1:
            raise ConfigError("head.epochs + full.epochs must be at least 1")
        if not self.data.labels:
            raise ConfigError("no training labels: pass --labels (or data.labels in --config)")
        if self.data.val_labels is None and not 0.0 < self.data.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {self.data.val_fraction}")
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ConfigError(f"threads must be an integer >= 0, got {self.threads!r}")
        try:  # the run name is the model's name: its output columns and the run folder's name
            check_model_name(self.name, "run name")
        except ContractError as exc:
            raise ConfigError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        return _merge(cls(), data, source)


_NESTED = {"model": ModelConfig, "head": StageConfig, "full": StageConfig, "data": DataConfig}


def _merge(config: TrainConfig, data: dict[str, Any], source: str) -> TrainConfig:
    """``config`` with the values in ``data`` (a possibly partial nested dict) applied."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table/object of settings")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{source}: unknown setting {key!r} (known: {', '.join(sorted(known))})")
        if key in _NESTED:
            current = getattr(config, key)
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {key!r} must be a table/object")
            sub_known = {f.name for f in dataclasses.fields(_NESTED[key])}
            unknown = sorted(set(value) - sub_known)
            if unknown:
                raise ConfigError(f"{source}: unknown setting(s) {', '.join(f'{key}.{u}' for u in unknown)}")
            try:
                changes[key] = dataclasses.replace(current, **value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{source}: {key}: {exc}") from None
        else:
            changes[key] = value
    return dataclasses.replace(config, **changes)


def _aesthetic() -> TrainConfig:
    # The seed's second iteration: fine-tune idealo's AVA model (bundled, read back from aesthetic.onnx; its
    # network: Keras MobileNet v1, BatchNorm folded) with idealo's MobileNet aesthetic recipe: batch 96, dense
    # 5 epochs at 1e-3, all 9 epochs at 3e-5 with Keras decay 2.3e-5, dropout 0.75.
    return TrainConfig(
        name="aesthetic", kind="aesthetic", pretrained="aesthetic",
        model=ModelConfig(backbone="keras_mobilenet_v1_1.00_folded", dropout=0.75),
        batch_size=96,
        head=StageConfig(epochs=5, lr=1e-3, frozen="backbone"),
        full=StageConfig(epochs=9, lr=3e-5, decay=2.3e-5, frozen="none"),
    )


def _technical() -> TrainConfig:
    # idealo's MobileNet technical recipe (TID2013): batch 64, dense 25 epochs at 1e-3, all 25
    # epochs at 3e-7, dropout 0.75; on ImageNet EfficientNet-Lite0 (weights from a pip package: offline).
    return TrainConfig(
        name="technical", kind="technical", model=ModelConfig(backbone="efficientnet_lite0", dropout=0.75),
        batch_size=64,
        head=StageConfig(epochs=25, lr=1e-3, frozen="backbone"),
        full=StageConfig(epochs=25, lr=3e-7, frozen="none"),
    )


PRESETS = {"aesthetic": _aesthetic, "technical": _technical, "default": TrainConfig}


def preset(name: str) -> TrainConfig:
    """A fresh copy of a named preset."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: use one of {', '.join(PRESETS)}")
    return PRESETS[name]()


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Settings from a ``.json`` or ``.toml`` file (same nested keys as ``config.json``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            return tomllib.loads(text)
        return json.loads(text)
    except ValueError as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'JSON'} ({exc})") from None


def resolve_config(preset_name: str = "default", config_file: str | os.PathLike[str] | None = None,
                   overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Preset, then the file, then ``overrides`` (nested dict; None values are ignored). A model to fine-tune
    (``pretrained``: a bundled name, a checkpoint, a Keras or PyTorch NIMA file) brings its own backbone and
    input size unless the file or the command line names them."""
    config = preset(preset_name)
    named = bool(overrides and overrides.get("name"))
    explicit: dict[str, Any] = {}
    if config_file is not None:
        settings = read_config_file(config_file)
        named = named or bool(settings.get("name"))
        if isinstance(settings.get("model"), dict):
            explicit.update(settings["model"])
        config = _merge(config, settings, str(config_file))
    if overrides:
        cleaned = _drop_none(overrides)
        explicit.update(cleaned.get("model", {}))
        config = _merge(config, cleaned, "command line")
    _take_the_parents_network(config, explicit)
    if not named:
        config.name = default_run_name(config)
    try:
        config.model = ModelConfig(**dataclasses.asdict(config.model))  # re-run its validation
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    config.validate()
    return config


def _take_the_parents_network(config: TrainConfig, explicit: dict[str, Any]) -> None:
    """The backbone and input size of the model ``config.pretrained`` names, where not given explicitly."""
    from nima_rt.train.model.pretrained import describe_pretrained

    parent = describe_pretrained(config.pretrained)
    if parent is None:
        return
    changes = {key: value for key, value in (("backbone", parent.backbone), ("image_size", parent.input_size))
               if key not in explicit}
    config.model = dataclasses.replace(config.model, **changes)


def default_run_name(config: TrainConfig) -> str:
    """A run's name when none is given: the preset's and the label file's stem (``aesthetic-AVA``,
    ``nima-hotel_ratings``), so models trained on different data do not score under one column name."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(config.data.labels).stem).strip("_.")
    return f"{config.name}-{stem}" if stem else config.name


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            inner = _drop_none(value)
            if inner:
                out[key] = inner
        elif value is not None:
            out[key] = value
    return out
