"""Small JPEG thumbnails for the report: DCT-domain JPEG downscaling, EXIF orientation, RGB."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from nima_rt.io.decode import DecodeError, load_rgb, path_label


@dataclass(frozen=True)
class Thumbnail:
    """Where the page finds a thumbnail (relative URL or data URI) and its pixel size."""

    src: str
    width: int
    height: int


class ThumbnailError(Exception):
    """A thumbnail could not be made; ``str()`` names the file and says why."""


def thumbnail_name(path: str) -> str:
    """A stable file name for ``path``'s thumbnail (a hash: user file names never reach the disk)."""
    return hashlib.sha1(os.path.abspath(path).encode("utf-8", "surrogatepass")).hexdigest()[:20] + ".jpg"


def render_thumbnail(path: str, size: int, quality: int = 80) -> tuple[bytes, int, int]:
    """JPEG bytes of ``path`` fitted inside ``size`` x ``size`` (aspect kept), and their width, height."""
    label = path_label(path)
    try:
        rgb = load_rgb(path, draft_side=size)  # the project's one opener: bomb policy, EXIF, RGB
    except DecodeError as exc:
        reason = str(exc).removeprefix(f"{label}: ")
        raise ThumbnailError(f"{label}: cannot make a thumbnail ({reason})") from None
    rgb.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue(), rgb.width, rgb.height


def write_thumbnail(path: str, folder: Path, url_prefix: str, size: int) -> Thumbnail:
    """Write the thumbnail into ``folder``; its ``src`` is ``url_prefix`` + its file name."""
    data, width, height = render_thumbnail(path, size)
    name = thumbnail_name(path)
    (folder / name).write_bytes(data)
    return Thumbnail(url_prefix + name, width, height)


def embed_thumbnail(path: str, size: int) -> Thumbnail:
    """The thumbnail as a ``data:`` URI, for a page that is one file."""
    data, width, height = render_thumbnail(path, size)
    return Thumbnail("data:image/jpeg;base64," + base64.b64encode(data).decode("ascii"), width, height)
