"""Tiny hostile image files made in the tests: headers that declare huge sizes, layered PSDs, names that
are not UTF-8 or hold line breaks. Each generator returns the file's bytes."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def jpeg_declaring(width: int, height: int, progressive: bool = False) -> bytes:
    """A real 8x8 JPEG whose frame header claims ``width`` x ``height``: libjpeg fills what is missing
    with grey, so Pillow decodes a huge image from ~700 bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 20, 200)).save(buffer, "JPEG", quality=50, progressive=progressive)
    data = bytearray(buffer.getvalue())
    at = data.find(b"\xff\xc2" if progressive else b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def blp1_embedding_jpeg(width: int, height: int) -> bytes:
    """A BLP1 texture declaring 8x8 whose mip 0 is a JPEG claiming ``width`` x ``height``: Pillow's BLP
    decoder decodes the whole JPEG (and copies it twice) before noticing the sizes differ."""
    jpeg = jpeg_declaring(width, height)
    header = b"BLP1" + struct.pack("<iIIIi", 0, 0, 8, 8, 5) + b"\0" * 4
    offsets = [28 + 128 + 4 + len(jpeg)] + [0] * 15
    lengths = [0] * 16
    return header + struct.pack("<16I", *offsets) + struct.pack("<16I", *lengths) + struct.pack("<I", len(jpeg)) + jpeg


def bmp_rle8_declaring(width: int, height: int, covered_rows: int | None = None) -> bytes:
    """An RLE8 BMP whose 'delta' escapes skip over ``covered_rows`` rows (all by default) in a few bytes:
    Pillow's RLE decoder builds the whole bitmap in Python bytes. With fewer rows than ``height`` the file
    ends early and the decode fails after allocating them."""
    rows = height if covered_rows is None else covered_rows
    body = b"".join(b"\x00\x02\x00" + bytes((min(255, rows - done),)) for done in range(0, rows, 255))
    body += b"\x00\x01"  # end of bitmap
    palette = b"\x00\x00\x00\x00\xff\xff\xff\x00"
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(body), 2835, 2835, 2, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(body), 0, 0, offset) + info + palette + body


def png_declaring(width: int, height: int) -> bytes:
    """A PNG header claiming ``width`` x ``height`` with no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(
        b"IEND", b""
    )


def psd_bytes(merged: np.ndarray, layer: np.ndarray | None = None) -> bytes:
    """An 8-bit RGB Photoshop file with the ``merged`` composite and, optionally, one ``layer``."""
    height, width, _ = merged.shape
    header = b"8BPS" + struct.pack(">H", 1) + b"\0" * 6 + struct.pack(">HIIHH", 3, height, width, 8, 3)
    empty = struct.pack(">I", 0)
    if layer is None:
        layers = empty
    else:
        plane = height * width
        record = struct.pack(">iiiiH", 0, 0, height, width, 3)
        record += b"".join(struct.pack(">hI", channel, 2 + plane) for channel in range(3))
        record += b"8BIMnorm" + bytes((255, 0, 0, 0)) + struct.pack(">III", 12, 0, 0) + b"\x03top"
        data = b"".join(struct.pack(">H", 0) + layer[..., c].tobytes() for c in range(3))
        info = struct.pack(">h", 1) + record + data
        info += b"\0" * (len(info) % 2)
        section = struct.pack(">I", len(info)) + info
        layers = struct.pack(">I", len(section)) + section
    image = struct.pack(">H", 0) + b"".join(merged[..., c].tobytes() for c in range(3))
    return header + empty + empty + layers + image


def hostile_corpus(count: int) -> dict[str, bytes]:
    """``count`` files of each kind, every one named ``.jpg``, none over 1 KB."""
    files: dict[str, bytes] = {}
    for index in range(count):
        files[f"blp_{index}.jpg"] = blp1_embedding_jpeg(12000, 12000)  # 144 MP behind an 8x8 texture
        files[f"grey_{index}.jpg"] = jpeg_declaring(9000, 9000)  # 81 MP, under the pixel limit
        files[f"rle_{index}.jpg"] = bmp_rle8_declaring(8000, 8000)  # 64 MP decoded in Python
        files[f"rle_cut_{index}.jpg"] = bmp_rle8_declaring(8000, 8000, covered_rows=6000)  # fails late
        files[f"png_{index}.jpg"] = png_declaring(100000, 100000)
    return files
