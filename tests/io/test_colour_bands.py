"""Colour conversions made band by band (nima_rt/io/colour.py) give the pixels the whole-image rule gives:
the float range is the whole image's, compositing and scaling are per pixel, and a greyscale image resized
as L then made RGB equals its RGB copy resized."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nima_rt.contract.spec import INTERPOLATIONS, ResizeSpec, resize_image
from nima_rt.io.colour import BAND_PIXELS, to_rgb

WIDTH, HEIGHT = 700, 1300  # 3.5 bands: the last one short


def test_the_image_spans_several_bands() -> None:
    assert WIDTH * HEIGHT > 3 * BAND_PIXELS


def test_transparency_is_composited_onto_white_in_every_band() -> None:
    rgba = np.random.default_rng(1).integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8)
    image = Image.fromarray(rgba, "RGBA")
    whole = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image).convert("RGB")
    assert np.array_equal(np.asarray(to_rgb(image)), np.asarray(whole))


def test_sixteen_bit_scaling_is_per_pixel() -> None:
    values = np.random.default_rng(2).integers(0, 65536, (HEIGHT, WIDTH), dtype=np.uint16)
    expected = np.rint(np.clip(values.astype(np.float32) / 257.0, 0, 255)).astype(np.uint8)
    out = to_rgb(Image.fromarray(values))
    assert out.mode == "RGB" and np.array_equal(np.asarray(out)[..., 1], expected)
    grey = to_rgb(Image.fromarray(values), grey_ok=True)
    assert grey.mode == "L" and np.array_equal(np.asarray(grey), expected)


def test_the_float_range_is_the_whole_images_not_a_bands() -> None:
    values = np.full((HEIGHT, WIDTH), 10.0, np.float32)
    values[0, 0], values[-1, -1] = -100.0, 900.0  # the range's ends in the first and the last band
    values[600, 5], values[900, 9] = np.nan, np.inf
    low, high = -100.0, 900.0
    filled = np.nan_to_num(values, nan=low, posinf=high, neginf=low)
    expected = np.rint(np.clip((filled - low) * (255.0 / (high - low)), 0, 255)).astype(np.uint8)
    out = to_rgb(Image.fromarray(values, "F"), grey_ok=True)
    assert np.array_equal(np.asarray(out), expected)
    assert np.asarray(out)[600, 5] == 0 and np.asarray(out)[900, 9] == 255


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("policy", ["squash", "center_crop"])
def test_a_grey_image_resized_as_l_equals_its_rgb_copy_resized(policy: str, interpolation: str) -> None:
    grey = Image.fromarray(np.random.default_rng(3).integers(0, 256, (331, 517), dtype=np.uint8), "L")
    spec = ResizeSpec(policy=policy, interpolation=interpolation)
    from_grey = resize_image(grey, 224, spec).convert("RGB")
    from_rgb = resize_image(grey.convert("RGB"), 224, spec)
    assert np.array_equal(np.asarray(from_grey), np.asarray(from_rgb))
