"""``nima-rt score PATH...``: score files and folders, write CSV/JSONL/Parquet rows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import typer

from ..backends import BackendUnavailable
from ..contract import ContractError
from ..decode import DecodeOptions
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
from ..ranking import rank_groups, sort_rows
from ..results import ScoreResult
from ..scorer import Scorer, ScorerConfig
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
    model: list[str] | None = typer.Option(
        None, "--model", "-m", help="Bundled model name or model file (.onnx/.engine); repeat for several."
    ),
    output: str | None = typer.Option(None, "--output", "-o", help="Output file (default: stdout)."),
    fmt: str | None = typer.Option(
        None, "--format", "-f", help="csv | jsonl | parquet (default: from --output, else csv)."
    ),
    sort: bool = typer.Option(False, "--sort", help="Best first by the first model's mean (holds rows in memory)."),
    sort_by: str | None = typer.Option(None, "--sort-by", help="Model column to sort/rank by."),
    top: int | None = typer.Option(None, "--top", min=1, help="Keep only the K best (per group with --group-by)."),
    group_by: str | None = typer.Option(None, "--group-by", help="'parent': rank within each folder, mark the best."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", "-b", min=1, max=4096, help="Images per inference call (default: 16 on CPU, 128 on GPU)."
    ),
    workers: int | None = typer.Option(None, "--workers", "-w", min=1, help="Decode threads (default: all cores)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="Inference threads on CPU (default: all cores)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    backend: str | None = typer.Option(None, "--backend", help="Force one backend (see `nima-rt info`)."),
    precision: str | None = typer.Option(
        None, "--precision", help="GPU backends: fp16 (default where they can) | fp32 (closest to the CPU's scores)."
    ),
    gpu_decode: str = typer.Option(
        "auto", "--gpu-decode", help="Decode JPEGs on the GPU (nvJPEG): auto (when a model runs on CUDA) | on | off."
    ),
    full_decode: bool = typer.Option(
        False, "--full-decode", help="Decode JPEGs in full instead of DCT-scaled (slower; see docs/runtime.md)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Append to --output and skip paths already in it."),
    strict: bool = typer.Option(False, "--strict", help="Stop with exit code 1 at the first file that fails."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No backend line and no summary on stderr."),
    engine: str = typer.Option(
        "local", "--engine", help="local (this machine) | ray (a Ray cluster; --output is a folder of Parquet "
        "shards, re-runs resume; docs/scale.md)."
    ),
    address: str | None = typer.Option(
        None, "--address", help="--engine ray: 'auto' or ray://HOST:10001 to join a cluster (default: a local Ray)."
    ),
) -> None:
    """Score images; one row per file, in input order, flushed as it finishes."""
    if group_by not in (None, "parent"):
        raise typer.BadParameter("only 'parent' is supported", param_hint="--group-by")
    if device not in ("auto", "cpu", "cuda"):
        raise typer.BadParameter("must be auto, cpu or cuda", param_hint="--device")
    ranking = sort or top is not None or group_by is not None
    if engine != "local" or address is not None:
        from .score_ray import score_ray

        single = {"--sort": sort, "--sort-by": sort_by is not None, "--top": top is not None,
                  "--group-by": group_by is not None, "--strict": strict, "--workers": workers is not None,
                  "--gpu-decode on": gpu_decode == "on", "--full-decode": full_decode,
                  "--precision": precision is not None}
        score_ray(engine=engine, paths=paths, models=model, output=output, fmt=fmt, address=address,
                  batch_size=batch_size, threads=threads, device=device, backend=backend,
                  single_machine_options=single, quiet=quiet)
        return
    if resume and (output is None or output == "-"):
        raise typer.BadParameter("--resume needs --output FILE", param_hint="--resume")
    if resume and ranking:
        raise typer.BadParameter("--resume cannot be combined with --sort, --top or --group-by", param_hint="--resume")
    try:
        fmt = format_for(output, fmt)
    except OutputError as exc:
        raise typer.BadParameter(str(exc), param_hint="--format") from None

    if gpu_decode not in ("auto", "on", "off"):
        raise typer.BadParameter("must be auto, on or off", param_hint="--gpu-decode")
    if precision not in (None, "fp16", "fp32"):
        raise typer.BadParameter("must be fp16 or fp32", param_hint="--precision")
    config = ScorerConfig(batch_size=batch_size, workers=workers, threads=threads, device=device, backend=backend,
                          precision=precision, gpu_decode=gpu_decode, decode=DecodeOptions(jpeg_draft=not full_decode))
    try:
        scorer = Scorer(list(model) if model else [None], config)
    except (ContractError, BackendUnavailable, ValueError) as exc:
        fail(str(exc))
    with scorer:
        columns = scorer.columns
        rank_column = sort_by or columns[0]
        if rank_column not in columns:
            fail(f"--sort-by {rank_column}: no such model column (have {', '.join(columns)})")
        if not quiet:
            for line in scorer.backend_summary:
                note(line)
        extra = GROUP_COLUMNS if group_by else ()
        items: Iterable[InputItem] = iter_inputs(paths)
        append = False
        try:
            if resume and output is not None and Path(output).exists():
                done = done_paths(Path(output), fmt, columns, extra)
                items = _skip_done(items, done)
                append = True
                if not quiet:
                    note(f"resuming {output}: {len(done)} paths already scored")
            writer = _make_writer(fmt, output, columns, extra, append)
        except OutputError as exc:
            fail(str(exc))

        progress = Progress()
        results = _counted(scorer.score_items(items), progress)
        failed_path: str | None = None
        try:
            if group_by:
                for row in rank_groups(results, rank_column, top):
                    writer.write(row.result, row.extra())
            elif ranking:
                for result in sort_rows(results, rank_column, top):
                    writer.write(result)
            else:
                for result in results:
                    writer.write(result)
                    if strict and not result.ok:
                        failed_path = result.error
                        break
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


def register(app: typer.Typer) -> None:
    app.command("score")(score)


__all__ = ["register", "score"]
