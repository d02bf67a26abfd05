"""Which files are images, and opening one as Pillow does, in one fixed format order, minus Pillow's own
pixel-count check.

``Image.open`` checks the declared size against ``Image.MAX_IMAGE_PIXELS`` (a process-wide setting):
above it it prints a ``DecompressionBombWarning`` with its source line to stderr, above twice it raises.
nima-rt decides itself what a file may cost, from the size it will decode (after the JPEG draft) and the
memory that decode needs (:mod:`nima_rt.io.decode_memory`), so a 100 MP camera JPEG that decodes at 1/8
scale is scored, and nothing reaches stderr. The order in which formats are tried is fixed here too.
"""

from __future__ import annotations

import functools
import io
import os
import struct
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from nima_rt.io.plugins import register_installed

# Extensions Pillow registers for formats a photo pipeline has no business walking into (documents, scientific
# containers, video): a file named so is still tried when given explicitly.
NOT_PHOTO_EXTENSIONS = frozenset({".pdf", ".eps", ".ps", ".h5", ".hdf", ".bufr", ".grib", ".fit", ".fits",
                                  ".mpg", ".mpeg", ".wmf", ".emf"})
_NOT_THIS_FORMAT = (SyntaxError, IndexError, TypeError, struct.error)  # what Image.open takes for "try the next"


def open_order() -> tuple[str, ...]:
    """Every format Pillow can open, in an order that does not depend on what was opened before.

    ``Image.open`` imports the plugin of a file's extension first, which moves it ahead in Pillow's
    global list: after a ``.tga`` the TGA plugin (which has no magic number and accepts almost any
    header) was tried before ICO and claimed ``.ico`` files. Formats with a magic number go first, by
    plugin module; those without one (TGA, SPIDER, IM, IPTC, PCD...) last.
    """
    Image.init()
    register_installed()
    return tuple(sorted(Image.ID, key=lambda f: (Image.OPEN[f][1] is None, Image.OPEN[f][0].__module__, f)))


def open_image(stream: BinaryIO) -> Image.Image:
    """The image in ``stream`` opened (its header read, no pixel decoded), the formats tried in
    :func:`open_order` as ``Image.open`` tries them, without its decompression-bomb check. Raises
    ``UnidentifiedImageError`` when no format takes the file, and what a plugin raises for a file it took."""
    if not stream.seekable():
        stream = io.BytesIO(stream.read())
    stream.seek(0)
    prefix = stream.read(16)
    for name in open_order():
        factory, accept = Image.OPEN[name]
        try:
            verdict = accept(prefix) if accept is not None else True
            if not verdict or isinstance(verdict, str):  # a string: "looks like this format, but unsupported"
                continue
            stream.seek(0)
            return factory(stream, "")
        except _NOT_THIS_FORMAT:
            continue
    raise UnidentifiedImageError("cannot identify image file")


def image_extensions() -> frozenset[str]:
    """The file extensions a folder walk picks up: every extension the installed Pillow registers for a
    format it can open (AVIF, PPM/PGM, PSD, TGA, ICO, JPEG 2000... when the build has them), lower case,
    minus :data:`NOT_PHOTO_EXTENSIONS`. Installed optional plugins (HEIC/HEIF: :mod:`nima_rt.io.plugins`) count."""
    Image.init()
    register_installed()
    return _extensions_of(len(Image.OPEN), len(Image.EXTENSION))  # recomputed when a plugin registers


@functools.lru_cache(maxsize=4)
def _extensions_of(_formats: int, _extensions: int) -> frozenset[str]:
    readable = set(Image.OPEN)
    extensions = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in readable}
    if "JPEG" in readable:
        extensions.add(".mpo")  # multi-picture JPEGs: Pillow's JPEG opener reads them
    return frozenset(extensions - NOT_PHOTO_EXTENSIONS)


def is_image_path(path: os.PathLike[str] | str, extensions: frozenset[str] | None = None) -> bool:
    """True when the file name ends in an image extension (case-insensitive)."""
    return os.path.splitext(os.fspath(path))[1].lower() in (extensions or image_extensions())


def blp_embedded_size(image: Image.Image) -> tuple[int, int] | None:
    """The size of the JPEG a BLP1 texture embeds (its decoder decodes it whatever the texture's declared
    size: a 700-byte file could make Pillow allocate gigabytes)."""
    if image.format != "BLP" or getattr(image, "magic", None) != b"BLP1" or image.tile[0].args[0] != 0:
        return None
    fp = image.fp
    fp.seek(image.tile[0].offset + 128)
    (header_size,) = struct.unpack("<I", fp.read(4))
    header = fp.read(min(header_size, 1 << 16))
    for marker in range(0xC0, 0xD0):
        if marker in (0xC4, 0xC8, 0xCC):
            continue
        at = header.find(bytes((0xFF, marker)))
        if at >= 0 and at + 9 <= len(header):
            height, width = struct.unpack(">HH", header[at + 5 : at + 9])
            return width, height
    return (0, 0)
