"""What one decode may cost, and how much decode memory may be in flight across decode threads.

Before a pixel is decoded, :func:`decode_cost` estimates from the file's header the most memory the
decode of that file will hold at once, counting every full-size copy it makes: the decoded image (with
Pillow's pointer per row, which dominates in a 1-pixel-wide image), the decoder's own buffers (libtiff's
strip, a progressive JPEG's coefficients, the images that WebP/AVIF/JPEG 2000 libraries and Pillow's
Python decoders build before Pillow copies them), the colour conversion's output (conversions work in bands
of :data:`BAND_PIXELS`, so their temporaries stay small), the EXIF turn, and the resize (Pillow's filter
coefficients, its intermediate image and the output).

A decode whose estimate exceeds the run's memory budget is refused with a one-line error before anything
is allocated; the others reserve their estimate from a :class:`DecodeBudget` shared by the decode threads
and wait while other decodes hold it, so decode memory in flight never exceeds the budget.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from nima_rt.contract.spec import ResizeSpec
from nima_rt.io.colour import conversion_of

# Decode memory allowed in flight across the decode threads, and the most one decode may need: with the
# bundled model at batch 4 x 2 streams (~220 MB) a run stays under ~600 MB whatever the inputs
# (docs/guide/runtime.md#memory-budget; tests/io/test_memory_bound.py).
DEFAULT_DECODE_MEMORY = 320 << 20
TRIM_AFTER = 64 << 20  # a decode reserving this much hands its freed pages back to the system after it
ROW_POINTER = 8  # bytes Pillow keeps per row of every image (a 1 x 89,000,000 image holds 712 MB of them)
BAND_PIXELS = 1 << 18  # colour conversions work on bands of about this many pixels (nima_rt.io.colour)
BAND_COPIES = 8  # band-sized temporaries a conversion may hold at once
FIXED = 6 << 20  # per decode: decoder state (zlib, libjpeg), row buffers, the resized arrays
# Pillow's filter support (in source pixels at scale 1) per contract interpolation; 0: an affine map, no filter
SUPPORT = {"nearest": 0.0, "bilinear": 1.0, "bicubic": 2.0, "lanczos": 3.0, "box": 0.5, "hamming": 1.0}
# Formats whose library decodes a whole frame into its own buffer before Pillow copies it: bytes per pixel
# (WebP: libwebp's canvas and previous canvas, then the bytes Pillow copies; measured up to 13.5 bytes per pixel.)
WHOLE_FRAME = {"WEBP": 14, "AVIF": 8, "HEIF": 8, "JPEG2000": 16, "ICO": 4, "CUR": 4, "ICNS": 4}
ROW_BUFFERS = 2 * 8  # bytes per pixel of one row a decoder keeps twice (PNG's current and previous row, 16-bit RGBA)
MB = 1 << 20


def stored_bytes(mode: str) -> int:
    """Bytes per pixel Pillow stores for ``mode`` (RGB takes 4)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith(("I;16", "BGR;15", "BGR;16")):
        return 2
    return 3 if mode == "BGR;24" else 4


def image_bytes(width: int, height: int, bytes_per_pixel: int) -> int:
    """What a Pillow image of this size holds: its pixels and a pointer per row."""
    return width * height * bytes_per_pixel + height * ROW_POINTER


class OverBudget(ValueError):
    """A decode that cannot fit the memory budget; ``str()`` is its one-line error."""


@dataclass(frozen=True)
class DecodeCost:
    """A decode's memory, step by step (bytes); :attr:`peak` is what it reserves. ``size`` and ``mode``: the
    image it decodes."""

    size: tuple[int, int]
    mode: str
    decoded: int  # the decoded image
    decoder: int  # the decoder's own buffers while it decodes
    converted: int  # the colour conversion's output and band temporaries (0: no conversion)
    turned: int  # the EXIF turn's copy (0: none)
    resized: int  # the largest resize: coefficients, intermediate image, output

    @property
    def peak(self) -> int:
        """The most held at once: the decoded image lives until the conversion is done, the converted one
        (or the decoded one when nothing converts) until it is turned and resized."""
        kept = self.converted or self.decoded
        return FIXED + max(self.decoded + self.decoder, self.decoded + self.converted, kept + self.turned,
                           (self.turned or kept) + self.resized)


