"""Evaluation plots (the seed's figures 9 and 11, plus correlation and the two-class view).

``write_evaluation_plots`` writes four PNGs: histograms of true vs predicted mean scores and of
standard deviations, a scatter of predicted vs true means with LCC/SRCC in its title, and the
confusion matrix at the 5.0 threshold. matplotlib is imported here, drawing with the Agg canvas
directly (no pyplot, no global backend switch), so it works headless and in threads.
Each PNG carries its title in the ``Title`` text chunk and its numbers as JSON in ``Description``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from nima_rt.contract.spec import score_moments
from nima_rt.runtime.metrics import ACCURACY_THRESHOLD, check_distribution_pair

PLOT_FILES = ("mean_hist.png", "std_hist.png", "mean_scatter.png", "confusion.png")
TRUE_COLOR, PRED_COLOR = "#4c72b0", "#dd8452"


def confusion_at_threshold(true_mean: np.ndarray, pred_mean: np.ndarray,
                           threshold: float = ACCURACY_THRESHOLD) -> np.ndarray:
    """Counts [[true low & pred low, true low & pred high], [true high & pred low, true high & pred high]];
    "high" means a mean score >= ``threshold`` (the rule of ``accuracy`` in :mod:`nima_rt.runtime.metrics`)."""
    true_high = np.asarray(true_mean) >= threshold
    pred_high = np.asarray(pred_mean) >= threshold
    return np.array(
        [[np.sum(~true_high & ~pred_high), np.sum(~true_high & pred_high)],
         [np.sum(true_high & ~pred_high), np.sum(true_high & pred_high)]],
        dtype=np.int64,
    )


def _figure(width: float = 6.4, height: float = 4.8) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path, title: str, numbers: dict[str, Any]) -> Path:
    figure.savefig(path, format="png", metadata={"Title": title, "Description": json.dumps(numbers, sort_keys=True)})
    return path


def _histograms(axes: Any, true: np.ndarray, pred: np.ndarray, bins: np.ndarray, what: str) -> None:
    axes.hist(true, bins=bins, color=TRUE_COLOR, alpha=0.55, label=f"true (mean {true.mean():.2f})")
    axes.hist(pred, bins=bins, color=PRED_COLOR, alpha=0.55, label=f"predicted (mean {pred.mean():.2f})")
    axes.set_xlabel(what)
    axes.set_ylabel("images")
    axes.legend(frameon=False)


def write_evaluation_plots(true_dist: np.ndarray, pred_dist: np.ndarray, out_dir: str | os.PathLike[str],
                           title: str, metrics: dict[str, float]) -> list[Path]:
    """Write the four plots for ``[N, 10]`` true and predicted distributions into ``out_dir``, titled with
    their ``metrics`` (:func:`nima_rt.runtime.metrics.compute_metrics` of the same arrays); return their
    paths (in :data:`PLOT_FILES` order). ValueError for arrays of the wrong shape."""
    check_distribution_pair(true_dist, pred_dist)
    true_mean, true_std = score_moments(true_dist)
    pred_mean, pred_std = score_moments(pred_dist)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    count = int(metrics["count"])
    written = []

    figure = _figure()
    axes = figure.add_subplot()
    _histograms(axes, true_mean, pred_mean, np.linspace(1, 10, 37), "mean score")
    heading = f"{title}: mean scores (n={count})"
    axes.set_title(heading)
    written.append(_save(figure, out / PLOT_FILES[0], heading,
                         {"true_mean": float(true_mean.mean()), "pred_mean": float(pred_mean.mean())}))

    figure = _figure()
    axes = figure.add_subplot()
    top = max(3.0, float(np.ceil(max(true_std.max(), pred_std.max()) * 4) / 4))
    _histograms(axes, true_std, pred_std, np.linspace(0, top, int(top * 8) + 1), "standard deviation of scores")
    heading = f"{title}: standard deviations (n={count})"
    axes.set_title(heading)
    written.append(_save(figure, out / PLOT_FILES[1], heading,
                         {"true_std": float(true_std.mean()), "pred_std": float(pred_std.mean())}))

    figure = _figure(5.6, 5.6)
    axes = figure.add_subplot()
    low = float(min(true_mean.min(), pred_mean.min(), 4.0)) - 0.25
    high = float(max(true_mean.max(), pred_mean.max(), 6.0)) + 0.25
    axes.scatter(true_mean, pred_mean, s=6 if count > 2000 else 14, alpha=0.35 if count > 2000 else 0.7,
                 color=PRED_COLOR, edgecolors="none", rasterized=True)
    axes.plot([low, high], [low, high], color="black", linewidth=1, label="predicted = true")
    axes.axvline(ACCURACY_THRESHOLD, color="grey", linestyle=":", linewidth=1)
    axes.axhline(ACCURACY_THRESHOLD, color="grey", linestyle=":", linewidth=1)
    axes.set_xlim(low, high)
    axes.set_ylim(low, high)
    axes.set_aspect("equal")
    axes.set_xlabel("true mean score")
    axes.set_ylabel("predicted mean score")
    axes.legend(frameon=False, loc="upper left")
    heading = f"{title}\nLCC {metrics['lcc']:.3f}  SRCC {metrics['srcc']:.3f}  (n={count})"
    axes.set_title(heading)
    written.append(_save(figure, out / PLOT_FILES[2], heading,
                         {"lcc": metrics["lcc"], "srcc": metrics["srcc"], "count": count}))

    matrix = confusion_at_threshold(true_mean, pred_mean)
    figure = _figure(4.8, 4.4)
    axes = figure.add_subplot()
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            axes.text(j, i, f"{matrix[i, j]}\n{shares[i, j]:.1%} of row", ha="center", va="center",
                      color="white" if shares[i, j] > 0.6 else "black")
    labels = [f"< {ACCURACY_THRESHOLD:g}", f">= {ACCURACY_THRESHOLD:g}"]
    axes.set_xticks([0, 1], labels)
    axes.set_yticks([0, 1], labels)
    axes.set_xlabel("predicted mean score")
    axes.set_ylabel("true mean score")
    heading = f"{title}\naccuracy at {ACCURACY_THRESHOLD:g}: {metrics['accuracy']:.3f} (n={count})"
    axes.set_title(heading)
    written.append(_save(figure, out / PLOT_FILES[3], heading,
                         {"confusion": matrix.tolist(), "accuracy": metrics["accuracy"]}))
    return written
