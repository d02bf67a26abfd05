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


def blp2_declaring(width: int, height: int) -> bytes:
    """A 284-byte BLP2 texture (uncompressed, paletted) declaring ``width`` x ``height`` whose pixel data is
    missing: Pillow allocated the declared image before failing with "Truncated File Read" (issue 25 item 6)."""
    header = b"BLP2" + struct.pack("<i", 1) + struct.pack("<bbbB", 1, 0, 0, 0) + struct.pack("<II", width, height)
    offsets, lengths = [148] + [0] * 15, [100_000] + [0] * 15
    return header + struct.pack("<16I", *offsets) + struct.pack("<16I", *lengths) + bytes(range(136))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _deflated_rows(row: bytes, height: int) -> bytes:
    """``height`` copies of ``row`` deflated, made a block at a time (a 1 x 89,000,000 image in about a second)."""
    compressor = zlib.compressobj(9)
    per_block = max(1, (1 << 20) // len(row))
    block = row * per_block
    parts = [compressor.compress(block if left >= per_block else row * left)
             for left in range(height, 0, -per_block)]
    return b"".join(parts) + compressor.flush()


def flat_png(width: int, height: int, color_type: int = 2, bit_depth: int = 8) -> bytes:
    """A valid PNG of ``width`` x ``height`` of one colour (mid grey), small however many pixels it has:
    colour types 0 grey, 2 RGB, 4 grey + alpha, 6 RGBA; bit depth 8 or 16."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    idat = _deflated_rows(b"\0" + b"\x40" * (width * channels * bit_depth // 8), height)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    chunks = [_chunk(b"IDAT", idat[at : at + (1 << 20)]) for at in range(0, len(idat), 1 << 20)]
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + b"".join(chunks) + _chunk(b"IEND", b"")


def flat_tiff(width: int, height: int, float_values: bool = True) -> bytes:
    """A valid greyscale TIFF (one deflated strip) of ``width`` x ``height`` of one value: 32-bit float (0.5)
    or 8-bit (64)."""
    row = struct.pack("<f", 0.5) * width if float_values else b"\x40" * width
    data = _deflated_rows(row, height)
    entries = [(256, 4, width), (257, 4, height), (258, 3, 32 if float_values else 8), (259, 3, 8), (262, 3, 1),
               (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, len(data)), (284, 3, 1),
               (339, 3, 3 if float_values else 1)]
    data_at = 8 + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        value = data_at if tag == 273 else value
        short = kind == 3
        ifd += struct.pack("<HHIHH", tag, kind, 1, value, 0) if short else struct.pack("<HHII", tag, kind, 1, value)
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + data


def _small_images() -> dict[str, bytes]:
    """Small valid images in the formats a photo folder may hold, the seeds of :func:`fuzzed_corpus`."""
    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    made: dict[str, bytes] = {}
    for name, image, fmt, options in [
        ("base.jpg", rgb, "JPEG", {"quality": 80}), ("prog.jpg", rgb, "JPEG", {"progressive": True}),
        ("rgb.png", rgb, "PNG", {}), ("rgba.png", rgb.convert("RGBA"), "PNG", {}),
        ("pal.png", rgb.convert("P"), "PNG", {"transparency": 0}), ("lace.png", rgb, "PNG", {"interlace": 1}),
        ("grey16.png", rgb.convert("I;16"), "PNG", {}), ("anim.gif", rgb.convert("P"), "GIF", {}),
        ("rgb.bmp", rgb, "BMP", {}), ("rgb.tif", rgb, "TIFF", {"compression": "tiff_deflate"}),
        ("raw.tif", rgb, "TIFF", {}), ("rgb.webp", rgb, "WEBP", {}),
        ("rgb.tga", rgb, "TGA", {"compression": "tga_rle"}),
        ("rgb.ppm", rgb, "PPM", {}), ("icon.ico", rgb, "ICO", {}), ("rgb.qoi", rgb, "QOI", {}),
        ("rgb.sgi", rgb, "SGI", {}), ("rgb.pcx", rgb, "PCX", {}), ("rgb.jp2", rgb, "JPEG2000", {}),
    ]:
        buffer = io.BytesIO()
        try:
            image.save(buffer, fmt, **options)
        except (OSError, KeyError, ValueError):  # a format this Pillow build cannot write
            continue
        made[name] = buffer.getvalue()
    return made


def fuzzed_corpus(count: int, seed: int = 0) -> dict[str, bytes]:
    """``count`` small files, each a valid image of :func:`_small_images` damaged at random (header bytes
    overwritten, often with large numbers, bytes flipped anywhere, cut short, garbage appended) or one of the
    size-declaring files above; names keep the seed's extension. Deterministic for a ``seed``."""
    rng = np.random.default_rng(seed)
    seeds = list(_small_images().items())
    declared = [jpeg_declaring(60000, 60000), jpeg_declaring(20000, 9000, progressive=True),
                png_declaring(1, 2_000_000_000), bmp_rle8_declaring(9000, 9000, covered_rows=4000),
                blp1_embedding_jpeg(12000, 12000), blp2_declaring(1, 84_000_000)]
    files: dict[str, bytes] = {}
    for index in range(count):
        if index % 10 == 9:
            files[f"declared_{index:04d}.jpg"] = declared[(index // 10) % len(declared)]
            continue
        name, data = seeds[int(rng.integers(len(seeds)))]
        damaged = bytearray(data)
        how = int(rng.integers(4))
        if how == 0:  # header fields overwritten, half the time with bytes of a large number
            for _ in range(int(rng.integers(1, 4))):
                at = int(rng.integers(0, min(64, len(damaged) - 4)))
                damaged[at : at + 4] = b"\xff\xff\x7f\x00" if rng.random() < 0.5 else bytes(rng.integers(0, 256, 4))
        elif how == 1:
            for at in rng.integers(0, len(damaged), int(rng.integers(1, 12))):
                damaged[int(at)] ^= 1 << int(rng.integers(8))
        elif how == 2:
            damaged = damaged[: int(rng.integers(0, len(damaged)))]
        else:
            damaged += bytes(rng.integers(0, 256, int(rng.integers(1, 200))).astype(np.uint8))
        files[f"fuzz_{index:04d}_{name}"] = bytes(damaged)
    return files
