"""``nima-rt label serve | export``: collect ratings in a browser, export them as training labels."""

from __future__ import annotations

from pathlib import Path

import typer

from nima_rt.cli.common import fail, note

label_app = typer.Typer(
    name="label",
    help="Collect 1-10 ratings from several raters in a browser and export them as training labels.",
    no_args_is_help=True,
)


@label_app.command("serve")
def serve(
    images_dir: Path = typer.Argument(..., help="Folder of photos to rate (walked recursively)."),
    db: Path = typer.Option(..., "--db", help="Ratings database (SQLite; created when missing)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port (0 picks a free one)."),
    ratings_per_image: int = typer.Option(
        3, "--ratings-per-image", "-k", min=1, max=1000, help="Ratings to collect per photo, from distinct raters."
    ),
    token: str | None = typer.Option(
        None, "--token", envvar="NIMA_RT_LABEL_TOKEN", help="Require this token (raters open /?token=...)."
    ),
    prompt: str = typer.Option("How good does this photo look?", "--prompt", help="Question shown above the photo."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every request on stderr."),
) -> None:
    """Serve the rating page; every rating is committed to the database as it is given."""
    from nima_rt.apps.label.server import check_token, is_loopback, make_server
    from nima_rt.apps.label.store import LabelError, Store

    if not images_dir.is_dir():
        fail(f"{images_dir}: not a folder of images")
    try:
        check_token(token)
        store = Store.open(db, ratings_per_image=ratings_per_image)
    except LabelError as exc:
        fail(str(exc))
    with store:
        try:
            previous = store.meta("images_dir")
            scan = store.sync_images(images_dir)
            server = make_server(store, images_dir, host, port, token=token, prompt=prompt, verbose=verbose)
        except LabelError as exc:
            fail(str(exc))
        if previous is not None and previous != store.meta("images_dir"):
            note(f"note: {db} was last served from {previous}; paths are matched relative to the folder")
        outside = f", {scan.outside} links to outside the folder left out" if scan.outside else ""
        note(f"{images_dir}: {scan.found} images ({scan.added} new, {scan.missing} in the database but gone{outside})")
        if scan.found == 0:
            server.server_close()
            fail(f"{images_dir}: no image files to rate (looked for .jpg .png .webp .tif .bmp .gif ...)")
        if not is_loopback(host):
            guard = "raters need the token link" if token else "anyone who can reach it can rate and see the photos"
            note(f"warning: listening on {host}, reachable from other machines: {guard}; traffic is plain HTTP")
        link = server.url + (f"?token={token}" if token else "")
        note(f"rating page: {link}  ({ratings_per_image} ratings per image; Ctrl-C stops, nothing is lost)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            note("stopped")
        finally:
            server.server_close()


@label_app.command("export")
def export(
    db: Path = typer.Option(..., "--db", help="Ratings database written by `nima-rt label serve`."),
    out: str = typer.Option(..., "--out", "-o", help="Labels CSV to write ('-' for stdout)."),
    min_ratings: int = typer.Option(1, "--min-ratings", min=1, help="Drop images with fewer ratings."),
    min_overlap: int = typer.Option(3, "--min-overlap", min=2, help="Shared images a rater pair needs for Spearman."),
    relative: bool = typer.Option(False, "--relative", help="Paths relative to the images folder (default absolute)."),
    group_by: str | None = typer.Option(
        None, "--group-by", help="'parent': add a group column (the photo's folder) so splits keep folders whole."
    ),
    summary: Path | None = typer.Option(None, "--summary", help="Also write the agreement summary as JSON."),
    test_out: str | None = typer.Option(
        None, "--test-out", help="Hold out images (whole groups) into this CSV for a final evaluation."
    ),
    test_fraction: float = typer.Option(0.2, "--test-fraction", min=0.0, max=1.0, help="Share held out."),
    seed: int = typer.Option(0, "--seed", help="Seed of the held-out draw."),
) -> None:
    """Write one row per image (path + 10 vote counts) for `nima-rt train`, and report rater agreement."""
    from nima_rt.apps.label.export import export_labels
    from nima_rt.apps.label.store import LabelError

    if group_by not in (None, "parent"):
        raise typer.BadParameter("only 'parent' is supported", param_hint="--group-by")
    try:
        result = export_labels(
            db,
            out,
            min_ratings=min_ratings,
            min_overlap=min_overlap,
            absolute=not relative,
            group_by=group_by,
            test_out=test_out,
            test_fraction=test_fraction,
            seed=seed,
        )
    except LabelError as exc:
        fail(str(exc))
    if summary is not None:
        try:
            summary.write_text(result.summary.to_json() + "\n", encoding="utf-8")
        except OSError as exc:
            fail(f"{summary}: cannot write the summary ({exc.strerror or exc})")
    for line in result.summary.lines():
        note(line)
    if test_out is not None:
        note("; ".join(f"{path}: {count} images" for path, count in result.written))


def register(app: typer.Typer) -> None:
    app.add_typer(label_app, name="label")


__all__ = ["label_app", "register"]
