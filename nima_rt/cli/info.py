"""``nima-rt info [MODEL]``: a model's metadata and which backends can run it here."""

from __future__ import annotations

import json

import typer

from nima_rt.cli.common import fail
from nima_rt.contract.choices import SettingError
from nima_rt.contract.messages import one_line
from nima_rt.contract.spec import ContractError
from nima_rt.io.model_file import bundled_models, load_model_file
from nima_rt.runtime.backends import BackendUnavailable, check_backend_settings, choose_backend, probe_backends
from nima_rt.runtime.precision import precision_note


def info(
    model: str | None = typer.Argument(None, help="Bundled model name or model file (default: the bundled default)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    backend: str | None = typer.Option(None, "--backend", help="Only this backend."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
) -> None:
    """Print a model's contract metadata and every backend as available / unavailable / chosen."""
    try:
        check_backend_settings(device, backend)
    except SettingError as exc:
        raise typer.BadParameter(str(exc), param_hint=exc.option) from None
    try:
        model_file = load_model_file(model)
        statuses = probe_backends(model_file, device, backend)
    except (ContractError, ValueError) as exc:
        fail(str(exc))
    chosen: str | None = None
    chosen_device = "cpu"
    choose_error: str | None = None
    try:
        choice = choose_backend(model_file, device, backend)
        chosen = choice.backend.name
        chosen_device = next((s.device for s in statuses if s.name == chosen), "cpu")
        choice.backend.close()
    except (BackendUnavailable, ContractError) as exc:
        choose_error = str(exc)
    backends = [
        {"name": s.name, "device": s.device, "available": s.available, "reason": s.reason, "chosen": s.name == chosen}
        for s in statuses
    ]
    if as_json:
        data = {
            "path": str(model_file.path),
            "format": model_file.format,
            "precision": model_file.precision,
            "sha256": model_file.sha256,
            "metadata": model_file.metadata.to_dict(),
            "backends": backends,
            "bundled": sorted(bundled_models()),
        }
        typer.echo(json.dumps(data, indent=2))
    else:
        meta = model_file.metadata
        typer.echo(f"model:        {model_file.path}")
        typer.echo(f"format:       {model_file.format}")
        note = precision_note(model_file, chosen_device)
        typer.echo(f"precision:    {model_file.precision}" + (f" (note: {note})" if note else ""))
        typer.echo(f"sha256:       {model_file.sha256}")
        typer.echo(f"name:         {meta.name}")
        typer.echo(f"kind:         {meta.kind}")
        typer.echo(f"input:        {meta.input_size}x{meta.input_size} RGB uint8, resize {meta.resize.policy} "
                   f"({meta.resize.interpolation}, jpeg draft {'on' if meta.resize.jpeg_draft else 'off'})")
        typer.echo(f"backbone:     {meta.backbone or '-'}")
        typer.echo(f"trained on:   {meta.trained_on or '-'}")
        typer.echo(f"created:      {meta.created or '-'}")
        if meta.metrics:
            typer.echo("metrics:      " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                   for k, v in sorted(meta.metrics.items())))
        if meta.licenses:
            typer.echo("licenses:     " + "; ".join(meta.licenses))
        if meta.notes:
            typer.echo("notes:        " + one_line(meta.notes))
        if meta.blind_spots:
            typer.echo("blind spots:  " + one_line(meta.blind_spots))
        typer.echo("backends:")
        for entry in backends:
            state = "chosen" if entry["chosen"] else ("available" if entry["available"] else "unavailable")
            reason = f" ({entry['reason']})" if entry["reason"] else ""
            typer.echo(f"  {entry['name']:<22} {entry['device']:<5} {state}{reason}")
    if choose_error is not None:
        fail(choose_error)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
