"""Decode image files into the uint8 RGB squares the model contract asks for.

A file is read once whatever the number of models scoring it; each model's input comes from the decode
:mod:`nima_rt.io.decode_policy` gives it, so it never depends on the other models of the run.
Every failure becomes a :class:`DecodeError` with a one-line message; nothing here prints.

:func:`load_rgb` is THE "open an image, apply its EXIF orientation, convert it to RGB" of the project
(the runtime, the report's thumbnails, the labelling app and the dataset builder all call it), with one
decompression-bomb policy, applied before any pixel is decoded: the size the file decodes to (after the
JPEG draft) against ``max_pixels``, and the memory the whole decode needs against the memory budget
(:mod:`nima_rt.io.decode_memory`).

Colours follow :mod:`nima_rt.io.colour` (every Pillow mode to 8-bit RGB, docs/guide/runtime.md); decode memory in
flight is bounded by :mod:`nima_rt.io.decode_memory`. EXIF orientation is applied before resizing;
multi-frame files use the frame Pillow opens on (the first frame of an animation, the merged composite of
a layered PSD).
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from nima_rt.contract.messages import one_line
from nima_rt.contract.spec import Preprocess, ResizeSpec, resize_image
from nima_rt.io import decode_policy
from nima_rt.io.colour import to_rgb
from nima_rt.io.decode_memory import DEFAULT_DECODE_MEMORY, DecodeBudget, OverBudget, Reservation, decode_cost
from nima_rt.io.files import RefusedFile, open_regular
from nima_rt.io.image_open import (
    NOT_PHOTO_EXTENSIONS,
    blp_embedded_size,
    image_extensions,
    is_image_path,
    open_image,
)
from nima_rt.io.plugins import missing_plugin_hint

__all__ = [
    "DecodeBudget", "DecodeError", "DecodeOptions", "Preprocess", "decode_bytes", "decode_file", "from_array",
    "from_pil", "image_extensions", "is_image_path", "load_rgb", "path_label", "to_rgb", "NOT_PHOTO_EXTENSIONS",
]

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's default Image.MAX_IMAGE_PIXELS (about 89.5 MP)
# A file decoded more than once (models with different decode policies) is read into memory once when it is
# at most this large; a larger one is read again from its open handle for each decode.
MAX_ENCODED_IN_MEMORY = 64 << 20
T = TypeVar("T")
ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that undoes it (as ImageOps.exif_transpose)
TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
         5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
         8: Image.Transpose.ROTATE_90}


class DecodeError(Exception):
    """A file could not be turned into model input; ``str()`` is a one-line reason."""


@dataclass(frozen=True)
class DecodeOptions:
    """Decoder settings shared by every file of a run."""

    max_pixels: int = DEFAULT_MAX_PIXELS  # the most pixels a file may decode to (after the draft): --max-pixels
    jpeg_draft: bool = True  # False: always decode JPEGs in full, whatever the model's metadata allows
    decode_memory: int = DEFAULT_DECODE_MEMORY  # the memory budget (bytes): the most one decode may need and
    # all decodes in flight may hold together (DecodeBudget): --memory-budget

    def __post_init__(self) -> None:
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels}")
        if self.decode_memory < 1:
            raise ValueError(f"decode_memory must be >= 1 byte, got {self.decode_memory}")


def path_label(path: str | os.PathLike[str]) -> str:
    """A path as it appears inside one-line messages: control characters (``\\n``, ``\\r``, ``\\t``...)
    and bytes that are not UTF-8 are written as Python escapes, so a message is one line whatever the
    name holds."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)



def _check_declared(image: Image.Image, label: str) -> None:
    """What the header declares, checked before anything is decoded: pixels at all, and a BLP texture's
    embedded JPEG no larger than the texture."""
    width, height = image.size
    if width == 0 or height == 0:
        raise DecodeError(f"{label}: image has no pixels ({width}x{height})")
    embedded = blp_embedded_size(image)
    if embedded is not None and embedded[0] * embedded[1] > width * height:
        raise DecodeError(
            f"{label}: BLP texture declares {width}x{height} but embeds a {embedded[0]}x{embedded[1]} JPEG"
        )


