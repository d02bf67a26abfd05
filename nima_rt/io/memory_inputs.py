"""What the Scorer's in-memory methods accept: one item or many, bytes or file objects, and their names.

``Scorer.score_bytes`` and ``Scorer.score_images`` take either one input or an iterable of them. Without
this module a single input is iterated: one H x W x 3 array becomes H "images" (its pixel rows), one
``bytes`` object becomes integers, and one Pillow image raises a bare TypeError. Here a single item is
one item, file objects (``open(..., "rb")``, ``io.BytesIO``, a web framework's upload) are read, and
anything else is a TypeError that says what was expected.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from PIL import Image

from nima_rt.contract.messages import one_line

BYTES_LIKE = (bytes, bytearray, memoryview)
_BYTES_HINT = "encoded image bytes (bytes, bytearray, memoryview) or binary file objects"
_IMAGES_HINT = "Pillow images or numpy uint8 arrays"


class StreamReadError(Exception):
    """A file object that raised while being read; ``str()`` is one line naming the input."""


def is_file_like(value: object) -> bool:
    """Whether ``value`` reads like a file (``read()``), e.g. ``io.BytesIO`` or an upload object."""
    return callable(getattr(value, "read", None))


def _path_hint(value: object, method: str) -> str:
    if isinstance(value, (str, os.PathLike)):
        return f"; {os.fspath(value)!r} looks like a path: use score_paths for files"
    if method == "score_images" and (isinstance(value, BYTES_LIKE) or is_file_like(value)):
        return "; use score_bytes for encoded image files"
    return ""


def encoded_inputs(data: object) -> Iterable[Any]:
    """``score_bytes``'s argument as an iterable: one bytes object or file object is one input."""
    if isinstance(data, BYTES_LIKE) or is_file_like(data):
        return [data]
    if isinstance(data, (str, os.PathLike)) or not isinstance(data, Iterable):
        raise TypeError(f"score_bytes takes {_BYTES_HINT}, or an iterable of them; got {type(data).__name__}"
                        f"{_path_hint(data, 'score_bytes')}")
    return data


def image_inputs(images: object) -> Iterable[Any]:
    """``score_images``'s argument as an iterable: one Pillow image or one 2-D/3-D array is one image, a
    4-D array [N, H, W, C] is N images."""
    if isinstance(images, Image.Image):
        return [images]
    if isinstance(images, np.ndarray):
        return [images] if images.ndim in (2, 3) else images
    if isinstance(images, (str, os.PathLike, *BYTES_LIKE)) or is_file_like(images) \
            or not isinstance(images, Iterable):
        raise TypeError(f"score_images takes {_IMAGES_HINT}, or an iterable of them; got "
                        f"{type(images).__name__}{_path_hint(images, 'score_images')}")
    return images


def check_image_item(image: object, index: int) -> None:
    """TypeError for an item of ``score_images`` that is a path, bytes or a file (other odd items become
    error rows, as arrays of the wrong type or shape do)."""
    if isinstance(image, (str, os.PathLike, *BYTES_LIKE)) or is_file_like(image):
        raise TypeError(f"score_images: item {index} is {type(image).__name__}, expected {_IMAGES_HINT}"
                        f"{_path_hint(image, 'score_images')}")


def stream_name(item: object) -> str | None:
    """The name a file object carries (an upload's ``filename``, an open file's ``name``), if a string."""
    for attribute in ("filename", "name"):
        value = getattr(item, attribute, None)
        if isinstance(value, str) and value:
            return value
    return None


def read_encoded(item: object, index: int, label: str) -> bytes | bytearray | memoryview:
    """The encoded bytes of one ``score_bytes`` item: the item itself, or what its ``read()`` returns from
    the stream's current position. An upload object whose ``read`` is a coroutine (Starlette/FastAPI's
    ``UploadFile``) is read through its ``file``. TypeError for anything else; :class:`StreamReadError`
    when reading fails."""
    if isinstance(item, BYTES_LIKE):
        return item
    if not is_file_like(item):
        raise TypeError(f"score_bytes: item {index} is {type(item).__name__}, expected {_BYTES_HINT}"
                        f"{_path_hint(item, 'score_bytes')}")
    stream = item
    if inspect.iscoroutinefunction(item.read):
        stream = getattr(item, "file", None)
        if not is_file_like(stream) or inspect.iscoroutinefunction(stream.read):
            raise TypeError(f"score_bytes: item {index} ({type(item).__name__}) reads asynchronously; "
                            "pass `await upload.read()`")
    try:
        content = stream.read()  # type: ignore[union-attr]
    except (OSError, ValueError) as exc:  # a closed file, a dropped connection
        raise StreamReadError(f"{label}: cannot read the stream ({type(exc).__name__}: {one_line(exc)})") from None
    if not isinstance(content, BYTES_LIKE):
        raise TypeError(f"score_bytes: item {index}'s read() returned {type(content).__name__}, expected bytes "
                        "(open the file in binary mode, 'rb')")
    return content


def labels(names: Iterable[str] | str | None, what: str) -> Iterator[str | None]:
    """The names given for the inputs, one per input (a single string is one name); None for every input
    when no names are given. ValueError (naming ``what``, the method) when the names run out first."""
    if names is None:
        while True:
            yield None
    if isinstance(names, str):
        names = [names]
    yield from names
    raise ValueError(f"{what}: fewer names than inputs")
