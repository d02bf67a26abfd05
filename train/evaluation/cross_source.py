"""Cross-source evaluation: graded distortions of photos from a collection no model was made from.

The dataset is a ``build_dataset`` folder made with a cross-source manifest
(``nima-rt fetch-references CACHE --holdout python``): its ``test`` split is one whole
photo collection that played no part in training or validation. Every scorer (ONNX models through
the runtime, and the classical baselines NIQE and BRISQUE of ``train/evaluation/baselines.py``) scores the same
images; for each the result has

- per distortion type, the mean over photos of Spearman(level 0..5, score) and the share of
  (clean, level 2-4) pairs of the same photo in which the clean image scores higher
  (:func:`~.graded_eval.graded_report`);
- the mean Spearman over all types and over the main types (blur, JPEG, white noise, darkening);
- the share of score variance explained by photo identity (:func:`photo_variance_share`): how much
  the score depends on *which* photo it is rather than on its distortion (0 = not at all).

Baselines score with "higher is better" (their raw score negated) so all signs read the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from nima_rt.train.evaluation.graded_eval import (
    PRIMARY_TYPES,
    GradedReport,
    graded_report,
    read_rows,
    score_with_runtime,
)


class CrossSourceError(RuntimeError):
    """The dataset or a scorer cannot be evaluated."""


@dataclass(frozen=True)
class CrossSourceConfig:
    """What to evaluate: a dataset split, models (files or bundled names) and the baselines' cache."""

    dataset: Path
    models: tuple[str, ...] = ()
    baselines: Path | None = None  # folder for the NIQE/BRISQUE parameters (fetched there when missing)
    split: str = "test"
    view: str = "full"  # whole photos only (crops are a training device)
    pair_levels: tuple[int, ...] = (2, 3, 4)
    primary: tuple[str, ...] = PRIMARY_TYPES
    photos: tuple[str, ...] = ()  # only these reference photos (groups); empty: every photo of the split


@dataclass
class ScorerResult:
    """One scorer's figures on the cross-source split."""

    name: str
    report: GradedReport
    photo_variance: float  # share of score variance explained by photo identity (0..1)
    scores: list[float] = field(default_factory=list)

    def mean_spearman(self, types: Sequence[str] | None = None) -> float:
        names = list(types) if types is not None else sorted(self.report.types)
        values = [self.report.types[t].spearman_mean for t in names if t in self.report.types]
        return float(np.mean(values)) if values else float("nan")

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "photo_variance": self.photo_variance,
                "mean_spearman_all": self.mean_spearman(),
                "mean_spearman_primary": self.mean_spearman(self.report.primary), **self.report.to_dict()}


@dataclass
class CrossSourceResult:
    photos: list[str]
    images: int
    scorers: list[ScorerResult]

    def to_dict(self) -> dict[str, object]:
        return {"photos": self.photos, "images": self.images, "scorers": [s.to_dict() for s in self.scorers]}


def photo_variance_share(groups: Sequence[str], scores: Sequence[float]) -> float:
    """Between-photo sum of squares over the total (eta squared of a one-way layout by photo)."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size != len(groups):
        raise ValueError(f"{len(groups)} groups but {values.size} scores")
    total = float(((values - values.mean()) ** 2).sum())
    if values.size < 2 or total == 0.0:
        return float("nan")
    between = 0.0
    for group in set(groups):
        members = values[[g == group for g in groups]]
        between += members.size * (members.mean() - values.mean()) ** 2
    return float(between / total)


def evaluate_scores(name: str, rows: list[dict[str, str]], scores: Sequence[float],
                    config: CrossSourceConfig) -> ScorerResult:
    """The figures of one scorer's ``scores`` for ``rows`` (same order)."""
    values = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        bad = rows[int(np.flatnonzero(~np.isfinite(values))[0])]["path"]
        raise CrossSourceError(f"{name}: score of {bad} is not a finite number")
    report = graded_report(rows, values, config.primary, config.pair_levels)
    return ScorerResult(name, report, photo_variance_share([r["group"] for r in rows], values), values.tolist())


