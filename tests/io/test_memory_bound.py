"""Peak memory is bounded per file and per run, not by what files declare (docs/guide/runtime.md#memory-budget).

Measured in a fresh interpreter by its own peak RSS (VmHWM in /proc/self/status), with the bundled default
model and default settings, over files made here: tiny hostile files, hundreds of fuzzed ones, single valid
files that once took a run to 1-3 GB, BLP textures declaring 84 million pixels. The memory estimate the
decoder reserves is checked against the memory each kind of decode really takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.hostile_files import (
    blp2_declaring,
    bmp_rle8_declaring,
    flat_png,
    flat_tiff,
    fuzzed_corpus,
    hostile_corpus,
    jpeg_declaring,
)
from helpers.paths import REPO
from PIL import Image

LIMIT_MB = 600

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for the peak RSS")

SCORE_AND_MEASURE = """
import json, sys
from nima_rt import Scorer
with Scorer() as scorer:
    rows = [(r.path, r.error) for r in scorer.score_paths(sys.argv[1:])]
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({"rows": rows, "vmhwm_kb": int(status["VmHWM"].split()[0])}))
"""


def score_and_measure(*paths: Path) -> tuple[dict[str, str | None], float, str]:
    """Score ``paths`` in a fresh interpreter with default settings: rows (path -> error), peak RSS in MB, stderr."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", SCORE_AND_MEASURE, *map(str, paths)], capture_output=True, text=True,
                         env=env, cwd=REPO, timeout=600, check=True)
    result = json.loads(out.stdout)
    return dict(result["rows"]), result["vmhwm_kb"] / 1024, out.stderr


def test_hostile_tiny_files_keep_peak_memory_under_600_mb(tmp_path: Path) -> None:
    corpus = hostile_corpus(4)
    for name, data in corpus.items():
        (tmp_path / name).write_bytes(data)
    assert sum(len(d) for d in corpus.values()) < 20_000  # 20 files, none over 1 KB
    rows, peak_mb, _ = score_and_measure(tmp_path)
    assert len(rows) == len(corpus)  # every file one row
    failed = {Path(p).name.rsplit("_", 1)[0] for p, error in rows.items() if error}
    assert failed == {"blp", "rle_cut", "png"}
    assert all(rows[str(tmp_path / f"blp_{i}.jpg")].endswith("embeds a 12000x12000 JPEG") for i in range(4))
    assert peak_mb < LIMIT_MB, f"peak RSS {peak_mb:.0f} MB"


def test_hundreds_of_fuzzed_files_keep_peak_memory_under_600_mb(tmp_path: Path) -> None:
    corpus = fuzzed_corpus(300)
    for name, data in corpus.items():
        (tmp_path / name).write_bytes(data)
    rows, peak_mb, stderr = score_and_measure(tmp_path)
    assert len(rows) == 300  # every file one row
    errors = [error for error in rows.values() if error]
    assert 50 < len(errors) < 300 and all("\n" not in error for error in errors)
    assert any("above the memory budget of 320 MB (--memory-budget)" in error for error in errors)
    assert "DecompressionBomb" not in stderr and "Traceback" not in stderr  # Pillow's own size check never runs
    assert peak_mb < LIMIT_MB, f"peak RSS {peak_mb:.0f} MB"


@pytest.mark.parametrize(("name", "make", "expected"), [
    # issue 25 item 5: each of these single valid files took a run to 1-3.3 GB
    ("tall.png", lambda: flat_png(1, 89_000_000, color_type=0),  # 173 KB, 712 MB of row pointers per copy
     "decoding this 1x89000000 L image needs about 770 MB, above the memory budget of 320 MB (--memory-budget)"),
    ("rgba.png", lambda: flat_png(9400, 9400, color_type=6),
     "decoding this 9400x9400 RGBA image needs about 689 MB, above the memory budget of 320 MB (--memory-budget)"),
    ("float.tif", lambda: flat_tiff(9400, 9400),
     "decoding this 9400x9400 F image needs about 681 MB, above the memory budget of 320 MB (--memory-budget)"),
    ("grey16.png", lambda: flat_png(9400, 9400, color_type=0, bit_depth=16), None),  # fits: scored
])
def test_single_large_files_are_refused_or_scored_under_600_mb(tmp_path: Path, name: str, make, expected) -> None:
    path = tmp_path / name
    path.write_bytes(make())
    rows, peak_mb, _ = score_and_measure(path)
    assert rows[str(path)] == (None if expected is None else f"{path}: {expected}")
    assert peak_mb < LIMIT_MB, f"peak RSS {peak_mb:.0f} MB"


def test_blp_textures_declaring_84_million_pixels_are_refused_before_allocating(tmp_path: Path) -> None:
    paths = [tmp_path / f"fuzzed_{index}.blp" for index in range(2)]
    for path in paths:
        path.write_bytes(blp2_declaring(1, 84_000_000))
        assert path.stat().st_size == 284
    rows, peak_mb, _ = score_and_measure(*paths)
    for path in paths:  # Pillow allocated the declared image first: 822 MB for these two before the fix
        assert rows[str(path)] == (f"{path}: decoding this 1x84000000 RGB image needs about 1929 MB, above the memory "
                                   "budget of 320 MB (--memory-budget)")
    assert peak_mb < 300, f"peak RSS {peak_mb:.0f} MB"


