"""The pixel limit (issue 25 item 8): checked by nima-rt on the size a file decodes to, raised with
--max-pixels, and Pillow's own check never prints its DecompressionBombWarning (with its source line) on the
user's stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers.hostile_files import flat_tiff, jpeg_declaring
from helpers.paths import REPO


def score(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nima_rt", "score", *map(str, args), "-q"], capture_output=True,
                          text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)


def test_a_100_mp_camera_jpeg_scores_drafted_and_needs_max_pixels_in_full(tiny_model: Path, tmp_path: Path) -> None:
    photo = tmp_path / "gfx100.jpg"
    photo.write_bytes(jpeg_declaring(11648, 8736))  # a 102 MP medium-format frame (over Pillow's 89.5 MP)
    drafted = score(photo, "-m", tiny_model)
    assert drafted.returncode == 0 and drafted.stderr == ""  # decoded at 1/8 scale: 1456x1092
    assert drafted.stdout.splitlines()[1].startswith(f"{photo},,")
    full = score(photo, "-m", tiny_model, "--full-decode")
    assert full.returncode == 3 and "DecompressionBomb" not in full.stderr
    assert f"{photo}: image is 11648x8736 = 101756928 pixels, above the decompression-bomb limit of 89478485 " \
           "pixels (--max-pixels)" in full.stdout
    # the default job: the bundled aesthetic model decodes JPEGs in full (its metadata), so it needs both options
    default = score(photo)
    assert "101756928 pixels, above the decompression-bomb limit of 89478485 pixels (--max-pixels)" in default.stdout
    raised = score(photo, "--max-pixels", "110000000")
    assert "image needs about 395 MB, above the memory budget of 320 MB (--memory-budget)" in raised.stdout


def test_max_pixels_raises_the_limit_and_pillow_stays_quiet(tiny_model: Path, tmp_path: Path) -> None:
    scan = tmp_path / "scan.tif"
    scan.write_bytes(flat_tiff(10000, 9500, float_values=False))  # 95 MP of 8-bit grey (Pillow checks TIFFs again)
    refused = score(scan, "-m", tiny_model)
    assert refused.returncode == 3
    assert f"{scan}: image is 10000x9500 = 95000000 pixels, above the decompression-bomb limit of 89478485 pixels " \
           "(--max-pixels)" in refused.stdout
    allowed = score(scan, "-m", tiny_model, "--max-pixels", "100000000")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stderr == ""  # was: PIL/Image.py:...: DecompressionBombWarning: Image size (95000000 pixels) ...
    assert allowed.stdout.splitlines()[1].startswith(f"{scan},,")
    bad = score(scan, "-m", tiny_model, "--max-pixels", "0")
    assert bad.returncode == 2


def test_memory_budget_admits_a_decode_the_default_refuses(tiny_model: Path, tmp_path: Path) -> None:
    scan = tmp_path / "scan.tif"
    scan.write_bytes(flat_tiff(7500, 6000))  # 45 MP of float: about 350 MB to decode (one 180 MB strip)
    refused = score(scan, "-m", tiny_model)
    assert f"{scan}: decoding this 7500x6000 F image needs about " in refused.stdout
    assert "above the memory budget of 320 MB (--memory-budget)" in refused.stdout
    allowed = score(scan, "-m", tiny_model, "--memory-budget", "512")
    assert allowed.returncode == 0 and allowed.stdout.splitlines()[1].startswith(f"{scan},,")
