"""``nima-rt report PATH... --output report.html``: a page of photos ranked per listing."""

from __future__ import annotations

from pathlib import Path

import typer

from nima_rt.apps.report.build import ReportConfig, ReportError, build_report
from nima_rt.cli import options
from nima_rt.cli.common import Progress, fail, note
from nima_rt.io.scores.reader import ScoreFiles
from nima_rt.io.scores.writers import OutputError
from nima_rt.runtime.grouping import GroupingError, parse_grouping
from nima_rt.runtime.ranking import RankRuleError, resolve_rank_rule


def report(
    paths: list[Path] | None = typer.Argument(None, help="Image files and folders (walked recursively)."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o", help="The HTML page to write."),
    scores: str | None = typer.Option(
        None, "--scores", help="Use what `nima-rt score` or `nima-rt rank` wrote instead of scoring: a CSV/JSONL/"
        "Parquet file or an `--engine ray` output folder (local or a URI)."
    ),
    model: options.Models = None,
    sort_by: options.RankColumn = None,
    rank_by: options.RankBy = None,
    group_by: str = typer.Option(
        "parent", "--group-by", help="parent: one listing per folder; dir:N: per first N folders; a column of the "
        "--scores file (e.g. listing_id); none: one ranking."
    ),
    top: int | None = typer.Option(None, "--top", min=1, help="Show only the K best photos of each listing."),
    title: str = typer.Option("nima-rt report", "--title", help="Page title."),
    thumb_size: int = typer.Option(200, "--thumb-size", min=32, max=1024, help="Thumbnail size in pixels."),
    embed: bool = typer.Option(
        False, "--embed", help="Put thumbnails inside the HTML (one file; heavier for thousands of photos)."
    ),
    batch_size: options.BatchSize = None,
    workers: options.Workers = None,
    threads: options.Threads = None,
    device: options.Device = "auto",
    backend: options.BackendName = None,
    precision: options.Precision = None,
    gpu_decode: options.GpuDecode = "auto",
    full_decode: options.FullDecode = False,
    max_pixels: options.MaxPixels = None,
    memory_budget: options.MemoryBudget = None,
    quiet: options.Quiet = False,
) -> None:
    """Write an HTML page: photos ranked best first within each listing folder, best one marked,
    scores and distributions shown, failed files listed. Opens offline; no JavaScript."""
    try:
        grouping = parse_grouping(group_by)
    except GroupingError as exc:
        raise typer.BadParameter(str(exc), param_hint="--group-by") from None
    if bool(paths) == (scores is not None):
        raise typer.BadParameter("give image PATHs to score, or --scores FILE, not both", param_hint="PATH")
    if scores is not None and model:
        raise typer.BadParameter("--model scores images; with --scores the file has the scores", param_hint="--model")
    config = ReportConfig(title=title, rank_column=sort_by, rank_by=rank_by, group_by=group_by, top=top,
                          thumb_size=thumb_size, embed=embed, workers=workers)
    progress = Progress()
    try:
        if scores is not None:
            try:
                files = ScoreFiles([scores])
                if grouping is not None:
                    grouping.check(files.carried, scores)
                columns, rows = files.columns, list(files.rows())
            except (OutputError, GroupingError) as exc:
                fail(str(exc))
            summary = build_report(rows, columns, output, config)
        else:
            scorer_config = options.scorer_config(
                batch_size=batch_size, workers=workers, threads=threads, device=device, backend=backend,
                precision=precision, gpu_decode=gpu_decode, full_decode=full_decode, max_pixels=max_pixels,
                memory_budget=memory_budget)
            if grouping is not None:
                try:
                    grouping.check([], "the photos (give --scores FILE with that column)")
                except GroupingError as exc:
                    fail(str(exc))
            with options.open_scorer(model, scorer_config, quiet) as scorer:
                if sort_by is not None or rank_by is not None:
                    try:
                        resolve_rank_rule(rank_by, sort_by, scorer.columns)
                    except RankRuleError as exc:
                        fail(str(exc))
                rows = list(progress.counted(scorer.score_paths(paths or [])))
                progress.finish()
                summary = build_report(rows, scorer.columns, output, config)
    except ReportError as exc:
        fail(str(exc))
    if summary.scored + summary.failed == 0:
        note("warning: no image files found; the page is empty")
    if not quiet:
        where = f" (thumbnails in {summary.thumbnails_dir})" if summary.thumbnails_dir else ""
        note(
            f"wrote {summary.output}{where}: {summary.scored} photos in {summary.listings} listing(s), "
            f"{summary.failed} failed"
            + (f", {summary.thumbnail_failures} without preview" if summary.thumbnail_failures else "")
        )


def register(app: typer.Typer) -> None:
    app.command("report")(report)


__all__ = ["register", "report"]
