"""Ranking rows: a rank rule over the models' mean scores, the best K, the best photo of each listing.

A **rank rule** (``--rank-by``) is a small expression, parsed here without ``eval``::

    RULE  := SUM [ "if" COND { "and" COND } ]
    SUM   := [ "-" ] TERM { ("+" | "-") TERM }
    TERM  := [ NUMBER "*" ] COLUMN
    COND  := COLUMN (">=" | ">" | "<=" | "<") [ "-" ] NUMBER

A ``COLUMN`` is a model column of the run (``aesthetic``, ``technical``, ``technical_2``...) and
stands for that model's mean score. Examples: ``aesthetic``; ``0.7*aesthetic+0.3*technical``;
``aesthetic if technical>=5``.

Order inside a ranking (a listing folder with ``group_by``, or all rows):

1. scored rows that meet every condition, by the rule's score, highest first;
2. scored rows that miss a condition, by the same score (a listing whose photos all miss the
   condition still gets a best photo, and its row says so);
3. rows that failed (or lack a column the rule reads): never best, no rank, in path order.

Ties (equal score and the same side of the conditions) go by path, ascending, so the order never
depends on which file finished first. The best row's ``best_by`` says which rule picked it.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from nima_rt.io.results import ScoreResult
from nima_rt.runtime.grouping import group_of

COMPARISONS = (">=", "<=", ">", "<")
_TOKEN = re.compile(r"\s*(?:(?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|"
                    r"(?P<op>>=|<=|[-+*<>])|(?P<name>[A-Za-z_][A-Za-z0-9_.]*))")
RULE_COLUMNS = ("rank_score", "best_by")  # extra output columns when a rule ranks rows
# The default job's rule (both bundled models, no --rank-by/--sort-by): a weighted sum in which the technical
# score weighs most. Chosen by measurement (benchmarks/listing_pick.py: graded listings, a clean photo and
# heavily damaged copies of it; chosen on the technical model's validation photos as the most aesthetic of the
# rules within one listing of the best pick rate, judged on photos no model here has seen; docs/guide/ranking.md
# has the tables, and what these listings cannot measure: how attractive the pick is).
DEFAULT_RANK_RULE = "0.2*aesthetic+0.8*technical"
DEFAULT_RULE_COLUMNS = ("aesthetic", "technical")


class RankRuleError(ValueError):
    """A rank rule that does not parse or names columns the run does not have; ``str()`` is one line."""


@dataclass(frozen=True)
class Term:
    """``weight * <column>'s mean``."""

    weight: float
    column: str


@dataclass(frozen=True)
class Condition:
    """``<column>'s mean <op> threshold``."""

    column: str
    op: str
    threshold: float

    def holds(self, value: float) -> bool:
        if self.op == ">=":
            return value >= self.threshold
        if self.op == ">":
            return value > self.threshold
        if self.op == "<=":
            return value <= self.threshold
        return value < self.threshold

    def text(self) -> str:
        return f"{self.column}{self.op}{self.threshold:g}"


@dataclass(frozen=True)
class RankRule:
    """A weighted sum of model means, optionally restricted to rows meeting conditions."""

    terms: tuple[Term, ...]
    conditions: tuple[Condition, ...] = ()

    @classmethod
    def column(cls, column: str) -> RankRule:
        """One model's mean (what ``--sort-by COLUMN`` means)."""
        return cls((Term(1.0, column),))

    @property
    def columns(self) -> list[str]:
        """Every column the rule reads, in the order it names them."""
        names = [t.column for t in self.terms] + [c.column for c in self.conditions]
        return list(dict.fromkeys(names))

    def text(self) -> str:
        """The rule in canonical form (``0.7*aesthetic+0.3*technical if technical>=5``)."""
        parts = []
        for index, term in enumerate(self.terms):
            sign = "-" if term.weight < 0 else ("+" if index else "")
            magnitude = abs(term.weight)
            parts.append(f"{sign}{'' if magnitude == 1 else f'{magnitude:g}*'}{term.column}")
        text = "".join(parts)
        if self.conditions:
            text += " if " + " and ".join(c.text() for c in self.conditions)
        return text

    def check(self, columns: Sequence[str]) -> None:
        """Raise :class:`RankRuleError` naming every column the rule reads that the run lacks."""
        unknown = [c for c in self.columns if c not in columns]
        if unknown:
            raise RankRuleError(
                f"rank rule {self.text()!r}: unknown model column{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(unknown)} (the models give {', '.join(columns) or 'no columns'})"
            )

    def score(self, result: ScoreResult) -> float | None:
        """The rule's score of a row; None when the row failed or lacks a column (or gives nan)."""
        if not result.ok:
            return None
        total = 0.0
        for term in self.terms:
            score = result.scores.get(term.column)
            if score is None or math.isnan(score.mean):
                return None
            total += term.weight * score.mean
        return total

    def passes(self, result: ScoreResult) -> bool:
        """Whether a scored row meets every condition."""
        for condition in self.conditions:
            score = result.scores.get(condition.column)
            if score is None or math.isnan(score.mean) or not condition.holds(score.mean):
                return False
        return True


