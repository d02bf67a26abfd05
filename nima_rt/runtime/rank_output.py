"""Rank finished score files: ``nima-rt rank``, and the last step of every ranked run on either engine.

    from nima_rt.runtime.rank_output import RankOptions, rank_output
    rank_output(["scores.csv"], RankOptions(output="picks.csv", group_by="listing_id", top=3))

The rows of one or several score files or Ray output folders (:mod:`nima_rt.io.scores.reader`) are
ranked by :mod:`nima_rt.runtime.ranking` and written, with their carried columns, to a file that
appears whole (a temporary file renamed at the end; the output may be one of the sources) or to stdout.
``nima-rt score --group-by/--rank-by/--sort/--top`` writes its rows first and then calls this on them,
so a score run, a resumed one and ``rank`` on its output give the same rows.

**Memory.** With ``group_by`` the files are read twice: first each listing's last row (memory: one
entry per listing), then the rows, a listing being ranked and written as soon as it and every listing
seen before it are complete. Rows that arrive grouped (a folder walk, a manifest sorted by listing)
hold one listing at a time; a listing whose rows are spread over the file holds the rows in between.
``top`` without ``group_by`` holds K rows; ``sort`` and ``rank_by`` without ``group_by`` hold every row.
"""

from __future__ import annotations

import io
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nima_rt.contract.choices import SettingError
from nima_rt.io.files import atomic_path
from nima_rt.io.locations import SourceError, is_uri, open_filesystem
from nima_rt.io.scores.open_output import open_output
from nima_rt.io.scores.output_file import OutputExists
from nima_rt.io.scores.reader import ScoreFiles
from nima_rt.io.scores.rows import ScoreRow
from nima_rt.io.scores.writers import CsvWriter, JsonlWriter, OutputError, ParquetWriter, RowWriter, format_for
from nima_rt.runtime.grouping import Grouping, GroupingError, parse_grouping
from nima_rt.runtime.ranking import (
    RULE_COLUMNS,
    RankRule,
    RankRuleError,
    rank_groups,
    rank_rows,
    resolve_rank_rule,
    uses_default_rule,
)

GROUP_COLUMNS = ("group", "rank", "best")


@dataclass(frozen=True)
class RankOptions:
    """How rows are ranked and where they go. ``output`` None or ``"-"`` is stdout. Checked once when made
    (:class:`SettingError` names the option); with none of ``sort``/``top``/``group_by``/``rank_by`` the
    rows are sorted best first."""

    output: str | None = None
    format: str | None = None  # csv | jsonl | parquet (None: from the output's extension, else csv)
    sort: bool = False  # best first by the rank rule
    sort_by: str | None = None  # the model column to rank by (default: the first model)
    rank_by: str | None = None  # a rank rule (nima_rt.runtime.ranking), e.g. 'aesthetic if technical>=5'
    top: int | None = None  # keep the K best (per listing when grouping)
    group_by: str | None = None  # parent | dir:N | COLUMN | none (nima_rt.runtime.grouping)
    escape_formulas: bool = True  # CSV: prefix cells starting with = + - @ with ' (spreadsheets)
    overwrite: bool = False  # replace an existing output that is not one of the sources
    resolved_format: str = field(init=False)
    grouping: Grouping | None = field(init=False)

    def __post_init__(self) -> None:
        if self.top is not None and self.top < 1:
            raise SettingError("--top", f"--top must be >= 1, got {self.top}")
        try:
            object.__setattr__(self, "grouping", parse_grouping(self.group_by))
        except GroupingError as exc:
            raise SettingError("--group-by", str(exc)) from None
        try:
            object.__setattr__(self, "resolved_format", format_for(self.output, self.format))
        except OutputError as exc:
            raise SettingError("--format", str(exc)) from None
        if self.resolved_format == "parquet" and (self.output is None or self.output == "-"):
            raise SettingError("--format", "--format parquet needs --output FILE")

    @property
    def ranks(self) -> bool:
        """Whether any ranking was asked for (a score run ranks only then)."""
        return self.sort or self.top is not None or self.grouping is not None or self.rank_by is not None

    def rule(self, columns: Sequence[str]) -> RankRule:
        """The rule rows are ranked by (:func:`nima_rt.runtime.ranking.resolve_rank_rule`)."""
        try:
            return resolve_rank_rule(self.rank_by, self.sort_by, list(columns))
        except RankRuleError as exc:
            raise SettingError("--rank-by" if self.rank_by is not None else "--sort-by", str(exc)) from None

    def check(self, columns: Sequence[str], carried: Sequence[str], where: str) -> RankRule:
        """The rule, after checking that the rows (model ``columns``, ``carried`` columns, from ``where``)
        have what the rule and the grouping read."""
        if not columns:
            raise SettingError("--rank-by", f"{where}: no model scores to rank by")
        rule = self.rule(columns)
        if self.grouping is not None:
            try:
                self.grouping.check(list(carried), where)
            except GroupingError as exc:
                raise SettingError("--group-by", str(exc)) from None
        return rule

    def shows_rule(self, columns: Sequence[str]) -> bool:
        """Whether rows carry the rule's score: with ``rank_by``, or the default job's rule
        (:data:`~nima_rt.runtime.ranking.DEFAULT_RANK_RULE`) over model ``columns``."""
        return self.rank_by is not None or uses_default_rule(self.rank_by, self.sort_by, columns)

    def extra_columns(self, columns: Sequence[str] = ()) -> tuple[str, ...]:
        """Columns after the scores and carried columns: group/rank/best when grouping; the rule's score (and,
        per listing, the rule that picked the best photo) when :meth:`shows_rule`."""
        shown = self.shows_rule(columns)
        if self.grouping is not None:
            return GROUP_COLUMNS + (RULE_COLUMNS if shown else ())
        return ("rank", RULE_COLUMNS[0]) if shown else ()


