"""The nima-rt model contract: the one place every part (training, export, runtime) agrees on.

A nima-rt model is an ONNX graph (or a TensorRT engine built from one) that:

- takes one input ``images``: uint8, shape ``[N, S, S, 3]``, RGB, ``S`` = ``input_size`` from the
  metadata, ``N`` dynamic. Cast, scaling, normalisation and NHWC->NCHW happen inside the graph.
- returns ``dist`` float32 ``[N, 10]`` (probabilities of the scores 1..10), ``mean`` float32 ``[N]``
  and ``std`` float32 ``[N]`` (the mean and standard deviation of ``dist`` over 1..10).
- carries one ONNX ``metadata_props`` entry, key ``nima_rt``, whose value is :class:`ModelMetadata`
  as JSON. TensorRT engines carry the same JSON in a sidecar ``<engine>.json``.

Images reach the graph through :func:`resize_image`, which training, export verification and the
runtime all call. See docs/reference/model-contract.md.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from nima_rt.contract.choices import PRECISIONS

INPUT_NAME = "images"
OUTPUT_NAMES = ("dist", "mean", "std")
NUM_BINS = 10
SCORE_VALUES = np.arange(1, NUM_BINS + 1, dtype=np.float32)
METADATA_KEY = "nima_rt"
SCHEMA_VERSION = 1
DEFAULT_INPUT_SIZE = 224

MODEL_KINDS = ("aesthetic", "technical", "custom")
RESIZE_POLICIES = ("squash", "center_crop")
INTERPOLATIONS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}

# A model's name and the column its scores go under (metadata ``name``, ``NAME=FILE``): it becomes CSV
# headers, JSON keys and Parquet column names, so no spaces, line breaks, quotes or path separators.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MODEL_NAME_RULE = "1 to 64 characters of A-Z a-z 0-9 '_' '-' '.', starting with a letter or digit"

# What a contract model's outputs may be (check_output_values): a distribution over 1..10 and its moments.
DIST_SUM_TOLERANCE = 0.01  # |sum(dist) - 1|: softmax in fp16/INT8 stays within 1e-3
VALUE_TOLERANCE = 1e-3
MAX_STD = 4.5  # the largest standard deviation a distribution over 1..10 can have (half at 1, half at 10)

# ImageNet normalisation most backbones expect; the graph applies it, metadata records it.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ContractError(ValueError):
    """A model file or its metadata does not follow the nima-rt model contract."""


@dataclass(frozen=True)
class ResizeSpec:
    """How an image of any size becomes the model's ``input_size`` square.

    ``squash`` resizes to S x S ignoring the aspect ratio (what the seed's models saw at inference);
    ``center_crop`` resizes the shorter side to S and cuts the centre square.
    ``jpeg_draft`` lets the decoder use JPEG DCT-domain downscaling first (never below S).
    """

    policy: str = "squash"
    interpolation: str = "bilinear"
    jpeg_draft: bool = True

    def __post_init__(self) -> None:
        if self.policy not in RESIZE_POLICIES:
            raise ContractError(f"resize policy {self.policy!r} is not one of {', '.join(RESIZE_POLICIES)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ContractError(
                f"interpolation {self.interpolation!r} is not one of {', '.join(INTERPOLATIONS)}"
            )


@dataclass(frozen=True)
class Normalization:
    """Per-channel normalisation applied inside the graph: ``(x / 255 - mean) / std``."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass
class ModelMetadata:
    """What a model says about itself (the ``nima_rt`` JSON inside the model file)."""

    name: str
    kind: str = "custom"
    input_size: int = DEFAULT_INPUT_SIZE
    resize: ResizeSpec = field(default_factory=ResizeSpec)
    normalization: Normalization = field(default_factory=Normalization)
    backbone: str = ""
    trained_on: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    source_checkpoint_sha256: str = ""
    created: str = ""
    licenses: list[str] = field(default_factory=list)
    notes: str = ""
    # What the model is known not to see, in one line with where it was measured ("over-exposure (-0.38);
    # cross-source table in docs/reference/models.md"): `nima-rt models` and `nima-rt info` print it.
    blind_spots: str = ""
    # Reduced-precision checks export ran on this model: {"fp16": {"passed": bool, "max_abs_mean": float,
    # "tolerance": float, "images": int}}. The GPU precision policy reads it (default_gpu_precision).
    precision_checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The model this one was fine-tuned from: {"name", "sha256", "description"} ({} when trained from scratch or
    # ImageNet weights); written by `nima-rt train --pretrained MODEL`.
    parent: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        check_model_name(self.name, "model name")
        if self.kind not in MODEL_KINDS:
            raise ContractError(f"model kind {self.kind!r} is not one of {', '.join(MODEL_KINDS)}")
        if not isinstance(self.input_size, int) or not 16 <= self.input_size <= 4096:
            raise ContractError(f"input_size must be an integer in 16..4096, got {self.input_size!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "metadata") -> ModelMetadata:
        if not isinstance(data, dict):
            raise ContractError(f"{source}: {METADATA_KEY} metadata must be a JSON object")
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ContractError(
                f"{source}: metadata schema_version {version} is not supported "
                f"(this nima-rt reads version {SCHEMA_VERSION})"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "name" not in values:
            raise ContractError(f"{source}: {METADATA_KEY} metadata has no 'name'")
        try:
            if isinstance(values.get("resize"), dict):
                values["resize"] = ResizeSpec(**values["resize"])
            if isinstance(values.get("normalization"), dict):
                norm = values["normalization"]
                values["normalization"] = Normalization(tuple(norm["mean"]), tuple(norm["std"]))
            return cls(**values)
        except ContractError as exc:
            raise ContractError(f"{source}: {exc}") from None
        except (TypeError, KeyError) as exc:
            raise ContractError(f"{source}: malformed {METADATA_KEY} metadata ({exc})") from None

    @classmethod
    def from_json(cls, text: str, source: str = "metadata") -> ModelMetadata:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ContractError(f"{source}: {METADATA_KEY} metadata is not valid JSON ({exc})") from None
        return cls.from_dict(data, source)


def check_model_name(name: object, what: str) -> str:
    """``name`` when it follows :data:`MODEL_NAME`; else ContractError saying the rule (``what`` names it)."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        shown = " ".join(repr(name).split())[:80]
        raise ContractError(f"{what} {shown} must be {MODEL_NAME_RULE}")
    return name


ENGINE_SIDECAR_KEY = "engine"


@dataclass
class EngineInfo:
    """What a TensorRT engine was built for; stored beside the metadata in ``<engine>.json``.

    The runtime refuses an engine whose TensorRT version, GPU or compute capability differ from
    the machine's, with a message naming both.
    """

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # e.g. "9.0"
    precision: str  # fp32 | fp16 | int8
    min_batch: int
    opt_batch: int
    max_batch: int
    source_onnx_sha256: str
    created: str = ""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ContractError(f"engine precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ContractError(
                f"engine batch profile must satisfy 1 <= min <= opt <= max, got "
                f"{self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> EngineInfo:
        try:
            known = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ContractError(f"{source}: malformed '{ENGINE_SIDECAR_KEY}' section ({exc})") from None


@dataclass(frozen=True)
class Preprocess:
    """One model input geometry: square size and the resize that reaches it.

    The one resolver of a model's preprocessing (timm's ``resolve_data_config`` in spirit): the
    runtime, export verification, GPU decode and training all build it with :meth:`for_model`. Which
    decode of a file feeds it (the JPEG draft or the exact decode) is :mod:`nima_rt.io.decode_policy`'s
    rule, from this geometry alone.
    """

    size: int
    resize: ResizeSpec

    @classmethod
    def for_model(cls, metadata: ModelMetadata) -> Preprocess:
        """The geometry ``metadata`` asks for."""
        return cls(metadata.input_size, metadata.resize)

    def with_draft(self, allowed: bool) -> Preprocess:
        """This geometry with the JPEG draft allowed or not (benchmarks and tests compare the two; a run
        turns every draft off with ``DecodeOptions(jpeg_draft=False)``, ``--full-decode``)."""
        return Preprocess(self.size, dataclasses.replace(self.resize, jpeg_draft=allowed))


def engine_sidecar_json(metadata: ModelMetadata, engine: EngineInfo) -> str:
    """The text of ``<engine>.json``: the model's metadata and what the engine was built for."""
    return json.dumps({METADATA_KEY: metadata.to_dict(), ENGINE_SIDECAR_KEY: dataclasses.asdict(engine)},
                      indent=2, sort_keys=True)


def default_gpu_precision(metadata: ModelMetadata) -> str:
    """The precision GPU backends run ``metadata``'s model in when none is asked for.

    fp32, unless export recorded an fp16 check on this model that passed (the same 0.02 bar on the
    mean score that export applies before it writes an fp16 file). See docs/design/architecture.md.
    """
    check = metadata.precision_checks.get("fp16")
    return "fp16" if isinstance(check, dict) and check.get("passed") is True else "fp32"


def resize_image(image: Image.Image, size: int, spec: ResizeSpec) -> Image.Image:
    """Resize an RGB image to ``size`` x ``size`` following ``spec`` (the contract's only resize)."""
    resample = INTERPOLATIONS[spec.interpolation]
    width, height = image.size
    if spec.policy == "squash":
        if (width, height) == (size, size):
            return image
        return image.resize((size, size), resample)
    # center_crop: shorter side to `size`, then the centre square.
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    resized = image.resize((new_w, new_h), resample) if (new_w, new_h) != (width, height) else image
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return resized.crop((left, top, left + size, top + size))


def score_moments(dist: np.ndarray, dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over the scores 1..10 of distributions ``[..., 10]`` (the one copy:
    training labels, evaluation, metrics and graph checks all call it). Computed in float64, returned as
    ``dtype``."""
    dist = np.asarray(dist, dtype=np.float64)
    values = SCORE_VALUES.astype(np.float64)
    mean = dist @ values
    var = dist @ values**2 - mean**2
    return mean.astype(dtype), np.sqrt(np.maximum(var, 0.0)).astype(dtype)


def check_outputs(dist: np.ndarray, mean: np.ndarray, std: np.ndarray, batch: int, source: str) -> None:
    """Raise :class:`ContractError` unless the three outputs have the contract's shapes for ``batch``."""
    shapes = {"dist": (batch, NUM_BINS), "mean": (batch,), "std": (batch,)}
    for name, array in (("dist", dist), ("mean", mean), ("std", std)):
        if tuple(array.shape) != shapes[name]:
            raise ContractError(
                f"{source}: output {name!r} has shape {tuple(array.shape)}, expected {shapes[name]}"
            )


def check_output_values(dist: np.ndarray, mean: np.ndarray, std: np.ndarray) -> list[str | None]:
    """Per row of a batch of contract outputs, None when the row is a score, else why it is not: a NaN or
    infinity, a negative or above-one probability, probabilities that do not sum to 1, a mean outside
    1..10 or a std outside 0..4.5. Vectorised: a few comparisons per value."""
    dist = np.asarray(dist)
    mean = np.asarray(mean)
    std = np.asarray(std)
    finite = np.isfinite(dist).all(axis=1) & np.isfinite(mean) & np.isfinite(std)
    with np.errstate(invalid="ignore"):
        in_range = ((dist >= -VALUE_TOLERANCE) & (dist <= 1 + VALUE_TOLERANCE)).all(axis=1)
        sums = np.abs(dist.sum(axis=1, dtype=np.float64) - 1.0) <= DIST_SUM_TOLERANCE
        moments = ((mean >= 1 - VALUE_TOLERANCE) & (mean <= NUM_BINS + VALUE_TOLERANCE)
                   & (std >= -VALUE_TOLERANCE) & (std <= MAX_STD + VALUE_TOLERANCE))
    good = finite & in_range & sums & moments
    if good.all():
        return [None] * len(good)
    reasons: list[str | None] = []
    for row in range(len(good)):
        if good[row]:
            reasons.append(None)
        elif not finite[row]:
            reasons.append("output is not a number (NaN or infinity)")
        elif not in_range[row] or not sums[row]:
            reasons.append(f"output 'dist' is not a distribution (sum {float(dist[row].sum()):.4g}, "
                           f"min {float(dist[row].min()):.4g}, max {float(dist[row].max()):.4g})")
        else:
            reasons.append(f"output out of range (mean {float(mean[row]):.4g}, expected 1..10; "
                           f"std {float(std[row]):.4g}, expected 0..{MAX_STD})")
    return reasons
