"""``nima-rt score PATH...``: score files and folders, write CSV/JSONL/Parquet rows.

The command parses its options into the library's dataclasses and makes one call,
:func:`nima_rt.runtime.run.score_run`; what is left here is the exit policy and the lines on stderr.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import BinaryIO

import typer

from nima_rt.cli import options
from nima_rt.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_NOTHING_SCORED,
    EXIT_USAGE,
    Progress,
    fail,
    note,
    ranked_line,
    silence_stdout,
)
from nima_rt.contract.choices import ENGINES
from nima_rt.io.inputs import PathList, iter_inputs, read_path_list
from nima_rt.io.scores.output_file import OutputConflict
from nima_rt.io.scores.writers import OutputError
from nima_rt.runtime.rank_output import RankOptions
from nima_rt.runtime.run import RunOptions, RunSummary, SettingError, score_run


def score(
    paths: list[str] = typer.Argument(
        None, help="Image files, folders (walked recursively) and CSV/Parquet manifests with a 'path' column (other "
        "columns are carried into the output); '-' reads paths from stdin, one per line (as from `find ... | "
        "nima-rt score -`); with --engine ray also URIs (s3://...).", show_default=False,
    ),
    paths_from: str | None = typer.Option(
        None, "--paths-from", help="Also score the paths listed in this file, one per line ('-': stdin)."
    ),
    ext: str | None = typer.Option(
        None, "--ext", help="Walk folders for these extensions only, e.g. jpg,png (default: every format the "
        "installed Pillow reads; docs/guide/runtime.md)."
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
    group_by: options.GroupBy = None,
    batch_size: options.BatchSize = None,
    workers: options.Workers = None,
    threads: options.Threads = None,
    streams: options.Streams = None,
    device: options.Device = "auto",
    backend: options.BackendName = None,
    precision: options.Precision = None,
    gpu_decode: options.GpuDecode = "auto",
    full_decode: options.FullDecode = False,
    max_pixels: options.MaxPixels = None,
    memory_budget: options.MemoryBudget = None,
    resume: bool = typer.Option(False, "--resume", help="Continue --output (CSV, JSONL or Parquet): skip the paths "
                                "already in it, add the rest (a ranked run ranks the whole output when every input "
                                "is scored)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an --output that already holds rows (without "
                                   "it, or --resume, such an output is refused)."),
    strict: bool = typer.Option(False, "--strict", help="Stop with exit code 1 at the first file that fails."),
    quiet: options.Quiet = False,
    engine: str = typer.Option(
        "local", "--engine", callback=options.one_of(ENGINES),
        help="local (this machine) | ray (a Ray cluster; --output is a folder of Parquet shards, re-runs resume; "
        "docs/guide/scale.md)."
    ),
    address: str | None = typer.Option(
        None, "--address", help="--engine ray: 'auto' or ray://HOST:10001 to join a cluster (default: a local Ray)."
    ),
    ray_logs: bool = typer.Option(
        False, "--ray-logs", help="--engine ray: let Ray's own log lines through to stderr (default: only "
        "nima-rt's lines; Ray's go to its session log files)."
    ),
) -> None:
    """Score images; one row per file, in input order, flushed as it finishes."""
    paths = list(paths or [])
    if engine != "local" or address is not None or ray_logs:
        from nima_rt.cli.score_ray import score_ray

        single = {"--strict": strict, "--workers": workers is not None, "--gpu-decode on": gpu_decode == "on",
                  "--precision": precision is not None, "--streams": streams is not None,
                  "--paths-from": paths_from is not None, "--ext": ext is not None, "-": "-" in paths,
                  "--overwrite": overwrite}
        ranking = _rank_options(sort=sort, sort_by=sort_by, rank_by=rank_by, top=top, group_by=group_by)
        score_ray(engine=engine, paths=paths, models=model, output=output, fmt=fmt, address=address,
                  batch_size=batch_size, threads=threads, device=device, backend=backend, ranking=ranking,
                  single_machine_options=single, quiet=quiet, ray_logs=ray_logs,
                  decode=options.decode_options(full_decode, max_pixels, memory_budget))
        return
    run = _run_options(output=output, format=fmt, resume=resume, overwrite=overwrite, strict=strict, sort=sort,
                       sort_by=sort_by, rank_by=rank_by, top=top, group_by=group_by,
                       escape_formulas=not no_formula_escape,
                       extensions=tuple(ext.split(",")) if ext is not None else None)
    config = options.scorer_config(batch_size=batch_size, workers=workers, threads=threads, streams=streams,
                                   device=device, backend=backend, precision=precision, gpu_decode=gpu_decode,
                                   full_decode=full_decode, max_pixels=max_pixels, memory_budget=memory_budget)
    if not paths and paths_from is None:
        raise typer.BadParameter("give at least one PATH ('-' reads paths from stdin)", param_hint="PATH")
    lists = _open_path_lists(paths, paths_from)
    progress = Progress()
    with options.open_scorer(model, config, quiet) as scorer:
        on_resume = _resume_note(output, quiet)
        if progress.enabled and not lists:  # a bar with a total and an ETA: count the inputs beside the run
            on_resume = _count_in_background(paths, run, progress, on_resume)
        try:
            summary = score_run(scorer, _input_paths(paths, paths_from, lists), run,
                                on_result=lambda result: progress.update(result.ok), on_resume=on_resume)
        except SettingError as exc:
            fail(str(exc))
        except OutputConflict as exc:  # busy, or data neither resumed nor overwritten: the user chooses
            fail(str(exc), EXIT_USAGE)
        except OutputError as exc:
            fail(str(exc))
        except BrokenPipeError:  # `| head` closed stdout: stop quietly, as command-line tools do
            silence_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        finally:
            progress.finish()
    _finish(summary, quiet, paths + ([paths_from] if paths_from else []))


def _run_options(**given: object) -> RunOptions:
    """The run's options, or a usage error (exit 2) naming the option."""
    try:
        return RunOptions(**given)  # type: ignore[arg-type]
    except SettingError as exc:
        raise typer.BadParameter(str(exc), param_hint=exc.option) from None


