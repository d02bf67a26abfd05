"""Every Pillow mode to 8-bit RGB: the colour-mode rule the runtime, training and export share.

Rule (docs/guide/runtime.md):
- transparent images (RGBA, LA, PA, P or L/RGB with a transparency key) are composited onto white;
- 16-bit and 32-bit integer greyscale (I;16*, I) are scaled from 0..65535 to 0..255;
- float greyscale (F, e.g. PFM, SPIDER): values within 0..1 are x255, within 0..255 are kept, any other
  range is stretched from the image's own finite minimum..maximum to 0..255 (NaN is the minimum);
- CMYK, YCbCr, LAB, HSV, 1, L and P convert with Pillow's ``convert("RGB")``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

WHITE = (255, 255, 255)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB following the module's documented rule."""
    mode = image.mode
    if mode == "RGB":
        if "transparency" in image.info:
            return _flatten(image.convert("RGBA"))
        return image
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _flatten(image.convert("RGBA"))
    if mode == "P" or mode == "L":
        if "transparency" in image.info:
            return _flatten(image.convert("RGBA"))
        return image.convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        data = np.asarray(image, dtype=np.float32)
        data /= 257.0
        return _grey_to_rgb(data)
    if mode == "F":
        return _grey_to_rgb(_float_to_255(np.asarray(image, dtype=np.float32)))
    return image.convert("RGB")


def _float_to_255(data: np.ndarray) -> np.ndarray:
    """The float rule: 0..1 -> x255; 0..255 kept; any other range stretched from its finite min..max."""
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros_like(data)
    low, high = float(data[finite].min()), float(data[finite].max())
    data = np.nan_to_num(data, nan=low, posinf=high, neginf=low)
    if low >= 0.0 and high <= 1.0:
        data *= 255.0
    elif low < 0.0 or high > 255.0:
        data -= low
        data *= 255.0 / (high - low)
    return data


def _grey_to_rgb(data: np.ndarray) -> Image.Image:
    np.clip(data, 0, 255, out=data)
    np.rint(data, out=data)
    return Image.fromarray(data.astype(np.uint8), "L").convert("RGB")


def _flatten(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, WHITE + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")
