"""The result types every layer above decoding shares: scores of a batch as columns, and one input's row.

:class:`ScoreBatch` is the form scores travel in, from the Scorer through the writers and the Ray engine:
paths, errors and, per model, ``mean``/``std``/``dist`` arrays (NaN on failed rows), never repacked.
:class:`ScoreResult` is one row of it, for code that looks at inputs one at a time (ranking, the report,
the Python API's iterators).

They live apart from the scorer so that writers, the report and the Ray engine can read and write
rows without depending on the scoring pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from nima_rt.contract.spec import NUM_BINS


@dataclass(frozen=True)
class ModelScore:
    """One model's verdict on one image: mean and std over 1..10 and the 10-bin distribution."""

    mean: float
    std: float
    dist: tuple[float, ...]


@dataclass(frozen=True)
class ScoreResult:
    """One input's row: ``error`` is a one-line reason when it could not be scored."""

    path: str
    error: str | None = None
    scores: dict[str, ModelScore] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ScoreColumns:
    """One model's scores for a batch: ``mean``/``std`` float32 [n], ``dist`` float32 [n, 10]; NaN where the
    row has no score (a failed input)."""

    mean: np.ndarray
    std: np.ndarray
    dist: np.ndarray

    @classmethod
    def empty(cls, count: int) -> ScoreColumns:
        return cls(np.full(count, np.nan, np.float32), np.full(count, np.nan, np.float32),
                   np.full((count, NUM_BINS), np.nan, np.float32))

    def take(self, rows: np.ndarray) -> ScoreColumns:
        return ScoreColumns(self.mean[rows], self.std[rows], self.dist[rows])


@dataclass(frozen=True)
class ScoreBatch:
    """Scores of several inputs as columns. ``errors[i]`` is None for a scored row; ``scores`` maps each
    model column to its :class:`ScoreColumns` (every column covers every row)."""

    paths: list[str]
    errors: list[str | None]
    scores: dict[str, ScoreColumns]

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def ok(self) -> np.ndarray:
        """Bool [n]: which rows were scored."""
        return np.fromiter((error is None for error in self.errors), dtype=bool, count=len(self.errors))

    @property
    def failed(self) -> int:
        return sum(error is not None for error in self.errors)

    def first_failure(self) -> int | None:
        """The index of the first failed row, or None."""
        return next((row for row, error in enumerate(self.errors) if error is not None), None)

    def row(self, index: int) -> ScoreResult:
        error = self.errors[index]
        if error is not None:
            return ScoreResult(self.paths[index], error)
        return ScoreResult(self.paths[index], None, {
            column: ModelScore(float(s.mean[index]), float(s.std[index]), tuple(s.dist[index].tolist()))
            for column, s in self.scores.items()
        })

    def rows(self) -> Iterator[ScoreResult]:
        """The rows one at a time, in order."""
        return (self.row(index) for index in range(len(self.paths)))

    def take(self, rows: Sequence[int] | np.ndarray) -> ScoreBatch:
        """The rows ``rows`` (indices, in that order) as a batch."""
        picked = np.asarray(rows, dtype=np.int64)
        return ScoreBatch([self.paths[i] for i in picked], [self.errors[i] for i in picked],
                          {column: s.take(picked) for column, s in self.scores.items()})

    @classmethod
    def concat(cls, batches: Sequence[ScoreBatch], columns: Sequence[str]) -> ScoreBatch:
        """One batch of ``batches`` in order (an empty batch with ``columns`` when there are none)."""
        if not batches:
            return cls([], [], {column: ScoreColumns.empty(0) for column in columns})
        return cls([p for b in batches for p in b.paths], [e for b in batches for e in b.errors], {
            column: ScoreColumns(np.concatenate([b.scores[column].mean for b in batches]),
                                 np.concatenate([b.scores[column].std for b in batches]),
                                 np.concatenate([b.scores[column].dist for b in batches]))
            for column in columns
        })
