"""``nima-rt build-dataset REFS_DIR --out DIR``: graded distortions of clean photos + human-score labels."""

from __future__ import annotations

from pathlib import Path

import typer

from nima_rt.cli.common import fail, note, require_extra


def build_dataset(
    references: Path = typer.Argument(..., help="Folder of clean reference photos (not searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (images/, labels.csv, train/val/test.csv)."),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="JSON manifest giving each photo's split and licence "
        "(written by `nima-rt fetch-references CACHE`); default: a seeded split by photo."),
    short_side: int = typer.Option(384, "--short-side", help="Downscale references so the shorter side is this."),
    crops: int = typer.Option(
        1, "--crops", min=0, help="Square crops per training/validation photo, besides the whole photo."),
    distortions: str | None = typer.Option(None, "--distortions", help="Comma-separated subset (default: all)."),
    val_share: float = typer.Option(0.15, "--val-share", help="Share of photos for validation (without --manifest)."),
    test_share: float = typer.Option(
        0.15, "--test-share", help="Share of photos held out for testing (without --manifest)."),
    seed: int = typer.Option(0, "--seed", help="Seed for splits, crop positions and noise."),
    workers: int = typer.Option(2, "--workers", "-w", min=1, help="Photos processed in parallel."),
) -> None:
    """Write clean + distorted images (13 distortion types x 5 levels) and their labels.

    Labels are human scores from KADID-10k (TID2013 for contrast) mapped to 1..10; see docs/reference/models.md.
    Train on the result with `nima-rt train --labels OUT/train.csv --val-labels OUT/val.csv`.
    """
    require_extra("scipy", "train", "build-dataset")
    require_extra("skimage", "train", "build-dataset")
    from nima_rt.train.datasets.build_dataset import BuildConfig, BuildError, find_references
    from nima_rt.train.datasets.build_dataset import build_dataset as build
    from nima_rt.train.datasets.distortions import DISTORTIONS
    from nima_rt.train.datasets.kadid import LabelSourceError
    from nima_rt.train.datasets.reference_catalog import ReferenceError

    try:
        names = tuple(n.strip() for n in distortions.split(",") if n.strip()) if distortions else tuple(DISTORTIONS)
        config = BuildConfig(short_side=short_side, crops={"train": crops, "val": crops, "test": 0},
                             distortions=names, seed=seed, val_share=val_share, test_share=test_share)
        photos = find_references(references, manifest, config)
        note(f"{len(photos)} reference photos: building {len(names)} distortions x {len(config.levels)} levels")
        result = build(photos, out, config, workers=workers)
    except (BuildError, ReferenceError, LabelSourceError) as exc:
        fail(str(exc))
    counts = ", ".join(f"{split} {result.references[split]} photos / {result.images[split]} images"
                       for split in ("train", "val", "test"))
    note(f"wrote {result.rows} labelled images to {result.out} ({counts})")


def register(app: typer.Typer) -> None:
    app.command("build-dataset")(build_dataset)


__all__ = ["build_dataset", "register"]
