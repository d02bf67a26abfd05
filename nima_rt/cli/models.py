"""``nima-rt models``: the models this install can score with by name."""

from __future__ import annotations

import json

import typer

from nima_rt.cli.common import fail
from nima_rt.contract.spec import ContractError
from nima_rt.io.model_file import AESTHETIC_HELP, DEFAULT_MODEL, bundled_models, load_model_file


def models(as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text.")) -> None:
    """List the bundled models (name, kind, input, what they were trained on); `nima-rt info NAME` for more."""
    rows = []
    try:
        for name, path in bundled_models().items():
            meta = load_model_file(name).metadata
            rows.append({"name": name, "default": name == DEFAULT_MODEL, "kind": meta.kind,
                         "input_size": meta.input_size, "trained_on": meta.trained_on, "path": str(path)})
    except ContractError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps({"bundled": rows, "aesthetic": AESTHETIC_HELP}, indent=2))
        return
    if not rows:
        typer.echo("no models are bundled with this install: pass --model FILE.onnx (docs/reference/models.md)")
    for row in rows:
        default = " (default)" if row["default"] else ""
        typer.echo(f"{row['name']}{default}: {row['kind']}, {row['input_size']}x{row['input_size']}, "
                   f"trained on {row['trained_on'] or '-'}  [{row['path']}]")
    typer.echo(f"aesthetic: {AESTHETIC_HELP}")
    typer.echo("any model file exported by `nima-rt export` works too: --model FILE.onnx (or NAME=FILE.onnx)")


def register(app: typer.Typer) -> None:
    app.command("models")(models)
