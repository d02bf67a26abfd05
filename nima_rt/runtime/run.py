"""A whole scoring run as one library call: inputs -> Scorer -> (ranking) -> a score file, resumable.

    from nima_rt import Scorer, RunOptions, score_run
    with Scorer() as scorer:
        summary = score_run(scorer, ["photos/"], RunOptions(output="scores.csv", resume=True))

``nima-rt score`` is this call plus option parsing and exit codes; the Python API gets the same resume,
``strict``, ranking and writers. The run walks the inputs once, scores them in order, and writes each row as
it finishes (ranked runs hold the rows until the ranking is known). What a run is asked to do is checked
once, when :class:`RunOptions` is made (:class:`SettingError` names the option).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nima_rt.io.inputs import InputItem, WalkReport, iter_inputs, normalize_extensions
from nima_rt.io.results import ScoreBatch, ScoreResult
from nima_rt.io.writers import OutputError, RowWriter, check_resumable, done_paths, format_for, open_writer
from nima_rt.runtime.ranking import (
    RULE_COLUMNS,
    RankRule,
    RankRuleError,
    rank_groups,
    rank_rows,
    resolve_rank_rule,
    sort_rows,
)
from nima_rt.runtime.scorer import Scorer

GROUP_BY = ("parent",)
GROUP_COLUMNS = ("group", "rank", "best")


class SettingError(ValueError):
    """A run setting that cannot be used (alone or with another); ``option`` is the CLI option it came from."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class RunOptions:
    """What a run writes and how it ranks. ``output`` None or ``"-"`` is standard output."""

    output: str | None = None
    format: str | None = None  # csv | jsonl | parquet (None: from the output's extension, else csv)
    resume: bool = False  # append to ``output`` and skip the paths already in it
    strict: bool = False  # stop at the first file that fails (RunSummary.stopped_at says which)
    sort: bool = False  # best first by the rank rule (holds rows in memory)
    sort_by: str | None = None  # the model column to rank by (default: the first model)
    rank_by: str | None = None  # a rank rule (nima_rt.runtime.ranking), e.g. 'aesthetic if technical>=5'
    top: int | None = None  # keep the K best (per group when grouping)
    group_by: str | None = None  # 'parent': rank within each folder and mark the best
    extensions: tuple[str, ...] | None = None  # walk folders for these extensions only (default: every image)
    escape_formulas: bool = True  # CSV: prefix cells starting with = + - @ with ' (spreadsheets)
    resolved_format: str = field(init=False)
    walked_extensions: frozenset[str] | None = field(init=False)

    def __post_init__(self) -> None:
        if self.resume and (self.output is None or self.output == "-"):
            raise SettingError("--resume", "--resume needs --output FILE")
        if self.resume and self.ranks:
            raise SettingError("--resume", "--resume cannot be combined with --sort, --rank-by, --top or --group-by")
        if self.group_by is not None and self.group_by not in GROUP_BY:
            raise SettingError("--group-by", f"only {', '.join(repr(g) for g in GROUP_BY)} is supported")
        if self.top is not None and self.top < 1:
            raise SettingError("--top", f"--top must be >= 1, got {self.top}")
        try:
            object.__setattr__(self, "resolved_format", format_for(self.output, self.format))
        except OutputError as exc:
            raise SettingError("--format", str(exc)) from None
        if self.resolved_format == "parquet" and (self.output is None or self.output == "-"):
            raise SettingError("--format", "--format parquet needs --output FILE")
        try:
            walked = normalize_extensions(self.extensions) if self.extensions is not None else None
        except ValueError as exc:
            raise SettingError("--ext", str(exc)) from None
        object.__setattr__(self, "walked_extensions", walked)

    @property
    def ranks(self) -> bool:
        """Whether rows are ranked (and so held until the ranking is known)."""
        return self.sort or self.top is not None or self.group_by is not None or self.rank_by is not None

    def rank_rule(self, columns: list[str]) -> RankRule:
        """The rule rows are ranked by (:func:`nima_rt.runtime.ranking.resolve_rank_rule`)."""
        try:
            return resolve_rank_rule(self.rank_by, self.sort_by, columns)
        except RankRuleError as exc:
            raise SettingError("--rank-by" if self.rank_by is not None else "--sort-by", str(exc)) from None

    def extra_columns(self) -> tuple[str, ...]:
        """Columns after the scores: group/rank/best when grouping; the rule's score (and, per listing, the
        rule that picked the best photo) with ``rank_by``."""
        if self.group_by is not None:
            return GROUP_COLUMNS + (RULE_COLUMNS if self.rank_by is not None else ())
        return ("rank", RULE_COLUMNS[0]) if self.rank_by is not None else ()


@dataclass
class RunSummary:
    """What a run did. ``stopped_at`` is the first failure's error when ``strict`` stopped the run."""

    scored: int = 0
    failed: int = 0
    resumed: int = 0  # rows an earlier run had already written (``resume``)
    elapsed: float = 0.0
    stopped_at: str | None = None
    walk: WalkReport = field(default_factory=WalkReport)

    @property
    def done(self) -> int:
        return self.scored + self.failed

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0


