"""How well a technical-quality model ranks graded distortions of held-out photos.

Input: the rows of a dataset written by ``build_dataset`` (``test.csv``) and one predicted mean
score per row. Output (:class:`GradedReport`):

- per distortion type, the Spearman correlation between level (0 = clean, 1..5) and predicted
  score, computed per (reference, view) and averaged (a good model is close to -1);
- the share of (clean, distorted) pairs of the same photo and view in which the clean image
  scores higher, for chosen levels (by default 2-4);
- score summaries per condition.

:func:`score_with_runtime` scores a split with the runtime (``nima_rt.Scorer``: the same decode and
resize as ``nima-rt score``); ``nima-rt graded-eval DATASET_DIR --model MODEL.onnx`` runs both for
models and baselines (``train/evaluation/cross_source.py``).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from nima_rt.runtime.metrics import spearman

# The types the shipped model is accepted on (docs/reference/models.md): blur, JPEG, noise, darkening.
PRIMARY_TYPES = ("gaussian_blur", "jpeg", "white_noise", "underexposure")


@dataclass
class TypeResult:
    """One distortion type: Spearman(level, score) per photo, averaged, and its worst (highest) value."""

    spearman_mean: float
    spearman_worst: float  # the photo ranked worst: the highest (least negative) Spearman
    groups: int
    pairs: int
    pairs_correct: int
    unranked: int = 0  # photos whose scores were constant over the levels (Spearman undefined)

    @property
    def pair_accuracy(self) -> float:
        return self.pairs_correct / self.pairs if self.pairs else float("nan")


@dataclass
class GradedReport:
    types: dict[str, TypeResult]
    primary: tuple[str, ...]
    pair_levels: tuple[int, ...]
    condition_scores: dict[str, dict[str, float]] = field(default_factory=dict)

    def primary_pair_accuracy(self) -> float:
        pairs = sum(self.types[t].pairs for t in self.primary if t in self.types)
        correct = sum(self.types[t].pairs_correct for t in self.primary if t in self.types)
        return correct / pairs if pairs else float("nan")

    def to_dict(self) -> dict[str, object]:
        return {
            "primary_types": list(self.primary),
            "pair_levels": list(self.pair_levels),
            "primary_pair_accuracy": self.primary_pair_accuracy(),
            "types": {name: {**asdict(r), "pair_accuracy": r.pair_accuracy} for name, r in self.types.items()},
            "condition_scores": self.condition_scores,
        }


def read_rows(csv_path: str | Path) -> list[dict[str, str]]:
    """The rows of a ``build_dataset`` split file."""
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    needed = {"path", "group", "view", "distortion", "level"}
    if rows and not needed <= set(rows[0]):
        raise ValueError(f"{csv_path}: expected columns {', '.join(sorted(needed))} (a build-dataset split file)")
    return rows


def graded_report(rows: list[dict[str, str]], scores: np.ndarray, primary: tuple[str, ...] = PRIMARY_TYPES,
                  pair_levels: tuple[int, ...] = (2, 3, 4)) -> GradedReport:
    """The report for ``rows`` and their predicted mean ``scores`` (same order)."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(rows) != scores.shape[0]:
        raise ValueError(f"{len(rows)} rows but {scores.shape[0]} scores")
    clean: dict[tuple[str, str], float] = {}
    graded: dict[str, dict[tuple[str, str], dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    by_condition: dict[str, list[float]] = defaultdict(list)
    for row, score in zip(rows, scores, strict=True):
        key = (row["group"], row["view"])
        level = int(row["level"])
        by_condition[f"{row['distortion']}_{level}"].append(float(score))
        if row["distortion"] == "clean":
            clean[key] = float(score)
        else:
            graded[row["distortion"]][key][level] = float(score)
    types: dict[str, TypeResult] = {}
    for name, per_group in graded.items():
        rhos, pairs, correct = [], 0, 0
        for key, levels in per_group.items():
            if key not in clean:
                continue
            xs = np.array([0] + sorted(levels))
            ys = np.array([clean[key]] + [levels[lv] for lv in sorted(levels)])
            rhos.append(spearman(xs, ys))
            for lv in pair_levels:
                if lv in levels:
                    pairs += 1
                    correct += int(clean[key] > levels[lv])
        ranked = [r for r in rhos if r == r]
        if ranked:
            # A photo whose scores do not move at all has no ranking (nan, the nima_rt.runtime.metrics policy):
            # it is left out of the mean and counted in ``unranked``.
            types[name] = TypeResult(float(np.mean(ranked)), float(np.max(ranked)), len(rhos), pairs, correct,
                                     len(rhos) - len(ranked))
    summary = {
        condition: {"mean": float(np.mean(v)), "std": float(np.std(v)), "min": float(np.min(v)),
                    "max": float(np.max(v)), "n": len(v)}
        for condition, v in sorted(by_condition.items())
    }
    return GradedReport(types, primary, pair_levels, summary)


def score_with_runtime(dataset_dir: Path, rows: list[dict[str, str]], model: str) -> np.ndarray:
    """Predicted means of ``rows`` with the nima-rt runtime (same decode/resize as ``nima-rt score``)."""
    from nima_rt.io.inputs import iter_inputs
    from nima_rt.runtime.scorer import Scorer, ScorerConfig

    paths = [dataset_dir / row["path"] for row in rows]
    with Scorer([model], ScorerConfig(batch_size=32)) as scorer:
        column = scorer.columns[0]
        means = {}
        for result in scorer.score_items(iter_inputs(paths)):
            if not result.ok:
                raise RuntimeError(f"could not score {result.path}: {result.error}")
            means[result.path] = result.scores[column].mean
    return np.array([means[str(p)] for p in paths])
