"""A whole scoring run as one library call: inputs -> Scorer -> a score file, resumable, then ranked.

    from nima_rt import Scorer, RunOptions, score_run
    with Scorer() as scorer:
        summary = score_run(scorer, ["photos/"], RunOptions(output="scores.csv", resume=True, group_by="parent"))

``nima-rt score`` is this call plus option parsing and exit codes; the Python API gets the same resume,
``strict``, ranking and writers. The run walks the inputs once (folders, files, manifests), scores them in
order and writes each batch of rows as it finishes. A ranked run (``group_by``, ``rank_by``, ``sort``,
``top``) writes its rows the same way and, when every input is scored, ranks them all with
:func:`nima_rt.runtime.rank_output.rank_output` (the output in place; with ``top`` from
``<name>.all.<ext>``, which keeps every row; to stdout from a temporary file), so a run that was
interrupted and resumed ranks exactly as one that was not. What a run is asked to do is checked
once, when :class:`RunOptions` is made (:class:`SettingError` names the option).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from nima_rt.contract.choices import SettingError
from nima_rt.io.inputs import InputItem, Paths, WalkReport, carried_columns, iter_inputs, normalize_extensions
from nima_rt.io.manifests import ManifestError, check_model_names
from nima_rt.io.results import ScoreBatch, ScoreResult
from nima_rt.io.scores.open_output import OpenedOutput, open_output
from nima_rt.io.scores.output_file import OutputExists, exists_message, giving_up
from nima_rt.io.scores.writers import RowWriter
from nima_rt.runtime.rank_output import GROUP_COLUMNS, RankOptions, RankSummary, rank_output
from nima_rt.runtime.ranking import RankRule
from nima_rt.runtime.scorer import Scorer

SPOOL_FORMAT = "jsonl"  # a ranked run to stdout keeps its rows here until it ranks them (lossless text)


@dataclass(frozen=True)
class RunOptions:
    """What a run writes and how it ranks. ``output`` None or ``"-"`` is standard output."""

    output: str | None = None
    format: str | None = None  # csv | jsonl | parquet (None: from the output's extension, else csv)
    resume: bool = False  # append to ``output`` and skip the paths already in it
    overwrite: bool = False  # replace an ``output`` that holds data (refused otherwise, unless ``resume``)
    strict: bool = False  # stop at the first file that fails (RunSummary.stopped_at says which)
    sort: bool = False  # best first by the rank rule
    sort_by: str | None = None  # the model column to rank by (default: the default rule, else the first model)
    rank_by: str | None = None  # a rank rule (nima_rt.runtime.ranking), e.g. 'aesthetic if technical>=5'
    top: int | None = None  # keep the K best (per group when grouping)
    group_by: str | None = None  # parent | dir:N | a manifest column | none (nima_rt.runtime.grouping)
    extensions: tuple[str, ...] | None = None  # walk folders for these extensions only (default: every image)
    escape_formulas: bool = True  # CSV: prefix cells starting with = + - @ with ' (spreadsheets)
    resolved_format: str = field(init=False)
    walked_extensions: frozenset[str] | None = field(init=False)
    ranking: RankOptions = field(init=False)  # the rank step's options (output, format and ranking above)

    def __post_init__(self) -> None:
        if self.resume and (self.output is None or self.output == "-"):
            raise SettingError("--resume", "--resume needs --output FILE")
        if self.resume and self.overwrite:
            raise SettingError("--overwrite", "--overwrite replaces the output, --resume continues it: choose one")
        ranking = RankOptions(output=self.output, format=self.format, sort=self.sort, sort_by=self.sort_by,
                              rank_by=self.rank_by, top=self.top, group_by=self.group_by,
                              escape_formulas=self.escape_formulas, overwrite=True)  # the run checks its output
        object.__setattr__(self, "ranking", ranking)
        object.__setattr__(self, "resolved_format", ranking.resolved_format)
        try:
            walked = normalize_extensions(self.extensions) if self.extensions is not None else None
        except ValueError as exc:
            raise SettingError("--ext", str(exc)) from None
        object.__setattr__(self, "walked_extensions", walked)

    @property
    def ranks(self) -> bool:
        """Whether the output is ranked when every input is scored."""
        return self.ranking.ranks

    def rank_rule(self, columns: list[str]) -> RankRule:
        """The rule rows are ranked by (:func:`nima_rt.runtime.ranking.resolve_rank_rule`)."""
        return self.ranking.rule(columns)


@dataclass
class RunSummary:
    """What a run did. ``stopped_at`` is the first failure's error when ``strict`` stopped the run."""

    scored: int = 0
    failed: int = 0
    resumed: int = 0  # rows an earlier run had already written (``resume``)
    elapsed: float = 0.0
    stopped_at: str | None = None
    walk: WalkReport = field(default_factory=WalkReport)
    ranked: RankSummary | None = None  # the rank step, when the run ranked its output

    @property
    def done(self) -> int:
        return self.scored + self.failed

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0


