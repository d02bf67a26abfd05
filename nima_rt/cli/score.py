"""``nima-rt score PATH...``: score files and folders, write CSV/JSONL/Parquet rows."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import typer

from nima_rt.cli import options
from nima_rt.cli.common import EXIT_BROKEN_PIPE, EXIT_NOTHING_SCORED, Progress, fail, note
from nima_rt.contract.choices import ENGINES
from nima_rt.io.inputs import InputItem, WalkReport, iter_inputs, normalize_extensions, read_path_list
from nima_rt.io.results import ScoreResult
from nima_rt.io.writers import (
    CsvWriter,
    DonePaths,
    JsonlWriter,
    OutputError,
    ParquetWriter,
    RowWriter,
    check_resumable,
    done_paths,
    format_for,
    open_text,
)
from nima_rt.runtime.ranking import RULE_COLUMNS, RankRule, rank_groups, rank_rows, sort_rows
from nima_rt.runtime.scorer import Scorer, ScorerConfig

GROUP_COLUMNS = ("group", "rank", "best")


def _skip_done(items: Iterable[InputItem], done: DonePaths) -> Iterator[InputItem]:
    return (item for item in items if item.path not in done)


def _make_writer(fmt: str, output: str | None, columns: list[str], extra: tuple[str, ...], append: bool,
                 escape_formulas: bool = True) -> RowWriter:
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
    return CsvWriter(stream, columns, extra, header=write_header, escape_formulas=escape_formulas)


def score(
    paths: list[str] = typer.Argument(
        None, help="Image files and folders (walked recursively); '-' reads paths from stdin, one per line (as "
        "from `find ... | nima-rt score -`); with --engine ray also CSV/Parquet manifests with a 'path' column, "
        "local or URIs (s3://...).", show_default=False,
    ),
    paths_from: str | None = typer.Option(
        None, "--paths-from", help="Also score the paths listed in this file, one per line ('-': stdin)."
    ),
    ext: str | None = typer.Option(
        None, "--ext", help="Walk folders for these extensions only, e.g. jpg,png (default: every format the "
        "installed Pillow reads; docs/runtime.md)."
    ),
    no_formula_escape: bool = typer.Option(
        False, "--no-formula-escape", help="CSV: write cells starting with = + - @ as they are (by default they get "
        "a leading ' so spreadsheets do not run them)."
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
    streams: options.Streams = None,
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
    paths = list(paths or [])
    if group_by not in (None, "parent"):
        raise typer.BadParameter("only 'parent' is supported", param_hint="--group-by")
    if engine != "local" or address is not None:
        from nima_rt.cli.score_ray import score_ray

        single = {"--sort": sort, "--sort-by": sort_by is not None, "--rank-by": rank_by is not None,
                  "--top": top is not None,
                  "--group-by": group_by is not None, "--strict": strict, "--workers": workers is not None,
                  "--gpu-decode on": gpu_decode == "on", "--full-decode": full_decode,
                  "--precision": precision is not None, "--streams": streams is not None}
        score_ray(engine=engine, paths=paths, models=model, output=output, fmt=fmt, address=address,
                  batch_size=batch_size, threads=threads, device=device, backend=backend,
                  single_machine_options=single, quiet=quiet)
        return
    ranking = sort or top is not None or group_by is not None or rank_by is not None
    fmt, config, extensions = _check_local_options(
        paths, paths_from, ext, output, fmt, resume, ranking,
        dict(batch_size=batch_size, workers=workers, threads=threads, streams=streams, device=device,
             backend=backend, precision=precision, gpu_decode=gpu_decode, full_decode=full_decode))
    walk = WalkReport()
    lists = _open_path_lists(paths, paths_from)
    items: Iterable[InputItem] = iter_inputs(_input_paths(paths, paths_from, lists), extensions, walk)
    with options.open_scorer(model, config, quiet) as scorer:
        rule = options.rank_rule(rank_by, sort_by, scorer.columns)
        extra = _extra_columns(group_by is not None, rank_by is not None)
        writer, items, resumed = _open_output(scorer, items, output, fmt, extra, resume, quiet, not no_formula_escape)
        progress = Progress()
        if progress.enabled and not lists:  # a bar with a total and an ETA: count the inputs beside the run
            _count_in_background(paths, extensions, resumed, progress)
        results = progress.counted(scorer.score_items(items))
        if group_by or rank_by is not None:
            rows = _ranked_rows(results, rule, top, group_by is not None, extra)
        elif ranking:
            rows = ((result, None) for result in sort_rows(results, rule, top))
        else:
            rows = ((result, None) for result in results)
        try:
            failed_path = _write_rows(writer, rows, strict and not ranking, output)
        finally:
            progress.finish()
        if strict and failed_path is None and progress.failed:
            failed_path = f"{progress.failed} file(s) failed"
        if not quiet:
            note(
                f"scored {progress.done - progress.failed}, failed {progress.failed} in {progress.elapsed:.1f} s "
                f"({progress.rate:.1f} images/s)"
            )
            skipped = walk.summary()
            if skipped:
                note(skipped)
        if failed_path is not None:
            fail(f"--strict: {failed_path}")
        _check_something_scored(progress, resumed, paths + ([paths_from] if paths_from else []))


def _check_local_options(paths: list[str], paths_from: str | None, ext: str | None, output: str | None,
                         fmt: str | None, resume: bool, ranking: bool,
                         scoring: dict[str, Any]) -> tuple[str, ScorerConfig, frozenset[str] | None]:
    """The output format, the scorer's config and the walked extensions; a usage error (exit 2) otherwise."""
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
        config = options.scorer_config(**scoring)
    except ValueError as exc:  # a split the cores cannot make (--threads 1 --streams 2)
        raise typer.BadParameter(str(exc), param_hint="--streams") from None
    if not paths and paths_from is None:
        raise typer.BadParameter("give at least one PATH ('-' reads paths from stdin)", param_hint="PATH")
    try:
        extensions = normalize_extensions(ext.split(",")) if ext is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--ext") from None
    return fmt, config, extensions


