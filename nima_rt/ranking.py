"""Ranking rows: sort by a model's mean, keep the top K, rank within listing folders."""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .results import ScoreResult


@dataclass(frozen=True)
class RankedRow:
    """A row with its group (listing folder), rank inside it (1 = best) and whether it is the best."""

    result: ScoreResult
    group: str | None = None
    rank: int | None = None
    best: bool = False

    def extra(self) -> dict[str, object]:
        return {"group": self.group, "rank": self.rank, "best": self.best}


def _key(result: ScoreResult, column: str) -> float:
    score = result.scores.get(column)
    return score.mean if score is not None else float("-inf")


def sort_rows(results: Iterable[ScoreResult], column: str, top: int | None = None) -> list[ScoreResult]:
    """Scored rows best first (failed rows last, in input order); ``top`` keeps only the best K
    scored rows using memory proportional to K."""
    if top is not None:
        heap: list[tuple[float, int, ScoreResult]] = []
        for index, result in enumerate(results):
            if not result.ok:
                continue
            item = (_key(result, column), -index, result)
            if len(heap) < top:
                heapq.heappush(heap, item)
            elif item[:2] > heap[0][:2]:
                heapq.heapreplace(heap, item)
        return [entry[2] for entry in sorted(heap, key=lambda e: (e[0], e[1]), reverse=True)]
    rows = list(results)
    ok = sorted((r for r in rows if r.ok), key=lambda r: _key(r, column), reverse=True)
    return ok + [r for r in rows if not r.ok]


def group_of(path: str) -> str:
    """The listing a photo belongs to: its parent folder."""
    return os.path.dirname(path) or "."


def rank_groups(results: Iterable[ScoreResult], column: str, top: int | None = None) -> Iterator[RankedRow]:
    """Rows grouped by parent folder (groups in first-seen order), best first inside each group;
    the best scored photo of each group is marked; ``top`` keeps the best K per group."""
    groups: dict[str, list[ScoreResult]] = {}
    for result in results:
        groups.setdefault(group_of(result.path), []).append(result)
    for group, members in groups.items():
        ordered = sort_rows(members, column)
        scored = [r for r in ordered if r.ok]
        failed = [r for r in ordered if not r.ok]
        if top is not None:
            scored = scored[:top]
        for rank, result in enumerate(scored, 1):
            yield RankedRow(result, group, rank, rank == 1)
        for result in failed:
            yield RankedRow(result, group, None, False)