def _image_scorer(rows: list[dict[str, str]], dataset: Path, quality: Callable[[np.ndarray], float]) -> list[float]:
    out = []
    for row in rows:
        with Image.open(dataset / row["path"]) as image:
            out.append(float(quality(np.asarray(image.convert("RGB")))))
    return out


def evaluation_rows(config: CrossSourceConfig) -> list[dict[str, str]]:
    """The rows of the evaluated split and view."""
    path = Path(config.dataset) / f"{config.split}.csv"
    if not path.is_file():
        raise CrossSourceError(f"{path}: no such split file (a build-dataset folder made with a cross-source "
                               "manifest has test.csv)")
    rows = [r for r in read_rows(path) if r["view"] == config.view]
    if config.photos:
        unknown = sorted(set(config.photos) - {r["group"] for r in rows})
        if unknown:
            raise CrossSourceError(f"{path}: no photo {unknown[0]!r} in this split")
        rows = [r for r in rows if r["group"] in config.photos]
    if not rows:
        raise CrossSourceError(f"{path}: no rows of view {config.view!r}")
    return rows


def scorer_name(model: str, taken: Sequence[str]) -> str:
    """A column name for ``model``: a file's stem, a bundled model's name + `` (bundled)``; unique."""
    name = f"{model} (bundled)" if not model.endswith(".onnx") else Path(model).stem
    base, n = name, 1
    while name in taken:
        n += 1
        name = f"{base} #{n}"
    return name


def run_cross_source(config: CrossSourceConfig, progress: Callable[[str], None] | None = None) -> CrossSourceResult:
    """Score the split with every model and baseline of ``config``; see the module docstring."""
    rows = evaluation_rows(config)
    dataset = Path(config.dataset)
    scorers: list[ScorerResult] = []
    for model in config.models:
        if progress is not None:
            progress(model)
        scores = score_with_runtime(dataset, rows, model)
        scorers.append(evaluate_scores(scorer_name(model, [s.name for s in scorers]), rows, scores, config))
    if config.baselines is not None:
        from nima_rt.train.evaluation.baselines import BaselineError, fetch_baseline_parameters, load_baselines

        try:
            fetch_baseline_parameters(config.baselines)  # no download when the files are there
            baselines = load_baselines(config.baselines)
        except BaselineError as exc:
            raise CrossSourceError(str(exc)) from None
        for baseline in baselines:
            if progress is not None:
                progress(baseline.name)
            scorers.append(evaluate_scores(baseline.name, rows, _image_scorer(rows, dataset, baseline.quality),
                                           config))
    photos = sorted({r["group"] for r in rows})
    return CrossSourceResult(photos, len(rows), scorers)


def markdown_table(result: CrossSourceResult) -> str:
    """The side-by-side table of docs/reference/models.md: Spearman and pair accuracy per type and scorer."""
    names = [s.name for s in result.scorers]
    types = sorted({t for s in result.scorers for t in s.report.types},
                   key=lambda t: (t not in result.scorers[0].report.primary, t))
    lines = ["| distortion | " + " | ".join(f"{n} Spearman / pairs" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for name in types:
        cells = []
        for scorer in result.scorers:
            r = scorer.report.types.get(name)
            cells.append("–" if r is None else f"{r.spearman_mean:.3f} / {r.pair_accuracy:.2f}")
        label = f"**{name}**" if name in result.scorers[0].report.primary else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| mean over all types | " + " | ".join(f"{s.mean_spearman():.3f}" for s in result.scorers) + " |")
    lines.append("| main types: pairs clean > levels 2-4 | "
                 + " | ".join(f"{s.report.primary_pair_accuracy():.3f}" for s in result.scorers) + " |")
    lines.append("| photo identity, share of score variance | "
                 + " | ".join(f"{s.photo_variance:.2f}" for s in result.scorers) + " |")
    return "\n".join(lines)


def write_result(result: CrossSourceResult, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
