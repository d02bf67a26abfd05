"""Inputs that broke real runs: special files, formats decoded by accident or refused, hostile headers,
deep and looping folders. Every file gets one row whatever came before it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.hostile_files import blp1_embedding_jpeg, jpeg_declaring, psd_bytes
from helpers.paths import REPO
from PIL import Image

from nima_rt.contract.spec import ResizeSpec
from nima_rt.io.decode import (
    DecodeBudget,
    DecodeError,
    DecodeOptions,
    Preprocess,
    decode_bytes,
    decode_file,
    image_extensions,
    load_rgb,
    path_label,
)
from nima_rt.io.inputs import WalkReport, iter_inputs

SAME = [Preprocess(8, ResizeSpec())]


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter: Pillow's plugin registry starts empty, as in a new run."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=REPO, check=True)


def test_an_ico_after_a_tga_decodes_as_it_does_alone(tmp_path: Path) -> None:
    Image.new("RGBA", (32, 32), (200, 10, 10, 128)).save(tmp_path / "a.tga")
    pixels = np.random.default_rng(0).integers(0, 255, (128, 128, 4), dtype=np.uint8)
    # 128x128 at 32 bits: its directory entry's byte 16 is 1, a valid TGA depth, so TGA's plugin (no magic
    # number) accepts the header once it is registered before ICO's.
    Image.fromarray(pixels).save(tmp_path / "b.ico", sizes=[(128, 128)], bitmap_format="bmp")
    pillow = (
        "import sys; from PIL import Image\n"
        "for p in sys.argv[1:]:\n"
        "    with Image.open(p) as im: print(im.format)\n"
    )
    assert run_python(pillow, str(tmp_path / "a.tga"), str(tmp_path / "b.ico")).stdout.split() == ["TGA", "TGA"]
    ours = (
        "import sys; from nima_rt.io.decode import decode_file, Preprocess\n"
        "from nima_rt.contract.spec import ResizeSpec\n"
        "for p in sys.argv[1:]:\n"
        "    print(decode_file(p, [Preprocess(8, ResizeSpec())])[0].tobytes().hex())\n"
    )
    after_tga = run_python(ours, str(tmp_path / "a.tga"), str(tmp_path / "b.ico")).stdout.split()[1]
    alone = run_python(ours, str(tmp_path / "b.ico")).stdout.split()[0]
    assert after_tga == alone


def test_psd_flat_and_layered_read_their_merged_image(tmp_path: Path) -> None:
    merged = np.zeros((6, 8, 3), np.uint8)
    merged[...] = (10, 200, 30)
    layer = np.zeros((6, 8, 3), np.uint8)
    layer[...] = (250, 0, 0)
    (tmp_path / "flat.psd").write_bytes(psd_bytes(merged))
    (tmp_path / "layered.psd").write_bytes(psd_bytes(merged, layer))
    with Image.open(tmp_path / "layered.psd") as check:
        assert check.n_frames == 1  # the file really has a layer
        with pytest.raises(EOFError, match="attempt to seek outside sequence"):
            check.seek(0)  # what the decoder did before
    for name in ("flat.psd", "layered.psd"):
        out = decode_file(tmp_path / name, SAME)[0]
        assert (out == (10, 200, 30)).all()


def test_spider_and_pfm_float_images_use_the_float_rule(tmp_path: Path) -> None:
    values = np.array([[0.0, 100.0], [250.0, 1000.0]], np.float32)  # beyond 0..255: stretched min..max
    Image.fromarray(values, "F").save(tmp_path / "x.spi", format="SPIDER")
    Image.fromarray(values / 1000.0, "F").save(tmp_path / "x.pfm")  # within 0..1: x255
    spec = [Preprocess(2, ResizeSpec())]
    assert decode_file(tmp_path / "x.spi", spec)[0][..., 0].tolist() == [[0, 26], [64, 255]]
    assert decode_file(tmp_path / "x.pfm", spec)[0][..., 0].tolist() == [[0, 26], [64, 255]]
    hdr = np.full((4, 4), 3.0, np.float32)
    hdr[0, 0] = 0.0
    Image.fromarray(hdr, "F").save(tmp_path / "hdr.pfm")  # radiance above 1 is no longer a white frame
    out = decode_file(tmp_path / "hdr.pfm", [Preprocess(4, ResizeSpec())])[0][..., 0]
    assert out[0, 0] == 0 and (out.ravel()[1:] == 3).all()


def test_a_fifo_is_an_error_row_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    code = (
        "import sys; from nima_rt.io.decode import decode_file, DecodeError, Preprocess; "
        "from nima_rt.contract.spec import ResizeSpec\n"
        "try: decode_file(sys.argv[1], [Preprocess(8, ResizeSpec())])\n"
        "except DecodeError as exc: print(exc)\n"
    )
    out = run_python(code, str(fifo), timeout=30)  # opening a FIFO for reading blocks until a writer comes
    assert out.stdout.strip() == f"{fifo}: is a FIFO, not a regular file"
    assert [item.path for item in iter_inputs([tmp_path])] == [str(fifo)]  # walked, so it gets its row


def test_a_blp_hiding_a_huge_jpeg_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "texture.jpg"
    path.write_bytes(blp1_embedding_jpeg(12000, 12000))
    assert path.stat().st_size < 1000
    budget = DecodeBudget()
    with pytest.raises(DecodeError) as info:
        decode_file(path, SAME, budget=budget)
    assert str(info.value) == f"{path}: BLP texture declares 8x8 but embeds a 12000x12000 JPEG"
    assert budget.peak == 0  # refused from the header: nothing was reserved, nothing decoded


def test_a_decode_above_the_budget_is_refused_and_the_others_reserve_their_cost(tmp_path: Path) -> None:
    path = tmp_path / "grey.jpg"
    path.write_bytes(jpeg_declaring(2000, 1500))  # decodes at 3 MP in full, 250x188 drafted
    options = DecodeOptions(jpeg_draft=False)
    with pytest.raises(DecodeError) as refused:
        decode_file(path, SAME, options, DecodeBudget(limit=10 << 20))
    assert str(refused.value) == (f"{path}: decoding this 2000x1500 RGB image needs about 18 MB, above the memory "
                                  "budget of 10 MB (--memory-budget)")
    budget = DecodeBudget(limit=64 << 20)
    assert decode_file(path, SAME, options, budget)[0].shape == (8, 8, 3)
    assert 2000 * 1500 * 4 < budget.peak < 2000 * 1500 * 4 + (8 << 20) and budget.used == 0  # pixels and more; back
    drafted = DecodeBudget()
    decode_file(path, SAME, DecodeOptions(), drafted)
    assert drafted.peak < 250 * 188 * 4 + (7 << 20)  # the draft decodes at 1/8: the reservation follows it


def test_failures_name_the_file_on_one_line_whatever_it_is_called(tmp_path: Path) -> None:
    odd = os.fsdecode(b"caf\xe9 line\nbreak\r.jpg")  # not UTF-8, with a newline and a carriage return
    (tmp_path / odd).write_bytes(b"not an image")
    with pytest.raises(DecodeError) as info:
        decode_file(tmp_path / odd, SAME)
    assert str(info.value) == f"{tmp_path}/caf\\xe9 line\\nbreak\\r.jpg: not an image file Pillow can read"
    assert str(info.value).isprintable()
    assert path_label("plain/päth.jpg") == "plain/päth.jpg"


def test_load_rgb_is_the_one_opener(tmp_path: Path) -> None:
    pixels = np.zeros((20, 40, 4), np.uint8)
    pixels[..., 0] = 255
    pixels[:, 20:, 3] = 0  # right half transparent: white
    pixels[:, :20, 3] = 255
    image = Image.fromarray(pixels, "RGBA")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 CW to display: the left half ends on top
    image.save(tmp_path / "rot.png", exif=exif)
    rgb = load_rgb(tmp_path / "rot.png")
    assert rgb.mode == "RGB" and rgb.size == (20, 40)
    assert tuple(rgb.getpixel((10, 5))) == (255, 0, 0) and tuple(rgb.getpixel((10, 35))) == (255, 255, 255)
    with pytest.raises(DecodeError, match=r"image is 40x20 = 800 pixels, above the decompression-bomb limit of 100"):
        load_rgb(tmp_path / "rot.png", max_pixels=100)
    assert decode_bytes((tmp_path / "rot.png").read_bytes(), SAME).__len__() == 1


def test_the_walk_takes_every_format_pillow_reads(tmp_path: Path) -> None:
    extensions = image_extensions()
    for extension in (".ppm", ".pgm", ".psd", ".tga", ".ico", ".jpg", ".png", ".webp", ".tif", ".pfm"):
        assert extension in extensions
    assert ".pdf" not in extensions and ".txt" not in extensions
    Image.new("RGB", (8, 8)).save(tmp_path / "a.ppm")
    Image.new("L", (8, 8)).save(tmp_path / "b.PGM")
    Image.new("RGB", (8, 8)).save(tmp_path / "c.tga")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "d.json").write_text("{}")
    report = WalkReport()
    names = [Path(i.path).name for i in iter_inputs(tmp_path, report=report)]
    assert names == ["a.ppm", "b.PGM", "c.tga"]
    assert report.skipped_files == 2
    assert report.summary() == (
        f"skipped 2 file(s) without an image extension (e.g. {tmp_path / 'd.json'}, {tmp_path / 'notes.txt'})"
    )
    narrowed = [Path(i.path).name for i in iter_inputs([tmp_path], extensions=["ppm", ".TGA"])]
    assert narrowed == ["a.ppm", "c.tga"]


def test_folder_symlinks_are_walked_once(tmp_path: Path) -> None:
    top = tmp_path / "top"
    (top / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(top / "a" / "x.png")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.new("RGB", (8, 8)).save(outside / "y.png")
    (top / "b_link").symlink_to(outside, target_is_directory=True)  # followed
    (top / "a" / "loop").symlink_to(top, target_is_directory=True)  # a loop: not walked twice
    report = WalkReport()
    paths = [i.path for i in iter_inputs([top], report=report)]
    assert paths == [str(top / "a" / "x.png"), str(top / "b_link" / "y.png")]
    assert report.repeated_folders == [str(top / "a" / "loop")]


def test_a_very_deep_tree_is_walked_without_recursion(tmp_path: Path) -> None:
    depth = 1200  # deeper than the recursion limit set below: os.walk (recursive) ends in a RecursionError
    folder = tmp_path
    limit = sys.getrecursionlimit()
    try:
        for _ in range(depth):  # os.makedirs recurses too
            folder = folder / "d"
            folder.mkdir()
        Image.new("RGB", (8, 8)).save(folder / "deep.png")
        Image.new("RGB", (8, 8)).save(tmp_path / "top.png")
        sys.setrecursionlimit(1000)
        walked = [i.path for i in iter_inputs([tmp_path])]
        sys.setrecursionlimit(limit)
        assert walked == [str(tmp_path / "top.png"), str(folder / "deep.png")]
    finally:  # pytest's clean-up (shutil.rmtree) recurses: take the tree down bottom-up here
        sys.setrecursionlimit(limit)
        (folder / "deep.png").unlink(missing_ok=True)
        while folder != tmp_path:
            folder.rmdir()
            folder = folder.parent


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists folders whatever their permissions")
def test_an_unreadable_folder_is_an_error_item(tmp_path: Path) -> None:
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked").chmod(0)
    try:
        items = list(iter_inputs([tmp_path]))
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert items[0].error == f"{tmp_path / 'locked'}: cannot list folder (Permission denied)"


def test_files_opened_for_decoding_are_closed(tmp_path: Path) -> None:
    import gc
    import warnings

    Image.new("RGB", (64, 48), (1, 2, 3)).save(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(b"not an image")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        decode_file(tmp_path / "a.jpg", SAME)
        with pytest.raises(DecodeError):
            decode_file(tmp_path / "b.jpg", SAME)
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
