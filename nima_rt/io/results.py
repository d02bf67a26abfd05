"""The result types every layer above decoding shares: one model's score and one input's row.

They live apart from the scorer so that writers, the report and the Ray engine can read and write
rows without depending on the scoring pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


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


def unique_columns(names: Sequence[str]) -> list[str]:
    """Output column names for models named ``names``: a repeated name gets ``_2``, ``_3``..."""
    seen: dict[str, int] = {}
    columns = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        columns.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return columns
