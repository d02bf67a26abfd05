"""Every Pillow mode to 8-bit RGB (or 8-bit greyscale): the colour-mode rule the runtime, training and
export share.

Rule (docs/guide/runtime.md):
- transparent images (RGBA, LA, PA, P or L/RGB with a transparency key) are composited onto white;
- 16-bit and 32-bit integer greyscale (I;16*, I) are scaled from 0..65535 to 0..255;
- float greyscale (F, e.g. PFM, SPIDER): values within 0..1 are x255, within 0..255 are kept, any other
  range is stretched from the image's own finite minimum..maximum to 0..255 (NaN is the minimum);
- CMYK, YCbCr, LAB, HSV, 1, L and P convert with Pillow's ``convert("RGB")``.

Memory: the output is made once, full size; conversions that need temporaries (compositing, the integer
and float rules) work on bands of :data:`BAND_PIXELS` pixels, so they hold one band's temporaries, not
full-size copies (nima_rt/io/decode_memory.py counts exactly this). Greyscale images may stay greyscale
(``grey_ok``): resizing an ``L`` image and then making it RGB gives the same pixels as resizing its RGB
copy, with a quarter of the memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

WHITE = (255, 255, 255)
BAND_PIXELS = 1 << 18  # pixels of one band of a banded conversion
TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
GREY_MODES = ("L", "1", "I", "F")


@dataclass(frozen=True)
class Conversion:
    """How an image of some mode becomes model input: ``kind`` none (already so), convert (one Pillow
    ``convert``) or bands (the rule applied band by band); ``mode`` the output, RGB or L."""

    kind: str
    mode: str


def conversion_of(mode: str, info: dict[str, Any], grey_ok: bool = False) -> Conversion:
    """The conversion :func:`to_rgb` makes for an image of ``mode`` with ``info`` (its transparency key)."""
    transparent = "transparency" in info
    grey = "L" if grey_ok else "RGB"
    if mode in TRANSPARENT_MODES or (transparent and mode in ("P", "L", "RGB")):
        return Conversion("bands", "RGB")
    if mode == "RGB" or (mode == "L" and grey_ok):
        return Conversion("none", mode)
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Conversion("bands", grey)
    return Conversion("convert", grey if mode in GREY_MODES else "RGB")


def to_rgb(image: Image.Image, grey_ok: bool = False) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB following the module's documented rule (to 8-bit greyscale
    ``L`` instead when ``grey_ok`` and the image is greyscale without transparency)."""
    conversion = conversion_of(image.mode, image.info, grey_ok)
    if conversion.kind == "none":
        return image
    if conversion.kind == "convert":
        return image.convert(conversion.mode)
    return _by_bands(image, conversion.mode, _band_rule(image))


def _band_rule(image: Image.Image) -> Callable[[Image.Image], Image.Image]:
    """The rule for one band of ``image`` (returns RGB, or L for greyscale)."""
    mode = image.mode
    if mode in TRANSPARENT_MODES or "transparency" in image.info:
        return lambda band: _flatten(band.convert("RGBA"))
    if mode == "F":
        span = _finite_range(image)
        return lambda band: _grey(_float_to_255(np.asarray(band, dtype=np.float32), span))

    def scale_16_bit(band: Image.Image) -> Image.Image:
        data = np.asarray(band, dtype=np.float32)
        data /= 257.0
        return _grey(data)

    return scale_16_bit


def _bands(image: Image.Image) -> Iterator[tuple[int, Image.Image]]:
    width, height = image.size
    rows = max(1, BAND_PIXELS // max(1, width))
    for top in range(0, height, rows):
        yield top, image.crop((0, top, width, min(height, top + rows)))


def _by_bands(image: Image.Image, mode: str, rule: Callable[[Image.Image], Image.Image]) -> Image.Image:
    out = Image.new(mode, image.size)
    for top, band in _bands(image):
        converted = rule(band)
        out.paste(converted if converted.mode == mode else converted.convert(mode), (0, top))
    return out


def _finite_range(image: Image.Image) -> tuple[float, float] | None:
    """The smallest and largest finite values of a float image (None when it has none)."""
    low, high = np.inf, -np.inf
    for _, band in _bands(image):
        data = np.asarray(band, dtype=np.float32)
        finite = data[np.isfinite(data)]
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    return None if low > high else (low, high)


def _float_to_255(data: np.ndarray, span: tuple[float, float] | None) -> np.ndarray:
    """The float rule on values of an image whose finite values span ``low, high`` (None: it has none):
    0..1 -> x255; 0..255 kept; any other range stretched from low..high; NaN -> low, +-inf -> high/low."""
    if span is None:
        return np.zeros_like(data)
    low, high = span
    data = np.nan_to_num(data, nan=low, posinf=high, neginf=low)
    if low >= 0.0 and high <= 1.0:
        data *= 255.0
    elif low < 0.0 or high > 255.0:
        data -= low
        data *= 255.0 / (high - low)
    return data


def _grey(data: np.ndarray) -> Image.Image:
    np.clip(data, 0, 255, out=data)
    np.rint(data, out=data)
    return Image.fromarray(data.astype(np.uint8), "L")


def _flatten(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, WHITE + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")