def _rank_options(**given: object) -> RankOptions | None:
    """The Ray run's rank step (None when no ranking was asked for), or a usage error naming the option."""
    try:
        ranking = RankOptions(**given)  # type: ignore[arg-type]
    except SettingError as exc:
        raise typer.BadParameter(str(exc), param_hint=exc.option) from None
    return ranking if ranking.ranks else None


def _finish(summary: RunSummary, quiet: bool, inputs: list[str]) -> None:
    """The summary lines, then the exit policy: --strict failures exit 1; a run that scored nothing exits 3
    (unless --resume found it all done)."""
    if not quiet:
        note(f"scored {summary.scored}, failed {summary.failed} in {summary.elapsed:.1f} s "
             f"({summary.rate:.1f} images/s)")
        skipped = summary.walk.summary()
        if skipped:
            note(skipped)
        if summary.ranked is not None:
            note(ranked_line(summary.ranked))
    if summary.stopped_at is not None:
        fail(f"--strict: {summary.stopped_at}")
    if summary.done == 0 and summary.resumed:
        return
    if summary.done == 0:
        shown = ", ".join(inputs[:3]) + (", ..." if len(inputs) > 3 else "")
        fail(f"no image files found in {shown or 'the given list'}", EXIT_NOTHING_SCORED)
    if summary.failed == summary.done:
        fail(f"none of the {summary.done} input(s) could be scored (see the error column)", EXIT_NOTHING_SCORED)


def _open_path_lists(paths: list[str], paths_from: str | None) -> dict[str, BinaryIO]:
    """The lists of paths to read ('-': stdin; --paths-from FILE), opened now so a missing one fails first."""
    lists: dict[str, BinaryIO] = {}
    for name in ["-"] * ("-" in paths) + ([paths_from] if paths_from is not None else []):
        try:
            lists[name] = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115 - read lazily
        except OSError as exc:
            fail(f"--paths-from {name}: cannot read the list of paths ({exc.strerror or exc})")
    return lists


def _input_paths(paths: list[str], paths_from: str | None, lists: dict[str, BinaryIO]) -> list[str | PathList]:
    """The PATH arguments, with '-' (and --paths-from) standing for the paths they list, read lazily."""
    given: list[str | PathList] = [PathList(read_path_list(lists["-"])) if path == "-" else path for path in paths]
    if paths_from is not None:
        given.append(PathList(read_path_list(lists[paths_from])))
    return given


def _resume_note(output: str | None, quiet: bool) -> Callable[[int], None]:
    def resumed(done: int) -> None:
        if done and not quiet:
            note(f"resuming {output}: {done} paths already scored")

    return resumed


def _count_in_background(paths: list[str], run: RunOptions, progress: Progress,
                         on_resume: Callable[[int], None]) -> Callable[[int], None]:
    """Give the terminal's progress bar its total: once the run knows how many rows it resumes, walk the
    inputs a second time in a daemon thread (only when a terminal shows the bar; batch jobs walk once)."""

    def start(resumed: int) -> None:
        on_resume(resumed)

        def count() -> None:
            total = sum(1 for _ in iter_inputs(paths, run.walked_extensions))
            progress.total = max(0, total - resumed)

        threading.Thread(target=count, name="nima-count", daemon=True).start()

    return start


def register(app: typer.Typer) -> None:
    app.command("score")(score)


__all__ = ["register", "score"]
