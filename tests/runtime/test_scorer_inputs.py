"""What Scorer.score_bytes / score_images accept: one item is one item, file objects are read, anything
else is a TypeError that names what was expected (issue 25, item 13)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from helpers.photos import photo_like
from PIL import Image

from nima_rt import Scorer


@pytest.fixture(scope="module")
def scorer(tiny_model: Path):
    with Scorer([tiny_model]) as opened:
        yield opened


@pytest.fixture(scope="module")
def jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "photo.jpg"
    Image.fromarray(photo_like(3, 320, 240)).save(path, quality=90)
    return path


def _means(results) -> list[float]:
    return [r.scores["tiny"].mean for r in results]


def test_one_array_is_one_image_not_its_pixel_rows(scorer: Scorer) -> None:
    array = photo_like(1, 64, 48)
    single = list(scorer.score_images(array))
    assert [r.path for r in single] == ["<image 0>"]
    assert _means(single) == _means(scorer.score_images([array]))
    grey = list(scorer.score_images(array[:, :, 0]))
    assert len(grey) == 1 and grey[0].ok


def test_a_4d_array_is_a_batch_of_images(scorer: Scorer) -> None:
    stack = np.stack([photo_like(seed, 40, 40) for seed in range(3)])
    assert _means(scorer.score_images(stack)) == _means(scorer.score_images(list(stack)))


def test_one_pil_image_is_one_image(scorer: Scorer) -> None:
    image = Image.fromarray(photo_like(2, 50, 40))
    results = list(scorer.score_images(image, names="listing-photo"))
    assert [r.path for r in results] == ["listing-photo"]
    assert _means(results) == _means(scorer.score_images([image]))


def test_one_bytes_object_is_one_image(scorer: Scorer, jpeg: Path) -> None:
    data = jpeg.read_bytes()
    single = list(scorer.score_bytes(data))
    assert [r.path for r in single] == ["<bytes 0>"]
    assert single[0].scores == next(scorer.score_paths(jpeg)).scores  # identical to the file
    assert list(scorer.score_bytes(bytearray(data)))[0].scores == single[0].scores
    assert list(scorer.score_bytes(memoryview(data)))[0].scores == single[0].scores


def test_file_objects_are_read_and_named(scorer: Scorer, jpeg: Path) -> None:
    expected = next(scorer.score_paths(jpeg)).scores
    from_buffer = list(scorer.score_bytes(io.BytesIO(jpeg.read_bytes())))
    assert from_buffer[0].path == "<bytes 0>" and from_buffer[0].scores == expected
    with open(jpeg, "rb") as handle:
        from_file = list(scorer.score_bytes([handle, io.BytesIO(jpeg.read_bytes())]))
    assert [r.path for r in from_file] == [str(jpeg), "<bytes 1>"]
    assert [r.scores for r in from_file] == [expected, expected]


class _AsyncUpload:
    """What Starlette/FastAPI hand a handler: an async read() and the spooled file underneath."""

    def __init__(self, data: bytes, filename: str) -> None:
        self.file = io.BytesIO(data)
        self.filename = filename

    async def read(self, size: int = -1) -> bytes:  # pragma: no cover - never awaited by the Scorer
        return self.file.read(size)


class _FlaskLikeUpload:
    """werkzeug's FileStorage: a synchronous read() and a filename."""

    def __init__(self, data: bytes, filename: str) -> None:
        self.stream = io.BytesIO(data)
        self.filename = filename

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)


def test_web_framework_uploads_are_accepted(scorer: Scorer, jpeg: Path) -> None:
    expected = next(scorer.score_paths(jpeg)).scores
    results = list(scorer.score_bytes([_AsyncUpload(jpeg.read_bytes(), "a.jpg"),
                                       _FlaskLikeUpload(jpeg.read_bytes(), "b.jpg")]))
    assert [(r.path, r.scores) for r in results] == [("a.jpg", expected), ("b.jpg", expected)]