def _ranked_rows(results: Iterable[ScoreResult], rule: RankRule, top: int | None, grouped: bool,
                 extra: tuple[str, ...]) -> Iterator[tuple[ScoreResult, dict[str, Any]]]:
    ranked = rank_groups(results, rule, top) if grouped else rank_rows(results, rule, top)
    for row in ranked:
        yield row.result, {k: v for k, v in row.extra().items() if k in extra}


def _write_rows(writer: RowWriter, rows: Iterable[tuple[ScoreResult, dict[str, Any] | None]], strict: bool,
                output: str | None) -> str | None:
    """Write every row and close the writer; with ``strict`` stop at the first failure and return its error.

    A closed stdout (`| head`) stops quietly with exit 141; a full disk or lost mount is one ``error:`` line,
    and what was flushed stays resumable.
    """
    failed_path = None
    try:
        for result, extra in rows:
            writer.write(result, extra)
            if strict and not result.ok:
                failed_path = result.error
                break
        writer.close()
    except BrokenPipeError:  # `| head` closed stdout: stop quietly, as command-line tools do
        _silence_stdout()
        raise typer.Exit(EXIT_BROKEN_PIPE) from None
    except OSError as exc:  # full disk, lost mount: what was flushed stays, resumable
        _close_quietly(writer)
        fail(f"{output or 'stdout'}: cannot write output ({exc.strerror or exc})")
    return failed_path


def _open_path_lists(paths: list[str], paths_from: str | None) -> dict[str, BinaryIO]:
    """The lists of paths to read ('-': stdin; --paths-from FILE), opened now so a missing one fails first."""
    lists: dict[str, BinaryIO] = {}
    for name in ["-"] * ("-" in paths) + ([paths_from] if paths_from is not None else []):
        try:
            lists[name] = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115 - read lazily
        except OSError as exc:
            fail(f"--paths-from {name}: cannot read the list of paths ({exc.strerror or exc})")
    return lists


def _input_paths(paths: list[str], paths_from: str | None, lists: dict[str, BinaryIO]) -> Iterator[str]:
    """The PATH arguments, with '-' (and --paths-from) replaced lazily by the paths they list."""
    for given in paths:
        if given == "-":
            yield from read_path_list(lists["-"])
        else:
            yield given
    if paths_from is not None:
        yield from read_path_list(lists[paths_from])


def _count_in_background(paths: list[str], extensions: frozenset[str] | None, resumed: int,
                         progress: Progress) -> None:
    """Walk the inputs a second time in a daemon thread and give the progress bar its total."""

    def count() -> None:
        total = sum(1 for _ in iter_inputs(paths, extensions))
        progress.total = max(0, total - resumed)

    threading.Thread(target=count, name="nima-count", daemon=True).start()


def _check_something_scored(progress: Progress, resumed: int, inputs: list[str]) -> None:
    """A run that scored nothing must not look like success (exit 3), unless --resume found it all done."""
    if progress.done == 0 and resumed:
        return
    if progress.done == 0:
        shown = ", ".join(inputs[:3]) + (", ..." if len(inputs) > 3 else "")
        fail(f"no image files found in {shown or 'the given list'}", EXIT_NOTHING_SCORED)
    if progress.failed == progress.done:
        fail(f"none of the {progress.done} input(s) could be scored (see the error column)", EXIT_NOTHING_SCORED)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not print a BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _close_quietly(writer: RowWriter) -> None:
    try:
        writer.close()
    except OSError:
        pass  # the error being reported is the first one


def _extra_columns(grouped: bool, ruled: bool) -> tuple[str, ...]:
    """Columns after the scores: group/rank/best when grouping; the rule's score (and, per listing, the rule
    that picked the best photo) with --rank-by."""
    if grouped:
        return GROUP_COLUMNS + (RULE_COLUMNS if ruled else ())
    return ("rank", RULE_COLUMNS[0]) if ruled else ()


def _open_output(scorer: Scorer, items: Iterable[InputItem], output: str | None, fmt: str, extra: tuple[str, ...],
                 resume: bool, quiet: bool, escape_formulas: bool) -> tuple[RowWriter, Iterable[InputItem], int]:
    """The row writer (appending on --resume), the inputs still to score and how many rows a resumed
    output already had; or exit with one line."""
    append = False
    resumed = 0
    try:
        if resume and output is not None:
            check_resumable(fmt, output)  # the same answer whether or not the file exists yet
        if resume and output is not None and Path(output).exists():
            done = done_paths(Path(output), fmt, scorer.columns, extra)
            items = _skip_done(items, done)
            append, resumed = True, len(done)
            if not quiet:
                note(f"resuming {output}: {resumed} paths already scored")
        return _make_writer(fmt, output, scorer.columns, extra, append, escape_formulas), items, resumed
    except OutputError as exc:
        fail(str(exc))
    except BrokenPipeError:
        _silence_stdout()
        raise typer.Exit(EXIT_BROKEN_PIPE) from None
    except OSError as exc:  # the CSV header on a full disk
        fail(f"{output or 'stdout'}: cannot write output ({exc.strerror or exc})")


def register(app: typer.Typer) -> None:
    app.command("score")(score)


__all__ = ["register", "score"]
