"""``nima-rt models``: the models this install can score with by name, with their licences."""

from __future__ import annotations

import json

import typer

from nima_rt.cli.common import fail
from nima_rt.contract.messages import one_line
from nima_rt.contract.spec import ContractError
from nima_rt.io.model_file import DEFAULT_MODELS, bundled_models, load_model_file


def models(as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text.")) -> None:
    """List the bundled models (name, kind, input, what they were trained on, licence); `nima-rt info NAME`
    for everything a model records."""
    rows = []
    try:
        for name, path in bundled_models().items():
            meta = load_model_file(name).metadata
            rows.append({"name": name, "default": name in DEFAULT_MODELS, "kind": meta.kind,
                         "input_size": meta.input_size, "trained_on": meta.trained_on, "licenses": meta.licenses,
                         "blind_spots": meta.blind_spots, "path": str(path)})
    except ContractError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps({"bundled": rows}, indent=2))
        return
    if not rows:
        typer.echo("no models are bundled with this install: pass --model FILE.onnx (docs/reference/models.md)")
    for row in rows:
        default = " (default)" if row["default"] else ""
        typer.echo(f"{row['name']}{default}: {row['kind']}, {row['input_size']}x{row['input_size']}, "
                   f"trained on {row['trained_on'] or '-'}  [{row['path']}]")
        licenses = row["licenses"]
        more = f" (+{len(licenses) - 1} more: nima-rt info {row['name']})" if len(licenses) > 1 else ""
        typer.echo(f"  licence: {licenses[0] if licenses else 'not recorded'}{more}")
        if row["blind_spots"]:
            typer.echo(f"  blind spots: {one_line(row['blind_spots'])}")
    typer.echo("any model file exported by `nima-rt export` works too: --model FILE.onnx (or NAME=FILE.onnx)")


def register(app: typer.Typer) -> None:
    app.command("models")(models)