def decode_cost(image: Image.Image, declared: tuple[int, int], turned: bool, grey_ok: bool,
                resizes: Sequence[tuple[int, ResizeSpec]]) -> DecodeCost:
    """The cost of decoding the opened (not yet loaded) ``image`` at its current size (after any JPEG
    draft; ``declared`` is the size before it), converting it by :func:`nima_rt.io.colour.to_rgb` (to
    greyscale when ``grey_ok`` and the image is grey), turning it (``turned``) and resizing it to each of
    ``resizes`` (``(side, spec)``, one after the other)."""
    width, height = image.size
    decoded = image_bytes(width, height, stored_bytes(image.mode))
    conversion = conversion_of(image.mode, image.info, grey_ok)
    out_bytes = stored_bytes(conversion.mode)
    converted = 0
    if conversion.kind == "convert":
        converted = image_bytes(width, height, out_bytes)
    elif conversion.kind == "bands":
        rows = max(1, min(height, BAND_PIXELS // max(1, width)))
        converted = image_bytes(width, height, out_bytes) + BAND_COPIES * image_bytes(width, rows, 4)
    turn = image_bytes(height, width, out_bytes) if turned else 0
    if turned:
        width, height = height, width
    resized = max((resize_bytes(width, height, out_bytes, side, spec) for side, spec in resizes), default=0)
    return DecodeCost(image.size, image.mode, decoded, decoder_bytes(image, declared), converted, turn, resized)


def decoder_bytes(image: Image.Image, declared: tuple[int, int]) -> int:
    """The decoder's own buffers while it decodes ``image``, beyond the image it fills."""
    width, height = image.size
    return width * ROW_BUFFERS + _whole_buffers(image, declared)


def _whole_buffers(image: Image.Image, declared: tuple[int, int]) -> int:
    width, height = image.size
    fmt = image.format or ""
    tiles = getattr(image, "tile", None)  # an image made in memory has none
    codec = tiles[0][0] if tiles else ""
    if fmt in ("JPEG", "MPO"):
        return _jpeg_coefficients(image, declared)
    if codec in Image.DECODERS:  # a Python decoder: its bytearray (grown in steps), then the bytes it hands on
        return 3 * width * height * stored_bytes(image.mode)
    if codec == "libtiff":  # libtiff maps (or Pillow reads) the whole file
        return _tiff_strip(image) + _encoded_size(image)
    if fmt in WHOLE_FRAME:  # these read the whole file too
        return image_bytes(width, height, WHOLE_FRAME[fmt]) + _encoded_size(image)
    return 0


def _encoded_size(image: Image.Image) -> int:
    """The size of the file ``image`` is read from (0 when unknown)."""
    stream = getattr(image, "fp", None)
    try:
        return os.fstat(stream.fileno()).st_size  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):
        pass
    try:
        at = stream.tell()  # type: ignore[union-attr]
        size = stream.seek(0, os.SEEK_END)  # type: ignore[union-attr]
        stream.seek(at)  # type: ignore[union-attr]
        return int(size)
    except (AttributeError, OSError, ValueError):
        return 0


def _jpeg_coefficients(image: Image.Image, declared: tuple[int, int]) -> int:
    """A progressive (or multi-scan) JPEG keeps every DCT coefficient of the declared size until its last
    scan: 2 bytes per coefficient, per component, at each component's sampling, whatever the draft."""
    if not (image.info.get("progressive") or image.info.get("progression")):
        return 0
    layers = getattr(image, "layer", None) or [("", 1, 1, 0)] * 3
    h_max = max(layer[1] for layer in layers) or 1
    v_max = max(layer[2] for layer in layers) or 1
    blocks = sum(math.ceil(declared[0] * layer[1] / h_max / 8) * math.ceil(declared[1] * layer[2] / v_max / 8)
                 for layer in layers)
    return blocks * 64 * 2


def _tiff_strip(image: Image.Image) -> int:
    """libtiff decodes a strip (or tile) at a time into its own buffer; JPEG-in-TIFF and old-style JPEG
    through a whole RGBA image."""
    width, height = image.size
    tags = getattr(image, "tag_v2", {})
    if tags.get(259) in (6, 7):
        return image_bytes(width, height, 4)
    bits = tags.get(258, (8,))
    pixel = math.ceil(sum(bits if isinstance(bits, tuple) else (bits,)) / 8) or 1
    if 322 in tags and 323 in tags:
        return int(tags[322]) * int(tags[323]) * pixel
    return width * min(height, int(tags.get(278, height) or height)) * pixel


def resize_bytes(width: int, height: int, bytes_per_pixel: int, side: int, spec: ResizeSpec) -> int:
    """What ``nima_rt.contract.spec.resize_image`` holds resizing a ``width`` x ``height`` image to ``side``:
    Pillow's filter coefficients for both axes, its intermediate image (the cheaper pass order) and its
    output (for ``center_crop`` the scaled image before the crop)."""
    if spec.policy == "squash":
        out_w = out_h = side
    else:
        scale = side / min(width, height)
        out_w, out_h = max(side, round(width * scale)), max(side, round(height * scale))
    if (out_w, out_h) == (width, height):
        return 0
    support = SUPPORT.get(spec.interpolation, 3.0)
    output = image_bytes(out_w, out_h, bytes_per_pixel)
    if support == 0:
        return output
    coefficients = _coefficients(width, out_w, support) + _coefficients(height, out_h, support)
    middle = min(out_w * height, width * out_h) * bytes_per_pixel + max(height, out_h) * ROW_POINTER
    return coefficients + middle + output


def _coefficients(size: int, out: int, support: float) -> int:
    """Pillow's coefficient table for one axis: ``out`` rows of ``2 * ceil(support * scale) + 1`` doubles."""
    if size == out:
        return 0
    scale = max(size / out, 1.0)
    return out * (2 * math.ceil(support * scale) + 1) * 8 + out * 2 * 4


def _mb(nbytes: int) -> int:
    return -(-nbytes // MB)


class DecodeBudget:
    """Bytes of decode memory in flight across threads, bounded by ``limit`` (also the most one decode may
    need: :func:`decode_cost` is refused above it by the decoder).

    A decode reserves its estimate before any pixel is decoded and waits while other decodes hold the
    budget. Decodes never wait on anything but other decodes, which always finish, so the wait cannot
    deadlock; a reservation above the whole budget (not made by the decoder) still runs, alone.
    """

    def __init__(self, limit: int = DEFAULT_DECODE_MEMORY) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0  # the largest total ever reserved at once (tests and benchmarks read it)
        self._condition = threading.Condition()

    def take(self, nbytes: int, wait: bool = True) -> None:
        """Wait until ``nbytes`` fit (or nothing else is reserved), then reserve them (``wait`` False: at once)."""
        with self._condition:
            while wait and self.used and self.used + nbytes > self.limit:
                self._condition.wait()
            self.used += nbytes
            self.peak = max(self.peak, self.used)

    def give_back(self, nbytes: int) -> None:
        with self._condition:
            self.used -= nbytes
            self._condition.notify_all()


class Reservation:
    """One decode's share of a :class:`DecodeBudget`, given back when the decode (failed or not) is over
    and nothing refers to its buffers any more."""

    def __init__(self, budget: DecodeBudget | None, held: int = 0) -> None:
        self.budget, self.held, self.nbytes = budget, held, 0

    def take(self, cost: DecodeCost, label: str, late: bool = False) -> None:
        """Reserve ``cost.peak`` plus what the caller holds for this decode (``held``: the file's bytes read
        into memory), less what this decode holds already, waiting for room; raise :class:`OverBudget` (one
        line naming ``label``) when it exceeds the whole budget. ``late``: a cost found while decoding (buffers
        already held) is reserved without waiting, so decodes topping up never wait on each other."""
        if self.budget is None:
            return
        need = cost.peak + self.held
        if need > self.budget.limit:
            raise OverBudget(f"{label}: decoding this {cost.size[0]}x{cost.size[1]} {cost.mode} image needs about "
                             f"{_mb(need)} MB, above the memory budget of {_mb(self.budget.limit)} MB "
                             "(--memory-budget)")
        extra = need - self.nbytes
        if extra > 0:
            self.budget.take(extra, wait=not late)
            self.nbytes += extra

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.budget is not None and self.nbytes:
            if self.nbytes >= TRIM_AFTER:
                _release_freed_memory()
            self.budget.give_back(self.nbytes)
            self.nbytes = 0


def _release_freed_memory() -> None:
    """Hand the pages a large decode freed back to the system (glibc keeps them in the decode thread's
    malloc arena otherwise, and the next large decode on another thread adds its own: +200 MB measured)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim():  # type: ignore[no-untyped-def]
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to trim
        return None