def parse_rank_rule(text: str) -> RankRule:
    """Parse ``--rank-by`` text (grammar in the module docstring); :class:`RankRuleError` on bad input."""
    return _Parser(text).rule()


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while text[position:].strip():
        match = _TOKEN.match(text, position)
        if match is None:
            raise RankRuleError(f"rank rule {text!r}: unexpected {text[position:].strip()[:12]!r}")
        kind = match.lastgroup or "name"
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over the tokens of one rule."""

    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.index = text, _tokens(text), 0

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.index] if self.index < len(self.tokens) else ("end", "")

    def _take(self) -> str:
        value = self._peek()[1]
        self.index += 1
        return value

    def _fail(self, expected: str) -> RankRuleError:
        value = self._peek()[1]
        return RankRuleError(f"rank rule {self.text!r}: expected {expected}, got {repr(value) if value else 'the end'}")

    def _is_column(self) -> bool:
        kind, value = self._peek()
        return kind == "name" and value not in ("if", "and")

    def _sign(self) -> float:
        if self._peek()[1] in ("+", "-"):
            return -1.0 if self._take() == "-" else 1.0
        return 1.0

    def rule(self) -> RankRule:
        if not self.tokens:
            raise RankRuleError("rank rule is empty; give a model column, e.g. 'aesthetic'")
        terms = [self._term(self._sign())]
        while self._peek()[1] in ("+", "-"):
            terms.append(self._term(self._sign()))
        conditions = []
        if self._peek() == ("name", "if"):
            self._take()
            conditions.append(self._condition())
            while self._peek() == ("name", "and"):
                self._take()
                conditions.append(self._condition())
        if self._peek()[0] != "end":
            raise self._fail("'+', '-' or 'if'" if not conditions else "'and' or the end")
        return RankRule(tuple(terms), tuple(conditions))

    def _term(self, sign: float) -> Term:
        weight = 1.0
        if self._peek()[0] == "number":
            weight = float(self._take())
            if self._peek()[1] != "*":
                raise self._fail("'*' and a model column after a weight (e.g. 0.7*aesthetic)")
            self._take()
        if not self._is_column():
            raise self._fail("a model column")
        return Term(sign * weight, self._take())

    def _condition(self) -> Condition:
        if not self._is_column():
            raise self._fail("a condition such as technical>=5")
        column = self._take()
        if self._peek()[1] not in COMPARISONS:
            raise self._fail(">=, >, <= or < after " + repr(column))
        op = self._take()
        sign = self._sign()
        if self._peek()[0] != "number":
            raise self._fail(f"a number after {column}{op}")
        return Condition(column, op, sign * float(self._take()))


@dataclass(frozen=True)
class RankedRow:
    """A row with its group (listing folder), rank inside it (1 = best), whether it is the best,
    the rule's score and, on the best row, which rule picked it."""

    result: ScoreResult
    group: str | None = None
    rank: int | None = None
    best: bool = False
    rank_score: float | None = None
    best_by: str | None = None

    def extra(self) -> dict[str, object]:
        return {"group": self.group, "rank": self.rank, "best": self.best,
                "rank_score": None if self.rank_score is None else round(self.rank_score, 6),
                "best_by": self.best_by}


def as_rule(rule: RankRule | str) -> RankRule:
    """A rule as given, or a column name as the rule 'that column's mean'."""
    return rule if isinstance(rule, RankRule) else RankRule.column(rule)


@dataclass(frozen=True)
class _Keyed:
    """A scored row with its sort key: meets the conditions first, then higher score, then path."""

    key: tuple[bool, float, str]
    result: ScoreResult


def _keyed(results: Iterable[ScoreResult], rule: RankRule, unscored: list[ScoreResult] | None) -> Iterator[_Keyed]:
    for result in results:
        score = rule.score(result)
        if score is None:
            if unscored is not None:
                unscored.append(result)
            continue
        yield _Keyed((not rule.passes(result), -score, result.path), result)


def _best_by(rule: RankRule, winner: _Keyed) -> str:
    text = rule.text()
    if rule.conditions and winner.key[0]:
        conditions = " and ".join(c.text() for c in rule.conditions)
        return f"{RankRule(rule.terms).text()} (no photo meets {conditions})"
    return text


