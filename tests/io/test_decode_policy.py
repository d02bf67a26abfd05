"""The decode policy: a spec's array never depends on the other specs decoded with it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from helpers.photos import photo_like
from PIL import Image

import nima_rt.io.decode as decode
from nima_rt.contract.spec import ResizeSpec
from nima_rt.io.decode import DecodeError, DecodeOptions, Preprocess, decode_bytes, decode_file
from nima_rt.io.decode_policy import decode_groups, draft_side, jpeg_scale

DRAFT_16 = Preprocess(16, ResizeSpec())
DRAFT_48 = Preprocess(48, ResizeSpec(policy="center_crop"))
EXACT_16 = Preprocess(16, ResizeSpec(jpeg_draft=False))
NEAREST_EXACT = Preprocess(24, ResizeSpec("squash", "nearest", jpeg_draft=False))
SPECS = [DRAFT_16, DRAFT_48, EXACT_16, NEAREST_EXACT]


def jpeg(path: Path, width: int, height: int, seed: int = 0) -> Path:
    Image.fromarray(photo_like(seed, width, height)).save(path, quality=90)
    return path


def test_draft_side_follows_the_spec_and_the_run_switch() -> None:
    assert draft_side(DRAFT_16) == 16 and draft_side(DRAFT_48) == 48
    assert draft_side(EXACT_16) is None
    assert draft_side(DRAFT_16, jpeg_draft=False) is None  # --full-decode


@pytest.mark.parametrize("size", [(400, 300), (300, 400), (129, 2000), (17, 17), (640, 48), (3000, 2000)])
@pytest.mark.parametrize("side", [16, 48, 224])
def test_jpeg_scale_is_the_scale_pillow_drafts_to(size: tuple[int, int], side: int) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 120, 30)).save(buffer, "JPEG")
    with Image.open(buffer) as image:
        image.draft("RGB", (side, side))
        assert image.decoderconfig[0] == jpeg_scale(size, side)


def test_groups_merge_only_decodes_that_give_the_same_pixels() -> None:
    sides = [16, 48, None, 16]
    assert decode_groups(sides, (400, 300), is_jpeg=False) == [(None, [0, 1, 2, 3])]
    assert decode_groups(sides, (400, 300), is_jpeg=True) == [(16, [0, 3]), (48, [1]), (None, [2])]
    # a JPEG too small for the 48 px draft to scale: that draft is the exact decode
    assert decode_groups(sides, (90, 60), is_jpeg=True) == [(16, [0, 3]), (None, [1, 2])]


@pytest.mark.parametrize("size", [(400, 300), (90, 60), (1000, 700)])
def test_each_spec_decodes_alone_as_it_does_together(tmp_path: Path, size: tuple[int, int]) -> None:
    path = jpeg(tmp_path / "x.jpg", *size)
    together = decode_file(path, SPECS)
    for spec, array in zip(SPECS, together, strict=True):
        assert np.array_equal(decode_file(path, [spec])[0], array)


def test_a_draft_that_cannot_scale_is_the_exact_decode(tmp_path: Path) -> None:
    path = jpeg(tmp_path / "small.jpg", 90, 60)
    drafted = decode_file(path, [Preprocess(48, ResizeSpec("squash", "nearest"))])[0]
    exact = decode_file(path, [Preprocess(48, ResizeSpec("squash", "nearest", jpeg_draft=False))])[0]
    assert np.array_equal(drafted, exact)


def test_full_decode_switch_makes_every_spec_exact(tmp_path: Path) -> None:
    path = jpeg(tmp_path / "x.jpg", 400, 300)
    forced = decode_file(path, [DRAFT_16], DecodeOptions(jpeg_draft=False))[0]
    assert np.array_equal(forced, decode_file(path, [EXACT_16])[0])
    assert not np.array_equal(forced, decode_file(path, [DRAFT_16])[0])


def test_streams_bytes_and_large_files_give_the_same_arrays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = jpeg(tmp_path / "x.jpg", 400, 300)
    expected = decode_file(path, SPECS)
    data = path.read_bytes()
    assert all(np.array_equal(a, b) for a, b in zip(decode_bytes(data, SPECS), expected, strict=True))

    class OneWay(io.RawIOBase):  # a pipe-like stream: no seeking
        def __init__(self) -> None:
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
            chunk = self.inner.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    assert all(np.array_equal(a, b) for a, b in zip(decode_file(OneWay(), SPECS, label="pipe"), expected, strict=True))
    monkeypatch.setattr(decode, "MAX_ENCODED_IN_MEMORY", 10)  # re-read from the open file for each decode
    assert all(np.array_equal(a, b) for a, b in zip(decode_file(path, SPECS), expected, strict=True))


def test_failures_of_a_several_decode_file_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DecodeError, match=r"bad\.jpg: not an image file Pillow can read$"):
        decode_file(tmp_path / "bad.jpg", SPECS)
    good = jpeg(tmp_path / "cut.jpg", 400, 300).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 2])
    with pytest.raises(DecodeError, match=r"cut\.jpg: cannot decode image \(image file is truncated"):
        decode_file(tmp_path / "cut.jpg", SPECS)
    with pytest.raises(DecodeError, match=r"missing\.jpg: no such file \(or a broken symlink\)$"):
        decode_file(tmp_path / "missing.jpg", SPECS)
