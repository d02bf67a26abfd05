"""``nima-rt score PATH...``: score files and folders, write CSV/JSONL/Parquet rows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import typer

from ..choices import ENGINES
from ..inputs import InputItem, iter_inputs
from ..output import (
    CsvWriter,
    JsonlWriter,
    OutputError,
    ParquetWriter,
    RowWriter,
    done_paths,
    format_for,
    open_text,
)
from ..ranking import RULE_COLUMNS, rank_groups, rank_rows, sort_rows
from ..results import ScoreResult
from ..scorer import Scorer
from . import options
from .common import Progress, fail, note

GROUP_COLUMNS = ("group", "rank", "best")


def _skip_done(items: Iterable[InputItem], done: set[str]) -> Iterator[InputItem]:
    return (item for item in items if item.path not in done)


def _counted(results: Iterable[ScoreResult], progress: Progress) -> Iterator[ScoreResult]:
    for result in results:
        progress.update(result.ok)
        yield result


def _make_writer(fmt: str, output: str | None, columns: list[str], extra: tuple[str, ...], append: bool) -> RowWriter:
    if fmt == "parquet":
        if output is None or output == "-":
            raise OutputError("--format parquet needs --output FILE")
        try:
            return ParquetWriter(output, columns, extra)
        except OSError as exc:
            raise OutputError(f"{output}: cannot write output ({exc})") from None
    stream = open_text(output, append)
    if fmt == "jsonl":
        return JsonlWriter(stream, columns)
    write_header = not (append and output is not None and Path(output).stat().st_size > 0)
    return CsvWriter(stream, columns, extra, header=write_header)


def score(
    paths: list[str] = typer.Argument(
        ..., help="Image files and folders (walked recursively); with --engine ray also CSV/Parquet manifests "
        "with a 'path' column, local or URIs (s3://...)."
    ),
    model: options.Models = None,
    output: str | None = typer.Option(None, "--output", "-o", help="Output file (default: stdout)."),
    fmt: str | None = typer.Option(
        None, "--format", "-f", help="csv | jsonl | parquet (default: from --output, else csv)."
    ),
    sort: bool = typer.Option(False, "--sort", help="Best first by the first model's mean (holds rows in memory)."),
    sort_by: options.RankColumn = None,
    rank_by: options.RankBy = None,
    top: options.Top = None,
    group_by: str | None = typer.Option(None, "--group-by", help="'parent': rank within each folder, mark the best."),
    batch_size: options.BatchSize = None,
    workers: options.Workers = None,
    threads: options.Threads = None,
    sessions: options.Sessions = None,
    device: options.Device = "auto",
    backend: options.BackendName = None,
    precision: options.Precision = None,
    gpu_decode: options.GpuDecode = "auto",
    full_decode: options.FullDecode = False,
    resume: bool = typer.Option(False, "--resume", help="Append to --output and skip paths already in it."),
    strict: bool = typer.Option(False, "--strict", help="Stop with exit code 1 at the first file that fails."),
    quiet: options.Quiet = False,
    engine: str = typer.Option(
        "local", "--engine", callback=options.one_of(ENGINES),
        help="local (this machine) | ray (a Ray cluster; --output is a folder of Parquet shards, re-runs resume; "
        "docs/scale.md)."
    ),
    address: str | None = typer.Option(
        None, "--address", help="--engine ray: 'auto' or ray://HOST:10001 to join a cluster (default: a local Ray)."
    ),
) -> None:
    """Score images; one row per file, in input order, flushed as it finishes."""
    if group_by not in (None, "parent"):
        raise typer.BadParameter("only 'parent' is supported", param_hint="--group-by")
    if engine != "local" or address is not None:
        from .score_ray import score_ray

        single = {"--sort": sort, "--sort-by": sort_by is not None, "--rank-by": rank_by is not None,
                  "--top": top is not None,
                  "--group-by": group_by is not None, "--strict": strict, "--workers": workers is not None,
                  "--gpu-decode on": gpu_decode == "on", "--full-decode": full_decode,
                  "--precision": precision is not None, "--sessions": sessions is not None}
        score_ray(engine=engine, paths=paths, models=model, output=output, fmt=fmt, address=address,
                  batch_size=batch_size, threads=threads, device=device, backend=backend,
                  single_machine_options=single, quiet=quiet)
        return
    ranking = sort or top is not None or group_by is not None or rank_by is not None
    if resume and (output is None or output == "-"):
        raise typer.BadParameter("--resume needs --output FILE", param_hint="--resume")
    if resume and ranking:
        raise typer.BadParameter("--resume cannot be combined with --sort, --rank-by, --top or --group-by",
                                 param_hint="--resume")
    try:
        fmt = format_for(output, fmt)
    except OutputError as exc:
        raise typer.BadParameter(str(exc), param_hint="--format") from None
    try:
        config = options.scorer_config(batch_size=batch_size, workers=workers, threads=threads, sessions=sessions,
                                       device=device, backend=backend, precision=precision, gpu_decode=gpu_decode,
                                       full_decode=full_decode)
    except ValueError as exc:  # a split the cores cannot make (--threads 1 --sessions 2)
        raise typer.BadParameter(str(exc), param_hint="--sessions") from None
    with options.open_scorer(model, config, quiet) as scorer:
        rule = options.rank_rule(rank_by, sort_by, scorer.columns)
        extra = _extra_columns(group_by is not None, rank_by is not None)
        writer, items = _open_output(scorer, paths, output, fmt, extra, resume, quiet)
        progress = Progress()
        results = _counted(scorer.score_items(items), progress)
        try:
            failed_path = None
            if group_by or rank_by is not None:
                ranked = rank_groups(results, rule, top) if group_by else rank_rows(results, rule, top)
                for row in ranked:
                    writer.write(row.result, {k: v for k, v in row.extra().items() if k in extra})
            elif ranking:
                failed_path = _write_all(writer, sort_rows(results, rule, top), strict=False)
            else:
                failed_path = _write_all(writer, results, strict)
        except OSError as exc:
            fail(f"{output or 'stdout'}: cannot write output ({exc})")
        finally:
            writer.close()
            progress.finish()
        if strict and failed_path is None and progress.failed:
            failed_path = f"{progress.failed} file(s) failed"
        if not quiet:
            note(
                f"scored {progress.done - progress.failed}, failed {progress.failed} in {progress.elapsed:.1f} s "
                f"({progress.rate:.1f} images/s)"
            )
        if failed_path is not None:
            fail(f"--strict: {failed_path}")


def _extra_columns(grouped: bool, ruled: bool) -> tuple[str, ...]:
    """Columns after the scores: group/rank/best when grouping; the rule's score (and, per listing, the rule
    that picked the best photo) with --rank-by."""
    if grouped:
        return GROUP_COLUMNS + (RULE_COLUMNS if ruled else ())
    return ("rank", RULE_COLUMNS[0]) if ruled else ()


def _open_output(scorer: Scorer, paths: list[str], output: str | None, fmt: str, extra: tuple[str, ...],
                 resume: bool, quiet: bool) -> tuple[RowWriter, Iterable[InputItem]]:
    """The row writer (appending on --resume) and the inputs still to score, or exit with one line."""
    items: Iterable[InputItem] = iter_inputs(paths)
    append = False
    try:
        if resume and output is not None and Path(output).exists():
            done = done_paths(Path(output), fmt, scorer.columns, extra)
            items = _skip_done(items, done)
            append = True
            if not quiet:
                note(f"resuming {output}: {len(done)} paths already scored")
        return _make_writer(fmt, output, scorer.columns, extra, append), items
    except OutputError as exc:
        fail(str(exc))


def _write_all(writer: RowWriter, results: Iterable[ScoreResult], strict: bool) -> str | None:
    """Write every result; with ``strict`` stop at the first failure and return its error."""
    for result in results:
        writer.write(result)
        if strict and not result.ok:
            return result.error
    return None


def register(app: typer.Typer) -> None:
    app.command("score")(score)


__all__ = ["register", "score"]