ESTIMATE_AND_MEASURE = """
import ctypes, json, sys
from nima_rt.contract.spec import ResizeSpec
from nima_rt.io.decode import DecodeBudget, DecodeOptions, Preprocess, decode_file

def status(key):
    return int(dict(line.split(":", 1) for line in open("/proc/self/status"))[key].split()[0]) * 1024

results = {}
for path, warm, policy, interpolation, draft in json.loads(sys.argv[1]):
    specs = [Preprocess(224, ResizeSpec(policy=policy, interpolation=interpolation))]
    options = DecodeOptions(jpeg_draft=draft, decode_memory=1 << 40, max_pixels=10**10)
    decode_file(warm, specs, options, DecodeBudget(1 << 40))  # the codec's library loaded and warm
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # what earlier cases freed goes back: this one cannot reuse it
    open("/proc/self/clear_refs", "w").write("5")  # the peak RSS starts again from here
    before, budget = status("VmRSS"), DecodeBudget(1 << 40)
    decode_file(path, specs, options, budget)
    results[path] = [status("VmHWM") - before, budget.peak]
print(json.dumps(results))
"""


def _can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _can_reset_peak(), reason="needs /proc/self/clear_refs to reset the peak RSS")
def test_the_reserved_estimate_covers_what_each_kind_of_decode_takes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (1500, 2000, 3), dtype=np.uint8))
    grey = Image.fromarray(rng.integers(0, 255, (1500, 2000), dtype=np.uint8), "L")
    turned = Image.Exif()
    turned[0x0112] = 6
    cases = {  # name: (write it, resize policy, interpolation, JPEG draft)
        "base.jpg": (lambda p: rgb.save(p, quality=90), "squash", "bilinear", False),
        "drafted.jpg": (lambda p: rgb.save(p, quality=90), "squash", "bilinear", True),
        "progressive.jpg": (lambda p: rgb.save(p, quality=90, progressive=True), "squash", "bilinear", True),
        "turned.jpg": (lambda p: rgb.save(p, quality=90, exif=turned.tobytes()), "center_crop", "bicubic", False),
        "cmyk.jpg": (lambda p: rgb.convert("CMYK").save(p), "squash", "bilinear", False),
        "grey.jpg": (lambda p: grey.save(p), "squash", "lanczos", False),
        "bomb.jpg": (lambda p: p.write_bytes(jpeg_declaring(9000, 6000, progressive=True)), "squash", "bilinear",
                     True),
        "rgb.png": (lambda p: rgb.save(p, compress_level=1), "center_crop", "lanczos", False),
        "rgba.png": (lambda p: rgb.convert("RGBA").save(p, compress_level=1), "squash", "bilinear", False),
        "palette.png": (lambda p: rgb.convert("P").save(p, transparency=0), "squash", "bilinear", False),
        "grey16.png": (lambda p: Image.fromarray((rng.random((1500, 2000)) * 65535).astype(np.uint16)).save(p),
                       "squash", "bilinear", False),
        "tall.png": (lambda p: p.write_bytes(flat_png(1, 4_000_000, color_type=0)), "squash", "bilinear", False),
        "wide.png": (lambda p: p.write_bytes(flat_png(4_000_000, 1)), "squash", "nearest", False),
        "float.tif": (lambda p: p.write_bytes(flat_tiff(2000, 1500)), "squash", "bilinear", False),
        "rgb.tif": (lambda p: rgb.save(p, compression="tiff_deflate"), "squash", "bilinear", False),
        "rle.bmp": (lambda p: p.write_bytes(bmp_rle8_declaring(2000, 1500)), "squash", "bilinear", False),
        "rgb.webp": (lambda p: rgb.save(p, quality=80), "squash", "bilinear", False),
        "palette.gif": (lambda p: rgb.convert("P").save(p), "squash", "box", False),
    }
    jobs = []
    for name, (write, policy, interpolation, draft) in cases.items():
        path, warm = tmp_path / name, tmp_path / f"warm{Path(name).suffix}"
        write(path)
        if not warm.exists():
            Image.new("RGB", (64, 48), (10, 20, 30)).save(warm)
        jobs.append([str(path), str(warm), policy, interpolation, draft])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", ESTIMATE_AND_MEASURE, json.dumps(jobs)], capture_output=True,
                         text=True, env=env, cwd=REPO, timeout=600, check=True)
    for path, (taken, reserved) in json.loads(out.stdout).items():
        name = Path(path).name
        assert taken <= reserved, f"{name}: took {taken >> 20} MB, reserved {reserved >> 20} MB"
        assert reserved <= 3 * taken + (8 << 20), f"{name}: reserved {reserved >> 20} MB for {taken >> 20} MB"