def _check_pixels(image: Image.Image, label: str, max_pixels: int) -> None:
    """The pixel limit, on the size the file decodes to (after the JPEG draft: a 100 MP camera JPEG decoded
    at 1/8 scale is 1.6 MP)."""
    width, height = image.size
    if width * height > max_pixels:
        raise DecodeError(
            f"{label}: image is {width}x{height} = {width * height} pixels, above the decompression-bomb limit "
            f"of {max_pixels} pixels (--max-pixels)"
        )


def _allow_pillow(max_pixels: int) -> None:
    """Pillow checks sizes again while loading some formats (a TIFF's strips, GIF frames, ICO entries) against
    its process-wide ``Image.MAX_IMAGE_PIXELS``: a run allowed more pixels raises it to match (never lowers
    it), so what nima-rt accepted is not refused, or warned about on stderr, by Pillow."""
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _open_file(path: str | os.PathLike[str], label: str) -> BinaryIO:
    """A regular image file opened for reading (io/files.open_regular: never blocks on a FIFO or device)."""
    try:
        return open_regular(path, label, "an image file")
    except RefusedFile as exc:
        raise DecodeError(str(exc)) from None


@contextmanager
def _opened(source: str | os.PathLike[str] | BinaryIO, label: str) -> Iterator[Image.Image]:
    """The opened (not yet decoded) image; a file opened here is closed here."""
    own = not hasattr(source, "read")
    stream = _open_file(source, label) if own else source  # type: ignore[arg-type]
    try:
        with open_image(stream) as image:  # type: ignore[arg-type]
            yield image
    finally:
        if own:
            stream.close()  # type: ignore[union-attr]


Resizes = list[tuple[int, ResizeSpec]]  # (side, spec) of each resize a decode feeds


def _rgb_from_open(image: Image.Image, label: str, max_pixels: int, draft_side: int | None, reservation: Reservation,
                   resizes: Resizes, grey_ok: bool = False, owned: bool = True) -> Image.Image:
    """Check, draft, reserve, decode, colour-convert and turn an opened image; the result is loaded RGB (or L,
    for a greyscale image when ``grey_ok``). The decode's memory (:func:`decode_cost`, with ``resizes``
    after it) is reserved before any pixel is decoded; a full-size image is released as soon as the next
    one is made (``image`` itself only when ``owned``: not a caller's image)."""
    declared = image.size
    _check_declared(image, label)
    if draft_side is not None and image.format == "JPEG":
        # DCT-domain downscaling by 1/2, 1/4 or 1/8 while both sides stay >= draft_side.
        image.draft("RGB", (draft_side, draft_side))
    _check_pixels(image, label, max_pixels)
    turn = _orientation(image) if image.format != "PNG" or "exif" in image.info else 1  # PNG: known once loaded
    reservation.take(decode_cost(image, declared, turn != 1, grey_ok, resizes), label)
    _allow_pillow(max_pixels)
    image.load()
    if _orientation(image) != turn:  # a PNG's eXIf chunk after its pixels
        turn = _orientation(image)
        reservation.take(decode_cost(image, declared, turn != 1, grey_ok, resizes), label, late=True)
    out = to_rgb(image, grey_ok)
    if out is not image and owned:
        _release(image)
    if turn in TURNS:
        turned = out.transpose(TURNS[turn])
        if out is not image or owned:
            _release(out)
        out = turned
    out.load()
    return out


def _orientation(image: Image.Image) -> int:
    return int(image.getexif().get(ORIENTATION_TAG, 1) or 1)


def _release(image: Image.Image) -> None:
    """Free a full-size image's pixels now (Pillow's close of the image core; the file, if any, is closed
    by its owner)."""
    Image.Image.close(image)


def _failure(label: str, exc: BaseException) -> str:
    """The one-line reason for a failed open or decode (the exception itself is dropped by the caller,
    with its traceback and the half-decoded image its frames hold)."""
    if isinstance(exc, (DecodeError, OverBudget)):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"{label}: no such file (or a broken symlink)"
    if isinstance(exc, IsADirectoryError):
        return f"{label}: is a directory, expected an image file"
    if isinstance(exc, PermissionError):
        return f"{label}: permission denied"
    if isinstance(exc, UnidentifiedImageError):
        hint = missing_plugin_hint([os.path.splitext(label)[1].lower()])
        return f"{label}: not an image file Pillow can read" + (f" ({hint})" if hint else "")
    if isinstance(exc, Image.DecompressionBombError):
        return f"{label}: {one_line(str(exc))}"
    return f"{label}: cannot decode image ({one_line(str(exc))})"


