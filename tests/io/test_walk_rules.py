"""What a folder walk and a path list take (issue 25, items 14 and 15): a report's own thumbnails are never
scored as a listing, `--ext jpg` takes every extension of the JPEG format, HEIC/HEIF photos are read with the
optional 'heif' extra (and its absence is named), whitespace-only list lines are not paths."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import REPO
from PIL import Image
from typer.testing import CliRunner

from nima_rt.cli import app
from nima_rt.io.inputs import SKIP_MARKER, WalkReport, iter_inputs, normalize_extensions, read_path_list


def names(folder: Path, **kwargs: object) -> list[str]:
    return [os.path.relpath(item.path, folder) for item in iter_inputs([folder], **kwargs)]  # type: ignore[arg-type]


def test_a_report_inside_the_photo_folder_is_not_scored_by_the_next_run(tiny_model: Path, photo_dir: Path) -> None:
    runner = CliRunner()
    page = photo_dir / "report.html"
    first = runner.invoke(app, ["report", str(photo_dir), "-m", str(tiny_model), "-o", str(page)])
    assert first.exit_code == 0, first.output
    thumbnails = photo_dir / "report_files"
    assert len(list(thumbnails.glob("*.jpg"))) == 6 and (thumbnails / SKIP_MARKER).is_file()
    report = WalkReport()
    assert len(list(iter_inputs([photo_dir], report=report))) == 6  # before: 12, the thumbnails a listing
    assert report.marked_folders == [str(thumbnails)]
    second = runner.invoke(app, ["score", str(photo_dir), "-m", str(tiny_model), "-f", "jsonl"])
    assert len(second.stdout.splitlines()) == 6
    assert f"left out 1 folder(s) marked .nima-rt-skip (e.g. {thumbnails})" in second.stderr
    again = runner.invoke(app, ["report", str(photo_dir), "-m", str(tiny_model), "-o", str(page)])
    assert again.exit_code == 0 and len(list(thumbnails.glob("*.jpg"))) == 6  # the same six, no thumbnails of them


def test_any_folder_with_the_marker_is_left_out_with_its_subfolders(tmp_path: Path) -> None:
    for relative in ("keep/a.jpg", "drop/b.jpg", "drop/deeper/c.jpg"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / relative)
    (tmp_path / "drop" / SKIP_MARKER).write_text("")
    assert names(tmp_path) == ["keep/a.jpg"]


def test_ext_takes_every_spelling_of_the_extension(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.JPEG", "c.jpeg", "d.JPE", "e.jfif", "f.png", "g.tif", "h.TIFF", "i.webp", "j.pgm"):
        (tmp_path / name).write_bytes(b"")
    assert names(tmp_path, extensions=["jpg"]) == ["a.jpg", "b.JPEG", "c.jpeg", "d.JPE", "e.jfif"]  # before: a.jpg
    assert names(tmp_path, extensions=["JPEG"]) == names(tmp_path, extensions=["jpg"])
    assert names(tmp_path, extensions=[".tiff", "png"]) == ["f.png", "g.tif", "h.TIFF"]
    assert names(tmp_path, extensions=["ppm", "webp"]) == ["i.webp"]  # spellings, not formats: no .pgm
    assert normalize_extensions(["xyz"]) == frozenset({".xyz"})
    with pytest.raises(ValueError, match="give at least one"):
        normalize_extensions([" ", "."])


def test_whitespace_only_list_lines_are_skipped_names_are_kept() -> None:
    listing = b"a.jpg\n   \n\t\r\n\r\n\n b.jpg \nc.jpg\r\n"
    assert list(read_path_list(io.BytesIO(listing))) == ["a.jpg", " b.jpg ", "c.jpg"]


def test_paths_from_a_list_with_blank_lines_gives_no_error_row(tiny_model: Path, photo_dir: Path,
                                                               tmp_path: Path) -> None:
    photo = next(photo_dir.rglob("*.jpg"))
    listing = tmp_path / "list.txt"
    listing.write_bytes(f"{photo}\n  \n\t\n".encode())
    result = CliRunner().invoke(app, ["score", "--paths-from", str(listing), "-m", str(tiny_model), "-f", "jsonl"])
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0 and [row["error"] for row in rows] == [None]  # before: a second row, an error


def test_the_walk_names_the_extra_that_reads_heic(tmp_path: Path) -> None:
    """Without the plugin (a fresh interpreter whose only optional plugin is a module that does not exist),
    a HEIC photo is skipped by the walk and refused when named, both saying which extra reads it."""
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(REPO / "tests" / "fixtures" / "heic" / "IMG_0001.HEIC", folder)
    absent = ("nima_rt_absent_plugin", "register", (".heic", ".heif"), "heif", "HEIC/HEIF photos")
    code = (
        "import sys; import nima_rt.io.plugins as p\n"
        f"p.PLUGINS = (p.OptionalPlugin{absent!r},)\n"
        "from nima_rt.io.inputs import WalkReport, iter_inputs\n"
        "from nima_rt.io.decode import decode_file, DecodeError, Preprocess\n"
        "from nima_rt.contract.spec import ResizeSpec\n"
        "report = WalkReport(); print(len(list(iter_inputs([sys.argv[1]], report=report)))); print(report.summary())\n"
        "try: decode_file(sys.argv[1] + '/IMG_0001.HEIC', [Preprocess(8, ResizeSpec())])\n"
        "except DecodeError as exc: print(exc)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, env=env,
                          timeout=60, check=True)
    count, summary, failure = done.stdout.strip().splitlines()
    hint = "HEIC/HEIF photos need the optional 'heif' extra: pip install 'nima-rt[heif]'"
    photo = folder / "IMG_0001.HEIC"
    assert count == "0"
    assert summary == f"skipped 1 file(s) without an image extension (e.g. {photo}); {hint}"
    assert failure == f"{photo}: not an image file Pillow can read ({hint})"


def test_heic_photos_are_read_with_the_heif_extra(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("pillow_heif", reason="the 'heif' extra (pillow-heif) is not installed")
    from nima_rt.contract.spec import ResizeSpec
    from nima_rt.io.decode import Preprocess, decode_file

    fixture = REPO / "tests" / "fixtures" / "heic" / "IMG_0001.HEIC"
    assert names(fixture.parent) == ["IMG_0001.HEIC"]
    assert names(fixture.parent, extensions=["heif"]) == ["IMG_0001.HEIC"]  # one format, every extension
    pixels = decode_file(fixture, [Preprocess(16, ResizeSpec())])[0]
    assert np.abs(pixels.astype(int) - (200, 60, 40)).max() <= 12  # the fixture is a flat (200, 60, 40)
    result = CliRunner().invoke(app, ["score", str(fixture), "-m", str(tiny_model), "-f", "jsonl"])
    assert result.exit_code == 0 and json.loads(result.stdout)["error"] is None