def score_run(
    scorer: Scorer,
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    options: RunOptions = RunOptions(),
    on_result: Callable[[ScoreResult], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
) -> RunSummary:
    """Score ``paths`` (files and folders, walked once, in order) with ``scorer`` and write the rows.

    ``on_result`` sees every result as it is scored (progress); ``on_resume`` gets the number of rows an
    earlier run wrote before scoring starts. Raises :class:`SettingError` for a rank column or rule the models
    cannot serve, :class:`OutputError` (one line) when the output cannot be read back or written (what was
    flushed stays resumable), and lets ``BrokenPipeError`` through when standard output was closed.
    """
    started = time.perf_counter()
    summary = RunSummary()
    rule = options.rank_rule(scorer.columns) if options.ranks else None
    extra = options.extra_columns()
    items: Iterable[InputItem] = iter_inputs(paths, options.walked_extensions, summary.walk)
    writer, items, summary.resumed = _open_output(scorer.columns, items, options, extra)
    if on_resume is not None:
        on_resume(summary.resumed)
    batches = scorer.score_item_batches(items)
    output = options.output or "stdout"
    try:
        if rule is None:
            summary.stopped_at = _write_batches(writer, batches, options.strict, output, summary, on_result)
        else:
            rows = (row for batch in batches for row in _counted(batch, summary, on_result).rows())
            _write_ranked(writer, _ranked(rows, options, rule, extra), output)
    finally:
        summary.elapsed = time.perf_counter() - started
    if options.strict and summary.stopped_at is None and summary.failed:
        summary.stopped_at = f"{summary.failed} file(s) failed"
    return summary


def _counted(batch: ScoreBatch, summary: RunSummary, on_result: Callable[[ScoreResult], None] | None) -> ScoreBatch:
    failed = batch.failed
    summary.scored += len(batch) - failed
    summary.failed += failed
    if on_result is not None:
        for row in batch.rows():
            on_result(row)
    return batch


def _ranked(results: Iterable[ScoreResult], options: RunOptions, rule: RankRule,
            extra: tuple[str, ...]) -> Iterator[tuple[ScoreResult, dict[str, Any] | None]]:
    if options.group_by is None and options.rank_by is None:  # --sort / --top: rows only, best first
        yield from ((result, None) for result in sort_rows(results, rule, options.top))
        return
    ranked = rank_groups(results, rule, options.top) if options.group_by else rank_rows(results, rule, options.top)
    for row in ranked:
        yield row.result, {k: v for k, v in row.extra().items() if k in extra}


def _open_output(columns: list[str], items: Iterable[InputItem], options: RunOptions,
                 extra: tuple[str, ...]) -> tuple[RowWriter, Iterable[InputItem], int]:
    """The row writer (appending when resuming), the inputs still to score and the rows already written."""
    output, fmt = options.output, options.resolved_format
    if options.resume and output is not None:
        check_resumable(fmt, output)  # the same answer whether or not the file exists yet
    if options.resume and output is not None and Path(output).exists():
        done = done_paths(Path(output), fmt, columns, extra)
        return (open_writer(fmt, output, columns, extra, True, options.escape_formulas),
                (item for item in items if item.path not in done), len(done))
    return open_writer(fmt, output, columns, extra, False, options.escape_formulas), items, 0


def _write_batches(writer: RowWriter, batches: Iterable[ScoreBatch], strict: bool, output: str,
                   summary: RunSummary, on_result: Callable[[ScoreResult], None] | None) -> str | None:
    """Write (and count) every batch as it is scored, then close the writer; with ``strict`` stop after the
    first failed row and return its error."""
    with _closing(writer, output):
        for batch in batches:
            failure = batch.first_failure() if strict else None
            if failure is not None:
                batch = batch.take(range(failure + 1))
            writer.write_batch(_counted(batch, summary, on_result))
            if failure is not None:
                return batch.errors[failure]
    return None


def _write_ranked(writer: RowWriter, rows: Iterable[tuple[ScoreResult, dict[str, Any] | None]], output: str) -> None:
    """Write ranked rows one at a time, then close the writer."""
    with _closing(writer, output):
        for result, extra in rows:
            writer.write(result, extra)


@contextmanager
def _closing(writer: RowWriter, output: str) -> Iterator[None]:
    """Close the writer after the block. A full disk or lost mount is an OutputError (what was flushed stays,
    resumable); a closed stdout's BrokenPipeError goes through."""
    try:
        yield
        writer.close()
    except BrokenPipeError:
        raise
    except OSError as exc:
        _close_quietly(writer)
        raise OutputError(f"{output}: cannot write output ({exc.strerror or exc})") from None


def _close_quietly(writer: RowWriter) -> None:
    try:
        writer.close()
    except OSError:
        pass  # the error being reported is the first one


__all__ = ["GROUP_BY", "GROUP_COLUMNS", "RunOptions", "RunSummary", "SettingError", "score_run"]