def test_a_real_starlette_upload_is_accepted(scorer: Scorer, jpeg: Path) -> None:
    datastructures = pytest.importorskip("starlette.datastructures", reason="starlette: the 'serve' extra")
    upload = datastructures.UploadFile(io.BytesIO(jpeg.read_bytes()), filename="upload.jpg")
    result = next(scorer.score_bytes(upload))
    assert result.path == "upload.jpg" and result.scores == next(scorer.score_paths(jpeg)).scores


def test_unreadable_streams_are_error_rows(scorer: Scorer, jpeg: Path) -> None:
    closed = io.BytesIO(jpeg.read_bytes())
    closed.close()

    class Broken(io.RawIOBase):
        def read(self, size: int = -1) -> bytes:
            raise ConnectionResetError(104, "Connection reset by peer")

    results = list(scorer.score_bytes([closed, Broken(), jpeg.read_bytes()]))
    assert results[0].error == "<bytes 0>: cannot read the stream (ValueError: I/O operation on closed file.)"
    assert results[1].error == "<bytes 1>: cannot read the stream (ConnectionResetError: [Errno 104] Connection " \
                               "reset by peer)"
    assert results[2].ok  # the run goes on


@pytest.mark.parametrize(("call", "message"), [
    (lambda s, p: s.score_bytes(str(p)),
     r"score_bytes takes encoded image bytes .* or an iterable of them; got str; '.*photo.jpg' looks like a path: "
     r"use score_paths for files"),
    (lambda s, p: s.score_bytes(p), r"got PosixPath; .* use score_paths for files"),
    (lambda s, p: s.score_bytes(42), r"score_bytes takes .*; got int$"),
    (lambda s, p: s.score_images(p.read_bytes()),
     r"score_images takes Pillow images or numpy uint8 arrays, or an iterable of them; got bytes; use score_bytes "
     r"for encoded image files"),
    (lambda s, p: s.score_images(str(p)), r"got str; '.*photo.jpg' looks like a path: use score_paths for files"),
])
def test_wrong_argument_types_are_clear_type_errors(scorer: Scorer, jpeg: Path, call, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        list(call(scorer, jpeg))


def test_wrong_item_types_are_clear_type_errors(scorer: Scorer, jpeg: Path, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"score_bytes: item 1 is str, expected encoded image bytes .*use score_paths"):
        list(scorer.score_bytes([jpeg.read_bytes(), str(jpeg)]))
    with pytest.raises(TypeError, match=r"score_images: item 0 is bytes, expected Pillow images .*use score_bytes"):
        list(scorer.score_images([jpeg.read_bytes()]))
    text = tmp_path / "t.txt"
    text.write_text("x")
    with open(text, encoding="utf-8") as handle, \
            pytest.raises(TypeError, match=r"item 0's read\(\) returned str, expected bytes \(open the file in "
                                           r"binary mode, 'rb'\)"):
        list(scorer.score_bytes(handle))


def test_names_must_cover_the_inputs(scorer: Scorer, jpeg: Path) -> None:
    with pytest.raises(ValueError, match="score_bytes: fewer names than inputs"):
        list(scorer.score_bytes([jpeg.read_bytes()] * 2, names=["only-one"]))


def test_decode_then_score_decoded_equals_score_bytes(scorer: Scorer, jpeg: Path) -> None:
    decoded = [scorer.decode_bytes(jpeg.read_bytes(), "x.jpg"), scorer.decode_bytes(b"junk", "junk.bin")]
    assert decoded[1].error == "junk.bin: not an image file Pillow can read" and decoded[1].arrays is None
    results = [row for batch in scorer.score_decoded(decoded) for row in batch.rows()]
    assert results[0].scores == next(scorer.score_paths(jpeg)).scores
    assert results[1].error == "junk.bin: not an image file Pillow can read"