def score_run(
    scorer: Scorer,
    paths: Paths,
    options: RunOptions = RunOptions(),
    on_result: Callable[[ScoreResult], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
) -> RunSummary:
    """Score ``paths`` (files, folders and manifests, walked once, in order) with ``scorer`` and write the rows.

    ``on_result`` sees every result as it is scored (progress); ``on_resume`` gets the number of rows an
    earlier run wrote before scoring starts. Raises :class:`SettingError` for a rank column, rule or grouping
    the models or manifests cannot serve, or a manifest that cannot be used; :class:`OutputError` (one line)
    when the output cannot be read back or written (what was flushed stays resumable) -- its subclass
    :class:`~nima_rt.io.scores.output_file.OutputConflict` when another run writes the output or it holds data
    neither resumed nor overwritten (:mod:`nima_rt.io.scores.open_output`); lets ``BrokenPipeError`` through when
    standard output was closed. A ``strict`` run that stops leaves its
    rows unranked (resumable).
    """
    started = time.perf_counter()
    summary = RunSummary()
    try:
        carried = carried_columns(paths)
        check_model_names(carried, scorer.columns)
    except ManifestError as exc:
        raise SettingError("PATH", str(exc)) from None
    if options.ranks:
        options.ranking.check(scorer.columns, carried, "the manifests given" if carried else "the inputs")
    items: Iterable[InputItem] = iter_inputs(paths, options.walked_extensions, summary.walk)
    with _store(options) as (store, fmt):
        opened, items, summary.resumed = _open_output(scorer.columns, carried, items, options, store, fmt)
        try:  # the output stays this run's until it is written and, for a ranked run, ranked
            with giving_up(opened.writer.abort, store or "stdout"):
                if on_resume is not None:
                    on_resume(summary.resumed)
            values: deque[dict[str, str] | None] = deque()
            batches = scorer.score_item_batches(_tracked(items, values))
            summary.stopped_at = _write_batches(opened.writer, batches, values, carried, options.strict,
                                                store or "stdout", summary, on_result)
            if options.ranks and summary.stopped_at is None and store is not None:
                summary.ranked = rank_output([store], options.ranking)
        finally:
            opened.release()
            summary.elapsed = time.perf_counter() - started
    if options.strict and summary.stopped_at is None and summary.failed:
        summary.stopped_at = f"{summary.failed} file(s) failed"
    return summary


@contextmanager
def _store(options: RunOptions) -> Iterator[tuple[str | None, str]]:
    """Where the rows go as they are scored, and its format: the output itself (None: stdout); with ``top``,
    which drops rows from the output, :func:`all_rows_path` beside it; for a ranked run to stdout a temporary
    JSONL file, removed afterwards."""
    output = options.output if options.output != "-" else None
    if not options.ranks or (output is not None and options.top is None):
        yield output, options.resolved_format
        return
    if output is not None:
        yield all_rows_path(output), options.resolved_format
        return
    handle, spool = tempfile.mkstemp(prefix="nima-rt-ranking-", suffix=f".{SPOOL_FORMAT}")
    os.close(handle)
    try:
        yield spool, SPOOL_FORMAT
    finally:
        Path(spool).unlink(missing_ok=True)


def all_rows_path(output: str) -> str:
    """Where a ``top`` run keeps every row (``picks.csv`` -> ``picks.all.csv``): ``--resume`` continues it
    instead of scoring the photos the top K left out again, and ``nima-rt rank`` can rank it otherwise."""
    path = Path(output)
    return str(path.with_name(f"{path.stem}.all{path.suffix}")) if path.suffix else f"{output}.all"


def _tracked(items: Iterable[InputItem], values: deque[dict[str, str] | None]) -> Iterator[InputItem]:
    """The items, each one's carried values queued as the scorer takes it (rows come out in the same order)."""
    for item in items:
        values.append(item.carried)
        yield item


def _counted(batch: ScoreBatch, summary: RunSummary, on_result: Callable[[ScoreResult], None] | None) -> ScoreBatch:
    failed = batch.failed
    summary.scored += len(batch) - failed
    summary.failed += failed
    if on_result is not None:
        for row in batch.rows():
            on_result(row)
    return batch


def _open_output(columns: list[str], carried: list[str], items: Iterable[InputItem], options: RunOptions,
                 store: str | None, fmt: str) -> tuple[OpenedOutput, Iterable[InputItem], int]:
    """The claimed store and its row writer (appending when resuming), the inputs still to score and the rows
    already written (:func:`nima_rt.io.scores.open_output.open_output`: lock, overwrite policy, torn tail). A ``top``
    run's ranked output, apart from its store, is not replaced unasked either."""
    output = options.output if options.output != "-" else None
    if output is not None and store != output and not (options.resume or options.overwrite):
        size = Path(output).stat().st_size if Path(output).is_file() else 0
        if size:
            raise OutputExists(exists_message(output, f"holds {size} bytes of rows"))
    opened = open_output(fmt, store, columns, carried, ranked=options.ranks, resume=options.resume,
                         overwrite=options.overwrite, escape_formulas=options.escape_formulas)
    done = opened.done
    if not len(done):
        return opened, items, 0
    return opened, (item for item in items if item.path not in done), len(done)


def _write_batches(writer: RowWriter, batches: Iterable[ScoreBatch], values: deque[dict[str, str] | None],
                   carried: list[str], strict: bool, output: str, summary: RunSummary,
                   on_result: Callable[[ScoreResult], None] | None) -> str | None:
    """Write (and count) every batch as it is scored, with its carried columns, then close the writer; with
    ``strict`` stop after the first failed row and return its error."""
    with _closing(writer, output):
        for batch in batches:
            rows = [values.popleft() for _ in range(len(batch))]
            failure = batch.first_failure() if strict else None
            if failure is not None:
                batch, rows = batch.take(range(failure + 1)), rows[: failure + 1]
            columns = {name: [(row or {}).get(name, "") for row in rows] for name in carried} if carried else None
            writer.write_batch(_counted(batch, summary, on_result), columns)
            if failure is not None:
                return batch.errors[failure]
    return None


@contextmanager
def _closing(writer: RowWriter, output: str) -> Iterator[None]:
    """Close the writer after the block. A full disk or lost mount is an OutputError (what was flushed stays,
    resumable); a closed stdout's BrokenPipeError goes through; any other failure (an interrupt) gives the
    output up as it is, resumable."""
    with giving_up(writer.abort, output):
        yield
        writer.close()


__all__ = ["GROUP_COLUMNS", "RunOptions", "RunSummary", "SettingError", "all_rows_path", "score_run"]
