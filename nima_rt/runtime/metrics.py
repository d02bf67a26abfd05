"""The one copy of every score metric nima-rt reports (numpy only, so the runtime needs no scipy).

Policy for undefined correlations, the same everywhere (training logs, ``nima-rt evaluate``, export
verification, the labelling app's agreement, graded evaluations, benchmarks): Spearman and Pearson
are ``nan`` when there are fewer than two values or when either side is constant (a constant side has
no ranking, so no correlation exists). Callers that show a value print ``n/a`` for ``nan``; none of
them substitutes 0. Ties get average ranks (scipy's ``rankdata(method="average")``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nima_rt.contract.spec import NUM_BINS, score_moments

ACCURACY_THRESHOLD = 5.0  # the paper's two-class AVA accuracy: mean score < 5 vs >= 5

ArrayLike = np.ndarray | Sequence[float]


def rank_average(values: ArrayLike) -> np.ndarray:
    """1-based ranks with ties given their average rank (as scipy's ``rankdata``)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]
    average = (starts + ends - 1) / 2.0 + 1.0  # mean of the 1-based positions start..end-1
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def _paired(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"correlation needs equal lengths, got {a.size} and {b.size}")
    return a, b


def pearson(a: ArrayLike, b: ArrayLike) -> float:
    """Pearson's linear correlation (LCC); ``nan`` for fewer than 2 values or a constant side."""
    a, b = _paired(a, b)
    if a.size < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((a @ a) * (b @ b)))
    if denominator == 0.0:
        return float("nan")
    return float(np.clip((a @ b) / denominator, -1.0, 1.0))


def spearman(a: ArrayLike, b: ArrayLike) -> float:
    """Spearman's rank correlation (SRCC), average ranks for ties; ``nan`` when undefined (see module)."""
    a, b = _paired(a, b)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return pearson(rank_average(a), rank_average(b))


def emd(pred: ArrayLike, true: ArrayLike, r: int = 2) -> np.ndarray:
    """Per-row Earth Mover's Distance between ``[N, 10]`` distributions (the training loss, r = 2)."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"emd needs arrays of equal shape, got {pred.shape} and {true.shape}")
    diff = np.cumsum(pred, axis=-1) - np.cumsum(true, axis=-1)
    return np.mean(np.abs(diff) ** r, axis=-1) ** (1.0 / r)


def two_class_accuracy(pred_mean: ArrayLike, true_mean: ArrayLike, threshold: float = ACCURACY_THRESHOLD) -> float:
    """Share of images put on the same side of ``threshold`` by prediction and label."""
    pred_mean, true_mean = _paired(pred_mean, true_mean)
    if pred_mean.size == 0:
        return float("nan")
    return float(np.mean((pred_mean >= threshold) == (true_mean >= threshold)))


def check_distribution_pair(true_dist: np.ndarray, pred_dist: np.ndarray) -> None:
    """ValueError unless both are ``[N, 10]`` arrays of the same N."""
    true_shape, pred_shape = np.shape(true_dist), np.shape(pred_dist)
    if true_shape != pred_shape or len(true_shape) != 2 or true_shape[1] != NUM_BINS:
        raise ValueError(f"expected two [N, 10] arrays, got {true_shape} and {pred_shape}")


def compute_metrics(true_dist: np.ndarray, pred_dist: np.ndarray) -> dict[str, float]:
    """The evaluation metrics (docs/guide/training.md) for ``[N, 10]`` arrays (NaN correlations when undefined)."""
    true_dist = np.asarray(true_dist, dtype=np.float64)
    pred_dist = np.asarray(pred_dist, dtype=np.float64)
    check_distribution_pair(true_dist, pred_dist)
    if true_dist.shape[0] == 0:
        raise ValueError("no images to compute metrics on")
    true_mean, _ = score_moments(true_dist)
    pred_mean, _ = score_moments(pred_dist)
    return {
        "count": int(true_dist.shape[0]),
        "emd": float(emd(pred_dist, true_dist).mean()),
        "lcc": pearson(pred_mean, true_mean),
        "srcc": spearman(pred_mean, true_mean),
        "accuracy": two_class_accuracy(pred_mean, true_mean),
        "pred_mean_mean": float(pred_mean.mean()),
        "pred_mean_std": float(pred_mean.std()),
        "true_mean_mean": float(true_mean.mean()),
        "true_mean_std": float(true_mean.std()),
    }