@dataclass
class RankSummary:
    """What a rank step wrote: rows, failed rows among them, listings (0 without grouping)."""

    rows: int = 0
    failed: int = 0
    listings: int = 0
    elapsed: float = 0.0
    output: str = "stdout"


def rank_output(sources: Sequence[str | os.PathLike[str]], options: RankOptions) -> RankSummary:
    """Rank the rows of ``sources`` (score files, Ray output folders) and write them to ``options.output``.

    Raises OutputError (one line naming the file) for a source that cannot be read or an output that cannot
    be written (the output is then untouched), SettingError for a rule or grouping the rows cannot serve.
    """
    started = time.perf_counter()
    _check_replaceable(sources, options)
    files = ScoreFiles(sources)
    names = ", ".join(os.fspath(s) for s in sources)
    rule = options.check(files.columns, files.carried, names)
    extra = tuple(files.carried) + options.extra_columns(files.columns)
    summary = RankSummary(output=options.output if options.output not in (None, "-") else "stdout")
    groups: set[str] = set()
    with _output(options, files.columns, extra) as writer:
        for row, ranked in ranked_rows(files, options, rule):
            writer.write(row, {**row.carried, **(ranked or {})})
            summary.rows += 1
            summary.failed += not row.ok
            if ranked is not None and ranked.get("group") is not None:
                groups.add(ranked["group"])
    summary.listings = len(groups)
    summary.elapsed = time.perf_counter() - started
    return summary


def _check_replaceable(sources: Sequence[str | os.PathLike[str]], options: RankOptions) -> None:
    """OutputExists when the output is a local file holding data that is none of the sources and
    ``overwrite`` was not given (a score file is never replaced unasked; ranking in place is asked)."""
    output = options.output
    if options.overwrite or output in (None, "-") or is_uri(output) or not os.path.isfile(output):
        return
    if os.path.getsize(output) == 0 or any(_same_file(output, source) for source in sources):
        return
    raise OutputExists(f"{output}: already holds {os.path.getsize(output)} bytes; pass --overwrite to replace it "
                       "(or rank it in place by naming it among the SCORES)")


def _same_file(output: str, source: str | os.PathLike[str]) -> bool:
    try:
        return os.path.samefile(output, source)
    except OSError:
        return False


def ranked_rows(files: ScoreFiles, options: RankOptions, rule: RankRule) -> Iterator[tuple[ScoreRow, dict | None]]:
    """The rows of ``files`` in ranked order, each with its ranking columns (None for a plain sort)."""
    wanted = options.extra_columns(files.columns)
    if options.grouping is not None:
        key = options.grouping.key_function()
        ends: dict[str, int] = {}
        for index, row in enumerate(files.rows(scores=False)):
            ends[key(row)] = index
        ranked = rank_groups(files.rows(), rule, options.top, key, ends)
    elif options.shows_rule(files.columns):
        ranked = rank_rows(files.rows(), rule, options.top)
    else:  # --sort / --top: rows only, best first
        yield from ((row.result, None) for row in rank_rows(files.rows(), rule, options.top))  # type: ignore[misc]
        return
    for row in ranked:
        yield row.result, {k: v for k, v in row.extra().items() if k in wanted}  # type: ignore[misc]


@contextmanager
def _output(options: RankOptions, columns: list[str], extra: tuple[str, ...]) -> Iterator[RowWriter]:
    """A writer whose file appears only complete (local: renamed from a temporary file; URI: moved)."""
    output, fmt = options.output, options.resolved_format
    if output is None or output == "-":
        writer = open_output(fmt, None, columns, extra, escape_formulas=options.escape_formulas).writer
        yield writer
        writer.close()
        return
    try:
        if is_uri(output):
            with _uri_output(output, fmt, columns, extra, options.escape_formulas) as writer:
                yield writer
            return
        with atomic_path(output) as temporary:
            with _file_writer(fmt, open(temporary, "wb"), columns, extra, options.escape_formulas) as writer:
                yield writer
    except SourceError as exc:
        raise OutputError(str(exc)) from None
    except OSError as exc:
        raise OutputError(f"{output}: cannot write output ({exc.strerror or exc})") from None


@contextmanager
def _uri_output(output: str, fmt: str, columns: list[str], extra: tuple[str, ...], escape: bool) -> Iterator[RowWriter]:
    fs, inner = open_filesystem(output)
    folder, _, name = inner.rpartition("/")
    temporary = f"{folder}/.{name}.tmp-{uuid.uuid4().hex}"
    try:
        with _file_writer(fmt, fs.open_output_stream(temporary), columns, extra, escape) as writer:
            yield writer
        fs.move(temporary, inner)
    except BaseException:
        try:
            fs.delete_file(temporary)
        except OSError:
            pass
        raise


@contextmanager
def _file_writer(fmt: str, stream: Any, columns: list[str], extra: tuple[str, ...], escape: bool
                 ) -> Iterator[RowWriter]:
    """A writer on a binary ``stream``, closed (with the stream) after the block."""
    if fmt == "parquet":
        with stream:
            writer = ParquetWriter(stream, columns, extra)
            yield writer
            writer.close()
        return
    with io.TextIOWrapper(stream, encoding="utf-8", newline="") as text:
        text_writer = JsonlWriter(text, columns) if fmt == "jsonl" else CsvWriter(text, columns, extra,
                                                                                  escape_formulas=escape)
        yield text_writer
        text_writer.close()


__all__ = ["GROUP_COLUMNS", "RankOptions", "RankSummary", "rank_output", "ranked_rows"]
