"""``nima-rt visualize CHECKPOINT... --layer N --channels 0-7 --output grid.png``: what channels of a
layer respond to, one row per checkpoint (torch is imported only when the command runs)."""

from __future__ import annotations

from pathlib import Path

import typer

from nima_rt.cli.common import fail, note, require_extra


def visualize(
    checkpoints: list[str] = typer.Argument(
        ..., help="Checkpoints (.pt) to compare, one grid row each; 'imagenet:BACKBONE' for ImageNet weights."
    ),
    layer: str = typer.Option("-1", "--layer", "-l", help="Layer index (see --list-layers) or module name."),
    channels: str = typer.Option("0-7", "--channels", "-c", help="Channels, e.g. '0,3,10-13'."),
    output: Path = typer.Option(Path("grid.png"), "--output", "-o", help="PNG file to write."),
    image_size: int = typer.Option(160, "--image-size", min=16, max=1024, help="Size of each optimised image."),
    steps: int = typer.Option(256, "--steps", min=0, help="Optimisation steps."),
    learning_rate: float = typer.Option(0.05, "--lr", min=1e-5, help="Adam learning rate."),
    pixels: bool = typer.Option(False, "--pixels", help="Optimise raw pixels instead of the Fourier basis."),
    no_transforms: bool = typer.Option(False, "--no-transforms", help="No jitter/scale/rotation."),
    seed: int = typer.Option(0, "--seed", help="Random seed (the same for every row)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch CPU threads (default: torch's)."),
    list_layers: bool = typer.Option(False, "--list-layers", help="Print the layers of the first checkpoint."),
) -> None:
    """Feature visualisation by activation maximisation (Fourier parametrisation, decorrelated
    colours, random jitter/scale/rotation), laid out with one row per checkpoint."""
    require_extra("torch", "train", "nima-rt visualize")
    from nima_rt.contract.spec import ContractError
    from nima_rt.train.evaluation.visualize import (
        VisualizeConfig,
        VisualizeError,
        feature_layers,
        layer_channels,
        load_subject,
        parse_channels,
        visualize_grid,
    )

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    try:
        if list_layers:
            network = load_subject(checkpoints[0]).network
            for entry in feature_layers(network):
                typer.echo(f"{entry.index}\t{entry.name}\t{layer_channels(network, entry)} channels")
            return
        wanted = parse_channels(channels)
        config = VisualizeConfig(image_size=image_size, steps=steps, learning_rate=learning_rate,
                                 fourier=not pixels, transforms=not no_transforms, seed=seed)
        subjects = [load_subject(spec) for spec in checkpoints]
        grid, rows = visualize_grid(subjects, layer, wanted, config)
    except (VisualizeError, ContractError) as exc:
        fail(str(exc))
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        grid.save(output)
    except OSError as exc:
        fail(f"{output}: cannot write the grid ({exc.strerror or exc})")
    for subject, row in zip(subjects, rows, strict=True):
        values = " ".join(f"{v:.3g}" for v in row.activations)
        note(f"{subject.label}: {row.layer} mean activations {values}")
    note(f"wrote {output} ({grid.width}x{grid.height}: {len(rows)} rows x {len(wanted)} channels)")


def register(app: typer.Typer) -> None:
    app.command("visualize")(visualize)


__all__ = ["register", "visualize"]
