"""What the score-file reader (:mod:`nima_rt.io.scores.reader`) gives back: rows and the layout of a file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nima_rt.contract.spec import NUM_BINS
from nima_rt.io.results import ModelScore, ScoreResult
from nima_rt.io.scores.writers import OutputError

RANK_COLUMNS = ("group", "rank", "best", "rank_score", "best_by")  # written by ranking, recomputed by it


@dataclass(frozen=True)
class ScoreRow(ScoreResult):
    """A row read back: the result, its path ``cell`` as written and the ``carried`` columns' text."""

    cell: str = ""
    carried: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Layout:
    """What a score file holds: model ``columns``, ``carried`` column names (a manifest's other columns),
    the ranking columns present (``ranked``) and, for CSV, the ``header`` as written."""

    columns: list[str]
    carried: list[str]
    ranked: list[str] = field(default_factory=list)
    header: list[str] | None = None


def parse_score(where: str, mean: Any, std: Any, dist: Sequence[Any]) -> ModelScore:
    """A model score from its written values, or OutputError naming ``where`` (``file:line``)."""
    try:
        values = tuple(float(p) for p in dist)
        score = ModelScore(float(mean), float(std), values)
    except (TypeError, ValueError):
        raise OutputError(f"{where}: a model score needs a number mean, std and 10 dist values") from None
    if len(values) != NUM_BINS:
        raise OutputError(f"{where}: dist has {len(values)} values, expected {NUM_BINS}")
    return score


__all__ = ["RANK_COLUMNS", "Layout", "ScoreRow", "parse_score"]