def _rows(ordered: list[_Keyed], unscored: list[ScoreResult], rule: RankRule, group: str | None,
          top: int | None) -> Iterator[RankedRow]:
    best_by = _best_by(rule, ordered[0]) if ordered else None
    for rank, item in enumerate(ordered[:top] if top is not None else ordered, 1):
        yield RankedRow(item.result, group, rank, rank == 1, -item.key[1], best_by if rank == 1 else None)
    for result in sorted(unscored, key=lambda r: r.path):
        yield RankedRow(result, group, None, False, None, None)


def rank_rows(results: Iterable[ScoreResult], rule: RankRule | str, top: int | None = None) -> Iterator[RankedRow]:
    """All rows as one ranking (best first, failed rows last). ``top`` keeps only the best K scored rows,
    holding K rows in memory, and drops failed ones."""
    rule = as_rule(rule)
    if top is not None:
        ordered = heapq.nsmallest(top, _keyed(results, rule, None), key=lambda item: item.key)
        yield from _rows(ordered, [], rule, None, None)
        return
    unscored: list[ScoreResult] = []
    ordered = sorted(_keyed(results, rule, unscored), key=lambda item: item.key)
    yield from _rows(ordered, unscored, rule, None, None)


def uses_default_rule(rank_by: str | None, sort_by: str | None, columns: Sequence[str]) -> bool:
    """Whether a run ranks by :data:`DEFAULT_RANK_RULE`: no rule or column asked for, and both its columns."""
    return rank_by is None and sort_by is None and set(DEFAULT_RULE_COLUMNS) <= set(columns)


def resolve_rank_rule(rank_by: str | None, sort_by: str | None, columns: Sequence[str]) -> RankRule:
    """The rule a run ranks by: the rule text ``rank_by``, else ``sort_by``'s mean, else
    :data:`DEFAULT_RANK_RULE` when the run has both its columns (the default job), else the first model's
    mean; RankRuleError (naming the option) when they clash or name a column the models do not have."""
    if rank_by is not None and sort_by is not None:
        raise RankRuleError("--rank-by and --sort-by cannot be combined (--rank-by COLUMN does what --sort-by "
                            "COLUMN does)")
    if uses_default_rule(rank_by, sort_by, columns):
        return parse_rank_rule(DEFAULT_RANK_RULE)
    if rank_by is None:
        chosen = sort_by or columns[0]
        if chosen not in columns:
            raise RankRuleError(f"--sort-by {chosen}: no such model column (have {', '.join(columns)})")
        return RankRule.column(chosen)
    try:
        rule = parse_rank_rule(rank_by)
        rule.check(columns)
    except RankRuleError as exc:
        raise RankRuleError(f"--rank-by: {exc}") from None
    return rule


def sort_rows(results: Iterable[ScoreResult], rule: RankRule | str, top: int | None = None) -> list[ScoreResult]:
    """Rows best first (failed rows last); ``top`` keeps only the best K scored rows in O(K) memory."""
    return [row.result for row in rank_rows(results, rule, top)]


def rank_groups(results: Iterable[ScoreResult], rule: RankRule | str, top: int | None = None,
                key: Callable[[ScoreResult], str] = lambda result: group_of(result.path),
                ends: Mapping[str, int] | None = None) -> Iterator[RankedRow]:
    """Rows grouped into listings by ``key`` (default: the parent folder; :mod:`nima_rt.runtime.grouping`),
    groups in first-seen order, best first inside each; the best scored photo of each group is marked;
    ``top`` keeps the best K per group.

    Without ``ends`` every row is held until the input ends. With ``ends`` (each group's last row index in
    ``results``, from a first pass over a file) a group is ranked and given out as soon as it and every
    group seen before it are complete: rows that arrive grouped hold one listing at a time."""
    rule = as_rule(rule)
    groups: dict[str, list[ScoreResult]] = {}  # first-seen order
    complete: set[str] = set()
    for index, result in enumerate(results):
        group = key(result)
        groups.setdefault(group, []).append(result)
        if ends is not None and ends.get(group) == index:
            complete.add(group)
            while groups and next(iter(groups)) in complete:
                first = next(iter(groups))
                complete.discard(first)
                yield from _ranked_group(first, groups.pop(first), rule, top)
    for group, members in groups.items():
        yield from _ranked_group(group, members, rule, top)


def _ranked_group(group: str, members: list[ScoreResult], rule: RankRule, top: int | None) -> Iterator[RankedRow]:
    unscored: list[ScoreResult] = []
    ordered = sorted(_keyed(members, rule, unscored), key=lambda item: item.key)
    yield from _rows(ordered, unscored, rule, group, top)
