"""``nima-rt rank SCORES...``: rank finished score files as ``nima-rt score --group-by/--rank-by`` would have.

The command parses its options into :class:`~nima_rt.runtime.rank_output.RankOptions` and makes one call,
:func:`~nima_rt.runtime.rank_output.rank_output`; what is left here is the exit policy and the stderr line.
"""

from __future__ import annotations

import typer

from nima_rt.cli import options
from nima_rt.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_NOTHING_SCORED,
    EXIT_USAGE,
    fail,
    note,
    ranked_line,
    silence_stdout,
)
from nima_rt.contract.choices import SettingError
from nima_rt.io.scores.output_file import OutputConflict
from nima_rt.io.scores.writers import OutputError
from nima_rt.runtime.rank_output import RankOptions, rank_output


def rank(
    scores: list[str] = typer.Argument(
        ..., help="Score files (CSV, JSONL, Parquet) and `--engine ray` output folders written by `nima-rt score`, "
        "local or URIs (s3://...); several are ranked together when they hold the same columns.",
        show_default=False,
    ),
    group_by: options.GroupBy = None,
    rank_by: options.RankBy = None,
    sort_by: options.RankColumn = None,
    top: options.Top = None,
    output: str | None = typer.Option(
        None, "--output", "-o", help="Output file, written whole at the end (default: stdout); it may be one of "
        "the SCORES files (ranked in place)."
    ),
    fmt: str | None = typer.Option(
        None, "--format", "-f", help="csv | jsonl | parquet (default: from --output, else csv)."
    ),
    no_formula_escape: bool = typer.Option(
        False, "--no-formula-escape", help="CSV: write cells starting with = + - @ as they are."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an --output that already exists (one of the SCORES is ranked in place "
        "without it)."
    ),
    quiet: options.Quiet = False,
) -> None:
    """Rank the rows of finished runs: best first (per listing with --group-by, the best one marked), carried
    manifest columns kept. Streams: memory is bounded by the largest listing when rows arrive grouped."""
    try:
        ranking = RankOptions(output=output, format=fmt, sort=True, sort_by=sort_by, rank_by=rank_by, top=top,
                              group_by=group_by, escape_formulas=not no_formula_escape, overwrite=overwrite)
    except SettingError as exc:
        raise typer.BadParameter(str(exc), param_hint=exc.option) from None
    try:
        summary = rank_output(scores, ranking)
    except OutputConflict as exc:  # an output that is not the rank's to replace unasked: the user chooses
        fail(str(exc), EXIT_USAGE)
    except (SettingError, OutputError) as exc:
        fail(str(exc))
    except BrokenPipeError:  # `| head` closed stdout: stop quietly
        silence_stdout()
        raise typer.Exit(EXIT_BROKEN_PIPE) from None
    if not quiet:
        note(ranked_line(summary))
    if summary.rows == 0:
        fail(f"no rows to rank in {', '.join(scores)}", EXIT_NOTHING_SCORED)


def register(app: typer.Typer) -> None:
    app.command("rank")(rank)


__all__ = ["rank", "register"]