_DECODE_FAILURES = (OSError, SyntaxError, ValueError, EOFError, MemoryError, IndexError, TypeError,
                    KeyError, ZeroDivisionError, struct.error, Image.DecompressionBombError, DecodeError)


def _source_label(source: str | os.PathLike[str] | BinaryIO, label: str | None) -> str:
    if label is not None:
        return path_label(label)
    if hasattr(source, "read"):
        return path_label(str(getattr(source, "name", "<stream>")))
    return path_label(source)  # type: ignore[arg-type]


def load_rgb(
    source: str | os.PathLike[str] | BinaryIO,
    label: str | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_side: int | None = None,
    budget: DecodeBudget | None = None,
) -> Image.Image:
    """Open an image file (or binary stream), apply its EXIF orientation and convert it to RGB.

    The one opener of the project: regular files only (a FIFO or device is refused, never read), the
    declared size checked against ``max_pixels`` before decoding, formats tried in a fixed order, the
    colour rule of :func:`to_rgb`. ``draft_side`` lets a JPEG decode DCT-scaled while both sides stay
    >= it. A decode needing more than ``budget``'s memory (default: :data:`DEFAULT_DECODE_MEMORY`, for this
    decode alone) is refused. Returns a loaded image whose file is closed; raises :class:`DecodeError`
    (one line).
    """
    return _decode(source, _source_label(source, label), max_pixels, draft_side, budget, [], False, lambda rgb: rgb)


def _decode(
    source: str | os.PathLike[str] | BinaryIO, shown: str, max_pixels: int, draft_side: int | None,
    budget: DecodeBudget | None, resizes: Resizes, grey_ok: bool, finish: Callable[[Image.Image], T],
    held: int = 0,
) -> T:
    """Open and decode ``source`` to RGB (or L: ``grey_ok``), then ``finish`` it (the ``resizes``), inside one
    budget reservation (``budget`` None: a budget of the default size for this decode alone) that is given
    back only once nothing (not even a failure's traceback) refers to the decode's buffers. ``held``: bytes the
    caller keeps in memory for this decode (the file read once for several decodes), reserved with it."""
    message = None
    with Reservation(budget or DecodeBudget(), held) as reservation:
        try:
            return _open_and_finish(source, shown, max_pixels, draft_side, reservation, resizes, grey_ok, finish)
        except _DECODE_FAILURES as exc:
            message = _failure(shown, exc)
    raise DecodeError(message)  # raised outside the handler: no reference to the failed image survives


def _open_and_finish(
    source: str | os.PathLike[str] | BinaryIO, shown: str, max_pixels: int, draft_side: int | None,
    reservation: Reservation, resizes: Resizes, grey_ok: bool, finish: Callable[[Image.Image], T],
) -> T:
    with _opened(source, shown) as image:
        rgb = _rgb_from_open(image, shown, max_pixels, draft_side, reservation, resizes, grey_ok)
    return finish(rgb)  # this frame (and the full-size images) ends before the reservation is given back


def prepare(image: Image.Image, specs: list[Preprocess], max_pixels: int, label: str) -> list[np.ndarray]:
    """One uint8 [S, S, 3] array per spec from an in-memory Pillow image: EXIF orientation and the colour
    rule, no JPEG draft (these are pixels already)."""
    rgb = _rgb_from_open(image, label, max_pixels, None, Reservation(None), _resizes(specs), True, owned=False)
    return resize_all(rgb, specs, label)


def _resizes(specs: list[Preprocess]) -> Resizes:
    return [(spec.size, spec.resize) for spec in specs]


def resize_all(rgb: Image.Image, specs: list[Preprocess], label: str) -> list[np.ndarray]:
    """One uint8 [S, S, 3] array per spec from an RGB (or greyscale L) image (the contract's resize; a
    greyscale image is made RGB once resized, which gives the pixels its RGB copy would)."""
    arrays = []
    for spec in specs:
        resized = resize_image(rgb, spec.size, spec.resize)
        array = np.asarray(resized if resized.mode == "RGB" else resized.convert("RGB"), dtype=np.uint8)
        if array.shape != (spec.size, spec.size, 3):
            raise DecodeError(f"{label}: decoded to shape {array.shape}, expected ({spec.size}, {spec.size}, 3)")
        arrays.append(array)
    return arrays


