"""``nima-rt score ... --engine ray``: the command-line side of the Ray Data pipeline.

Called from :mod:`nima_rt.cli.score`; checks the options that mean something on one machine only,
runs :func:`~nima_rt.apps.distributed.pipeline.score_with_ray` and reports in the CLI's style.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

import typer

from nima_rt.cli.common import fail, note, ranked_line, require_extra
from nima_rt.contract.messages import one_line
from nima_rt.io.decode import DecodeOptions
from nima_rt.io.scores.writers import OutputError, format_for
from nima_rt.runtime.rank_output import RankOptions

TEXT_SUFFIXES = (".csv", ".jsonl", ".json")  # an -o that names a text file, which Ray does not write


def score_ray(
    *,
    engine: str,
    paths: Sequence[str],
    models: Sequence[str] | None,
    output: str | None,
    fmt: str | None,
    address: str | None,
    batch_size: int,
    threads: int | None,
    device: str,
    backend: str | None,
    ranking: RankOptions | None,
    single_machine_options: dict[str, bool],
    quiet: bool,
    ray_logs: bool = False,
    decode: DecodeOptions | None = None,
) -> None:
    """Run ``nima-rt score`` on Ray; ``single_machine_options`` maps option names to whether they were given;
    ``ranking`` (sort, top, group-by, rank-by) ranks the complete folder into ``OUT/_ranked.parquet``."""
    if engine != "ray":
        raise typer.BadParameter(f"{'--address' if address is not None else '--ray-logs'} needs --engine ray",
                                 param_hint="--address" if address is not None else "--ray-logs")
    given = [name for name, used in single_machine_options.items() if used]
    if given:
        raise typer.BadParameter(
            f"{', '.join(given)} work(s) with --engine local only (the Ray engine takes folders, files and "
            "manifests as PATHs, decodes on the cluster's CPUs and stops for nothing)",
            param_hint="--engine",
        )
    if output is None or output == "-":
        raise typer.BadParameter("--engine ray needs --output DIR (a folder of Parquet shards)", param_hint="--output")
    suffix = PurePosixPath(output.rstrip("/")).suffix.lower()
    if suffix in TEXT_SUFFIXES and not output.endswith("/"):
        stem = output[: -len(suffix)]
        raise typer.BadParameter(
            f"--engine ray writes a folder of Parquet shards, not a {suffix[1:].upper()} file: give a folder (e.g. "
            f"-o {stem}/) and make the {suffix[1:].upper()} with `nima-rt rank {stem}/ -o {output}`",
            param_hint="--output")
    try:
        chosen = format_for(None, fmt)
    except OutputError as exc:
        raise typer.BadParameter(str(exc), param_hint="--format") from None
    if fmt is not None and chosen != "parquet":
        raise typer.BadParameter("--engine ray writes Parquet only (`nima-rt rank OUT/ -f csv` makes a CSV of it)",
                                 param_hint="--format")
    require_extra("ray", "ray", "--engine ray")

    import ray.exceptions

    from nima_rt.apps.distributed.inputs import InputError
    from nima_rt.apps.distributed.pipeline import IncompleteRun, score_with_ray
    from nima_rt.apps.distributed.plan import PlanError, RayScoreConfig
    from nima_rt.contract.choices import SettingError
    from nima_rt.contract.spec import ContractError
    from nima_rt.runtime.backends import BackendUnavailable

    try:
        config = RayScoreConfig(
            output=output, models=tuple(models) if models else (None,), address=address,
            batch_size=batch_size, threads=threads, device=device, backend=backend, ranking=ranking,
            ray_logs=ray_logs, decode=decode or DecodeOptions(),
        )
    except SettingError as exc:  # a setting the config refuses (checked there, once)
        raise typer.BadParameter(str(exc), param_hint=exc.option) from None
    try:
        summary = score_with_ray(list(paths), config, log=None if quiet else note)
    except (ContractError, BackendUnavailable, InputError, OutputError, PlanError, IncompleteRun, ValueError,
            ImportError) as exc:  # SettingError (a rank rule or grouping the run cannot serve) is a ValueError
        fail(str(exc))
    except ConnectionError as exc:  # --address names no reachable cluster
        fail(f"--address {address}: {one_line(exc)}")
    except ray.exceptions.RayError as exc:  # e.g. an actor that cannot open the model: its first line says why
        lines = [line for line in str(exc).splitlines() if line.strip()]
        fail(f"ray: {lines[-1] if lines else type(exc).__name__}")
    if not quiet:
        rate = summary.rows / summary.elapsed_s if summary.elapsed_s > 0 else 0.0
        note(
            f"scored {summary.rows - summary.failed}, failed {summary.failed} in {summary.elapsed_s:.1f} s "
            f"({rate:.1f} images/s); {summary.written_shards} shard(s) written, {summary.skipped_shards} "
            f"already complete, in {summary.output}"
        )
        if summary.ranked is not None:
            note(ranked_line(summary.ranked))
