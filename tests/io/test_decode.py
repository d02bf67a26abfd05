"""Decoding: every format and colour mode to RGB by the documented rule, and every bad input."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers.photos import photo_like
from PIL import Image

from nima_rt.contract.spec import ResizeSpec
from nima_rt.io.decode import DecodeError, DecodeOptions, Preprocess, decode_file, from_array, from_pil, to_rgb

SAME = [Preprocess(8, ResizeSpec())]  # 8x8 images decoded at 8x8: no resampling, exact pixels


def decode_one(path: Path, spec: list[Preprocess] = SAME, **options) -> np.ndarray:
    return decode_file(path, spec, DecodeOptions(**options))[0]


@pytest.mark.parametrize(
    "fmt,suffix",
    [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp"), ("BMP", ".bmp"), ("TIFF", ".tif"), ("GIF", ".gif")],
)
def test_every_format_decodes_to_rgb_uint8(tmp_path: Path, fmt: str, suffix: str) -> None:
    pixels = photo_like(3, 40, 30)
    path = tmp_path / f"x{suffix}"
    Image.fromarray(pixels).save(path, format=fmt)
    out = decode_file(path, [Preprocess(24, ResizeSpec())])[0]
    assert out.shape == (24, 24, 3) and out.dtype == np.uint8
    expected = np.asarray(Image.fromarray(pixels).resize((24, 24), Image.Resampling.BILINEAR), dtype=np.float32)
    tolerance = {"JPEG": 12, "WEBP": 12, "GIF": 40}.get(fmt, 0.01)  # lossy formats / GIF palette
    assert np.abs(out.astype(np.float32) - expected).mean() < tolerance


def test_gif_uses_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    out = decode_one(tmp_path / "anim.gif")
    assert tuple(out[4, 4]) == (255, 0, 0)


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere
    rgba[:4, :, 3] = 0  # top half fully transparent
    rgba[4:, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = decode_one(tmp_path / "a.png")
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[7, 7]) == (255, 0, 0)


def test_half_transparent_pixel_is_composited_on_white() -> None:
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 128))
    assert tuple(np.asarray(to_rgb(image))[0, 0]) == (127, 127, 127)


def test_la_and_palette_transparency_become_white(tmp_path: Path) -> None:
    la = Image.new("LA", (8, 8), (0, 0))
    assert tuple(np.asarray(to_rgb(la))[0, 0]) == (255, 255, 255)
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.info["transparency"] = 1
    palette.save(tmp_path / "p.png")
    assert tuple(decode_one(tmp_path / "p.png")[0, 0]) == (255, 255, 255)
    palette.info.pop("transparency")
    palette.save(tmp_path / "p_opaque.png")
    assert tuple(decode_one(tmp_path / "p_opaque.png")[0, 0]) == (10, 20, 30)


def test_sixteen_bit_greyscale_scales_to_eight_bits(tmp_path: Path) -> None:
    data = np.array([[0, 257, 32896, 65535]] * 8, dtype=np.uint16).repeat(2, axis=1)
    Image.fromarray(data).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as check:
        assert check.mode.startswith("I")  # really a 16-bit image on disk
    out = decode_one(tmp_path / "g16.png")
    assert list(out[0, ::2, 0]) == [0, 1, 128, 255]
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def float_image(values: list[float]) -> Image.Image:
    return Image.fromarray(np.array([values] * 2, dtype=np.float32), "F")


def test_float_rule_depends_on_the_images_own_range() -> None:
    grey = lambda values: list(np.asarray(to_rgb(float_image(values)))[0, :, 0])  # noqa: E731
    assert grey([0.0, 0.25, 0.5, 1.0]) == [0, 64, 128, 255]  # within 0..1: x255
    assert grey([0.0, 20.0, 127.6, 200.0]) == [0, 20, 128, 200]  # within 0..255: kept
    assert grey([-1.0, 0.0, 0.5, 2.0]) == [0, 85, 128, 255]  # other ranges: stretched min..max
    assert grey([10.0, 1000.0, 505.0, float("nan")]) == [0, 255, 128, 0]  # HDR values; NaN is the minimum
    assert grey([float("nan")] * 4) == [0, 0, 0, 0]


def test_int32_mode() -> None:
    ints = Image.fromarray(np.array([[0, 65535, 70000]] * 2, dtype=np.int32), "I")
    assert list(np.asarray(to_rgb(ints))[0, :, 0]) == [0, 255, 255]


def test_cmyk_bilevel_and_ycbcr_convert(tmp_path: Path) -> None:
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
    assert np.abs(decode_one(tmp_path / "c.jpg").astype(int) - 255).max() <= 2
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.tif")
    assert tuple(decode_one(tmp_path / "c.tif")[0, 0]) == (255, 0, 0)
    Image.new("1", (8, 8), 1).save(tmp_path / "b.png")
    assert tuple(decode_one(tmp_path / "b.png")[0, 0]) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red
    pixels[:, 20:] = (0, 0, 255)  # right half blue
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the left half ends on top
    image.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    out = decode_file(tmp_path / "rot.jpg", [Preprocess(20, ResizeSpec(policy="center_crop"))])[0]
    assert out[2, 10, 0] > 200 and out[2, 10, 2] < 60  # top: red
    assert out[17, 10, 2] > 200 and out[17, 10, 0] < 60  # bottom: blue


def test_jpeg_draft_is_close_to_full_decode(tmp_path: Path) -> None:
    big = np.asarray(Image.fromarray(photo_like(1, 160, 120)).resize((1600, 1200), Image.Resampling.BICUBIC))
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=90)
    spec_draft = [Preprocess(224, ResizeSpec(jpeg_draft=True))]
    spec_full = [Preprocess(224, ResizeSpec(jpeg_draft=False))]
    drafted = decode_file(tmp_path / "big.jpg", spec_draft)[0].astype(np.float64)
    full = decode_file(tmp_path / "big.jpg", spec_full)[0].astype(np.float64)
    assert not np.array_equal(drafted, full)  # the draft really took another path
    psnr = 10 * np.log10(255**2 / np.mean((drafted - full) ** 2))
    assert psnr > 30


def test_center_crop_keeps_the_middle() -> None:
    pixels = np.zeros((10, 30, 3), np.uint8)
    pixels[:, 10:20] = 200
    out = from_array(pixels, [Preprocess(10, ResizeSpec(policy="center_crop"))])[0]
    assert out.shape == (10, 10, 3) and (out == 200).all()


# -- bad input: one line naming the file, never an exception other than DecodeError ----------


def _minimal_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def expect_error(path: Path, message: str, **options) -> None:
    with pytest.raises(DecodeError) as info:
        decode_one(path, **options)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    expect_error(tmp_path / "empty.jpg", f"{tmp_path / 'empty.jpg'}: not an image file Pillow can read")


def test_text_and_html_with_image_names(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("just some text\n")
    (tmp_path / "page.png").write_text("<!doctype html><html><body>404</body></html>")
    expect_error(tmp_path / "notes.jpg", f"{tmp_path / 'notes.jpg'}: not an image file Pillow can read")
    expect_error(tmp_path / "page.png", f"{tmp_path / 'page.png'}: not an image file Pillow can read")


def test_truncated_jpeg(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(photo_like(2, 256, 256)).save(buffer, format="JPEG", quality=90)
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(DecodeError) as info:
        decode_one(tmp_path / "cut.jpg", [Preprocess(32, ResizeSpec(jpeg_draft=False))])
    assert str(info.value).startswith(f"{tmp_path / 'cut.jpg'}: cannot decode image (")
    assert "truncated" in str(info.value)


def test_decompression_bomb_limit_is_kept(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_minimal_png(30000, 30000))  # 900 MP claimed in a 57-byte file
    expect_error(bomb, f"{bomb}: image is 30000x30000 = 900000000 pixels, above the decompression-bomb limit of "
                       "89478485 pixels (--max-pixels)")
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    expect_error(
        tmp_path / "big.png",
        f"{tmp_path / 'big.png'}: image is 100x100 = 10000 pixels, above the decompression-bomb limit of 5000 pixels"
        " (--max-pixels)",
        max_pixels=5000,
    )


def test_missing_broken_symlink_and_directory(tmp_path: Path) -> None:
    expect_error(tmp_path / "nope.jpg", f"{tmp_path / 'nope.jpg'}: no such file (or a broken symlink)")
    os.symlink(tmp_path / "gone.jpg", tmp_path / "link.jpg")
    expect_error(tmp_path / "link.jpg", f"{tmp_path / 'link.jpg'}: no such file (or a broken symlink)")
    (tmp_path / "folder.jpg").mkdir()
    expect_error(tmp_path / "folder.jpg", f"{tmp_path / 'folder.jpg'}: is a directory, expected an image file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.jpg"
    Image.new("RGB", (8, 8)).save(path)
    path.chmod(0)
    expect_error(path, f"{path}: permission denied")


def test_unicode_and_multi_dot_names(tmp_path: Path) -> None:
    path = tmp_path / "фото.v2.final.JPEG"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path, format="PNG")  # content decides, not the name
    assert tuple(decode_one(path)[0, 0]) == (1, 2, 3)


def test_arrays_and_pil_images() -> None:
    grey = np.full((8, 8), 77, np.uint8)
    assert tuple(from_array(grey, SAME)[0][0, 0]) == (77, 77, 77)
    with pytest.raises(DecodeError, match=r"array input must be a numpy uint8 array, got float64"):
        from_array(np.zeros((8, 8, 3)), SAME)
    shape_message = r"array input must have shape \[H, W\], \[H, W, 3\] or \[H, W, 4\], got \(8, 8, 2\)"
    with pytest.raises(DecodeError, match=shape_message):
        from_array(np.zeros((8, 8, 2), np.uint8), SAME)
    assert tuple(from_pil(Image.new("L", (8, 8), 9), SAME)[0][0, 0]) == (9, 9, 9)


def test_one_open_serves_several_geometries(tmp_path: Path) -> None:
    Image.fromarray(photo_like(4, 64, 48)).save(tmp_path / "x.png")
    specs = [Preprocess(16, ResizeSpec()), Preprocess(32, ResizeSpec(policy="center_crop"))]
    small, large = decode_file(tmp_path / "x.png", specs)
    assert small.shape == (16, 16, 3) and large.shape == (32, 32, 3)