def decode_file(
    path: str | os.PathLike[str] | BinaryIO,
    specs: list[Preprocess],
    options: DecodeOptions = DecodeOptions(),
    budget: DecodeBudget | None = None,
    label: str | None = None,
) -> list[np.ndarray]:
    """Open, decode and resize one image file into one array per spec; raise :class:`DecodeError` with a
    one-line reason.

    Each spec's array comes from the decode :mod:`nima_rt.io.decode_policy` gives it (the JPEG draft or
    the exact decode), so it is the array the spec gets alone, whatever the other specs; the file is read
    once and each distinct decode made once. ``budget`` bounds the decode buffers in flight across threads.
    """
    shown = _source_label(path, label)
    sides = [decode_policy.draft_side(spec, options.jpeg_draft) for spec in specs]
    if len(set(sides)) == 1:  # one decode whatever the file holds: stream it
        return _decode(path, shown, options.max_pixels, sides[0], budget, _resizes(specs), True,
                       lambda rgb: resize_all(rgb, specs, shown))
    arrays: list[np.ndarray] = [np.empty(0, np.uint8)] * len(specs)
    message = None
    try:  # one decode per distinct outcome, one after the other: one full-size image in memory at a time
        with _rewindable(path, shown) as (stream, held):
            with open_image(stream) as header:  # the header only: no pixel is decoded
                size, is_jpeg = header.size, header.format == "JPEG"
            for side, members in decode_policy.decode_groups(sides, size, is_jpeg):
                stream.seek(0)
                group = [specs[index] for index in members]
                decoded = _decode(stream, shown, options.max_pixels, side, budget, _resizes(group), True,
                                  lambda rgb, g=group: resize_all(rgb, g, shown), held)
                for index, array in zip(members, decoded, strict=True):
                    arrays[index] = array
        return arrays
    except _DECODE_FAILURES as exc:
        message = _failure(shown, exc)
    raise DecodeError(message)


@contextmanager
def _rewindable(source: str | os.PathLike[str] | BinaryIO, label: str) -> Iterator[tuple[BinaryIO, int]]:
    """``source`` as a stream that can be read from the start again, and the bytes read into memory for it: a
    file's bytes read once (a file above :data:`MAX_ENCODED_IN_MEMORY` is re-read from its open handle
    instead), a caller's seekable stream as it is, any other stream read into memory."""
    if hasattr(source, "read"):
        stream = source  # type: ignore[assignment]
        if stream.seekable():  # type: ignore[union-attr]
            yield stream, 0  # type: ignore[misc]
        else:
            data = stream.read()  # type: ignore[union-attr]
            yield io.BytesIO(data), len(data)
        return
    handle = _open_file(source, label)  # type: ignore[arg-type]
    try:
        if os.fstat(handle.fileno()).st_size > MAX_ENCODED_IN_MEMORY:
            yield handle, 0
        else:
            data = handle.read()
            yield io.BytesIO(data), len(data)
    finally:
        handle.close()


def decode_bytes(
    data: bytes | bytearray | memoryview,
    specs: list[Preprocess],
    options: DecodeOptions = DecodeOptions(),
    budget: DecodeBudget | None = None,
    label: str = "<bytes>",
) -> list[np.ndarray]:
    """:func:`decode_file` on an encoded file's bytes (an upload, an object-store read): the same draft,
    EXIF, colour rule and errors, so equal bytes give equal arrays whichever way they arrive."""
    return decode_file(io.BytesIO(data), specs, options, budget, label)


def from_pil(image: Image.Image, specs: list[Preprocess], options: DecodeOptions = DecodeOptions()) -> list[np.ndarray]:
    """Model inputs from an in-memory Pillow image (same rules as files, no JPEG draft)."""
    label = path_label(getattr(image, "filename", "") or "<PIL image>")
    message = None
    try:
        return prepare(image, specs, options.max_pixels, label)
    except _DECODE_FAILURES as exc:
        message = str(exc) if isinstance(exc, DecodeError) else f"{label}: cannot convert image ({one_line(str(exc))})"
    raise DecodeError(message)


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
