"""Decode image files into the uint8 RGB squares the model contract asks for.

One file is opened once, whatever number of models (and input sizes) it is scored by.
Every failure becomes a :class:`DecodeError` with a one-line message; nothing here prints.

Colour-mode rule (docs/runtime.md):
- transparent images (RGBA, LA, PA, P or L/RGB with a transparency key) are composited onto white;
- 16-bit and 32-bit integer greyscale (I;16*, I) are scaled from 0..65535 to 0..255;
- float greyscale (F) is read as 0..1 and scaled to 0..255 (values outside are clipped);
- CMYK, YCbCr, LAB, HSV, 1, L and P convert with Pillow's ``convert("RGB")``;
- EXIF orientation is applied before resizing; animated images use their first frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .contract import Preprocess, resize_image

__all__ = ["DecodeError", "DecodeOptions", "Preprocess", "decode_file", "from_array", "from_pil", "to_rgb"]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif"}
)
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
WHITE = (255, 255, 255)
ORIENTATION_TAG = 0x0112


class DecodeError(Exception):
    """A file could not be turned into model input; ``str()`` is a one-line reason."""


@dataclass(frozen=True)
class DecodeOptions:
    """Decoder settings shared by every file of a run."""

    max_pixels: int = DEFAULT_MAX_PIXELS  # Pillow's decompression-bomb limit, kept by default
    jpeg_draft: bool = True  # False: always decode JPEGs in full, whatever the model's metadata allows


def is_image_path(path: os.PathLike[str] | str) -> bool:
    """True when the file name ends in an image extension (case-insensitive)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "unknown error"


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
        data = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.clip(data / 257.0, 0, 255).round().astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        data = np.asarray(image, dtype=np.float64)
        data = np.nan_to_num(data, nan=0.0, posinf=1.0, neginf=0.0)
        return Image.fromarray(np.clip(data * 255.0, 0, 255).round().astype(np.uint8), "L").convert("RGB")
    return image.convert("RGB")


def _flatten(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, WHITE + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _largest_size(specs: list[Preprocess]) -> int:
    return max(spec.size for spec in specs)


def prepare(
    image: Image.Image, specs: list[Preprocess], max_pixels: int, label: str, allow_draft: bool = False
) -> list[np.ndarray]:
    """Turn an opened Pillow image into one uint8 [S, S, 3] array per spec.

    Applies the JPEG draft (for a file not yet loaded, when every spec allows it), EXIF orientation
    and the colour rule.
    """
    width, height = image.size
    if width * height > max_pixels:
        raise DecodeError(
            f"{label}: image is {width}x{height} = {width * height} pixels, above the "
            f"decompression-bomb limit of {max_pixels} pixels"
        )
    if width == 0 or height == 0:
        raise DecodeError(f"{label}: image has no pixels ({width}x{height})")
    if allow_draft and image.format == "JPEG" and all(spec.resize.jpeg_draft for spec in specs):
        side = _largest_size(specs)
        # DCT-domain downscaling by 1/2, 1/4 or 1/8 while both sides stay >= the model input.
        image.draft("RGB", (side, side))
    if image.getexif().get(ORIENTATION_TAG, 1) != 1:  # exif_transpose copies even when nothing turns
        image = ImageOps.exif_transpose(image) or image
    rgb = to_rgb(image)
    arrays = []
    for spec in specs:
        resized = resize_image(rgb, spec.size, spec.resize)
        array = np.asarray(resized, dtype=np.uint8)
        if array.shape != (spec.size, spec.size, 3):
            raise DecodeError(f"{label}: decoded to shape {array.shape}, expected ({spec.size}, {spec.size}, 3)")
        arrays.append(array)
    return arrays


def decode_file(
    path: str | os.PathLike[str] | BinaryIO, specs: list[Preprocess], options: DecodeOptions = DecodeOptions()
) -> list[np.ndarray]:
    """Open, decode and resize one image file; raise :class:`DecodeError` with a one-line reason."""
    label = str(path) if not hasattr(path, "read") else getattr(path, "name", "<stream>")
    try:
        with Image.open(path) as image:
            image.seek(0)
            arrays = prepare(image, specs, options.max_pixels, label, allow_draft=options.jpeg_draft)
    except DecodeError:
        raise
    except FileNotFoundError:
        raise DecodeError(f"{label}: no such file (or a broken symlink)") from None
    except IsADirectoryError:
        raise DecodeError(f"{label}: is a directory, expected an image file") from None
    except PermissionError:
        raise DecodeError(f"{label}: permission denied") from None
    except UnidentifiedImageError:
        raise DecodeError(f"{label}: not an image file Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"{label}: {_one_line(str(exc))}") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise DecodeError(f"{label}: cannot decode image ({_one_line(str(exc))})") from None
    return arrays


def from_pil(image: Image.Image, specs: list[Preprocess], options: DecodeOptions = DecodeOptions()) -> list[np.ndarray]:
    """Model inputs from an in-memory Pillow image (same rules as files, no JPEG draft)."""
    label = getattr(image, "filename", "") or "<PIL image>"
    try:
        return prepare(image, specs, options.max_pixels, label)
    except DecodeError:
        raise
    except (OSError, ValueError) as exc:
        raise DecodeError(f"{label}: cannot convert image ({_one_line(str(exc))})") from None


def from_array(array: np.ndarray, specs: list[Preprocess]) -> list[np.ndarray]:
    """Model inputs from a uint8 array [H, W, 3] (RGB) or [H, W] (greyscale)."""
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        raise DecodeError(f"array input must be a numpy uint8 array, got {getattr(array, 'dtype', type(array))}")
    if array.ndim == 2:
        image = Image.fromarray(array, "L")
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        image = Image.fromarray(np.ascontiguousarray(array), "RGB" if array.shape[2] == 3 else "RGBA")
    else:
        raise DecodeError(f"array input must have shape [H, W], [H, W, 3] or [H, W, 4], got {array.shape}")
    return prepare(image, specs, DEFAULT_MAX_PIXELS, "<array>")


