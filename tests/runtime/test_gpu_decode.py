"""GPU decode (nima_rt.runtime.gpu_decode): routing, orientation, Pillow-equal resampling and the Scorer hook.

On CPU the decoder runs with ``device="cpu"`` (torchvision's libjpeg decoder instead of nvJPEG, the
same orientation and resampling code); the test marked ``gpu`` measures nvJPEG against the CPU path.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers.photos import photo_like
from PIL import Image

from nima_rt.contract.spec import INTERPOLATIONS, ResizeSpec
from nima_rt.io.decode import DecodeError, Preprocess, decode_file
from nima_rt.io.inputs import InputItem
from nima_rt.runtime import gpu_decode, scorer
from nima_rt.runtime.backends import BackendUnavailable

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")


def save_jpeg(path: Path, array: np.ndarray, **kwargs) -> str:
    Image.fromarray(array).save(path, quality=90, **kwargs)
    return str(path)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_equals_pillow_exif_transpose(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[gpu_decode.EXIF_ORIENTATION] = orientation
    path = save_jpeg(tmp_path / "o.jpg", photo_like(1, 40, 24), exif=exif)
    spec = Preprocess(16, ResizeSpec("squash", "nearest", jpeg_draft=False))
    decoder = gpu_decode.GpuDecoder([spec], device="cpu")
    with ThreadPoolExecutor(1) as pool:
        [got] = decoder.decode_paths([path], pool)
    assert decoder.gpu_decoded == 1
    # nearest picks whole pixels, so orientation errors would show as large differences
    assert np.array_equal(got[0], decode_file(path, [spec])[0])


@pytest.mark.parametrize("interpolation", sorted(INTERPOLATIONS))
@pytest.mark.parametrize("policy", ["squash", "center_crop"])
def test_resampling_is_within_one_grey_level_of_pillow(tmp_path: Path, interpolation: str, policy: str) -> None:
    paths = [save_jpeg(tmp_path / f"{i}.jpg", photo_like(i, 160 + 48 * i, 120)) for i in range(3)]
    spec = Preprocess(48, ResizeSpec(policy, interpolation, jpeg_draft=False))
    decoder = gpu_decode.GpuDecoder([spec], device="cpu")
    with ThreadPoolExecutor(2) as pool:
        got = decoder.decode_paths(paths, pool)
    for arrays, path in zip(got, paths, strict=True):
        want = decode_file(path, [spec])[0]
        assert arrays[0].shape == want.shape == (48, 48, 3)
        assert np.abs(arrays[0].astype(int) - want.astype(int)).max() <= 1


def test_pillow_weights_match_pillow_on_a_row() -> None:
    row = np.linspace(0, 255, 37).round().astype(np.uint8)[None, :]
    for interpolation, resample in INTERPOLATIONS.items():
        if interpolation == "nearest":
            want = np.asarray(Image.fromarray(row).resize((11, 1), resample))[0]
            got = row[0, gpu_decode.nearest_indices(37, 11)]
        else:
            want = np.asarray(Image.fromarray(row).resize((11, 1), resample))[0].astype(int)
            got = (gpu_decode.pillow_weights(37, 11, interpolation) @ row[0].astype(np.float32)).round()
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, interpolation


def test_other_formats_and_bad_files_go_to_the_cpu_decoder_with_its_messages(tmp_path: Path) -> None:
    good = save_jpeg(tmp_path / "good.jpg", photo_like(2))
    grey = save_jpeg(tmp_path / "grey.jpg", photo_like(3)[:, :, 0])
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(photo_like(4)).convert("CMYK").save(cmyk, quality=90)
    png = tmp_path / "p.png"
    Image.fromarray(photo_like(5)).save(png)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    missing = str(tmp_path / "missing.jpg")
    paths = [good, grey, str(cmyk), str(png), str(broken), missing]
    spec = Preprocess(32, ResizeSpec("squash", "bilinear", jpeg_draft=False))
    decoder = gpu_decode.GpuDecoder([spec], device="cpu")
    items = [InputItem(p) for p in paths] + [InputItem("unlisted", "unlisted: cannot list folder (denied)")]
    with ThreadPoolExecutor(2) as pool:
        rows = decoder.decode_items(items, pool)
    assert [r[0] for r in rows] == paths + ["unlisted"]
    assert decoder.gpu_decoded == 2 and decoder.cpu_decoded == 4
    for path, arrays, error in rows[:4]:
        assert error is None
        assert np.abs(arrays[0].astype(int) - decode_file(path, [spec])[0].astype(int)).max() <= 1
    for (path, arrays, error) in rows[4:6]:
        with pytest.raises(DecodeError) as cpu:
            decode_file(path, [spec])
        assert arrays is None and error == str(cpu.value)
    assert rows[6] == ("unlisted", None, "unlisted: cannot list folder (denied)")


def test_choose_gpu_decode_modes() -> None:
    spec = [Preprocess(32, ResizeSpec())]
    assert gpu_decode.choose_gpu_decode("off", spec, scorer.DecodeOptions(), on_gpu=True).decoder is None
    auto_cpu = gpu_decode.choose_gpu_decode("auto", spec, scorer.DecodeOptions(), on_gpu=False)
    assert auto_cpu.decoder is None and auto_cpu.summary is None
    if torch.cuda.is_available():
        return
    message = f"GPU decode: torch {torch.__version__} cannot use the GPU (torch.cuda.is_available() is False)"
    auto_gpu = gpu_decode.choose_gpu_decode("auto", spec, scorer.DecodeOptions(), on_gpu=True)
    assert auto_gpu.decoder is None and auto_gpu.summary == f"decode: CPU ({message})"
    with pytest.raises(BackendUnavailable) as caught:
        gpu_decode.choose_gpu_decode("on", spec, scorer.DecodeOptions(), on_gpu=False)
    assert str(caught.value) == message


def test_scorer_uses_the_gpu_decoder_through_its_hook(
    tiny_model: Path, photo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (photo_dir / "listing_a" / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    with scorer.Scorer([tiny_model], scorer.ScorerConfig(batch_size=2, gpu_decode="off")) as cpu_scorer:
        want = list(cpu_scorer.score_paths([photo_dir]))
    made: list[gpu_decode.GpuDecoder] = []

    def on_cpu(mode, specs, options, on_gpu):
        made.append(gpu_decode.GpuDecoder(specs, options, device="cpu"))
        return gpu_decode.GpuDecodeChoice(made[0], "decode: test decoder on cpu")

    monkeypatch.setattr(scorer, "choose_gpu_decode", on_cpu)
    with scorer.Scorer([tiny_model], scorer.ScorerConfig(batch_size=2, gpu_decode="on")) as gpu_scorer:
        assert gpu_scorer.backend_summary[-1] == "decode: test decoder on cpu"
        got = list(gpu_scorer.score_paths([photo_dir]))
    assert [r.path for r in got] == [r.path for r in want]
    assert [r.error for r in got] == [r.error for r in want]
    assert made[0].gpu_decoded == 3  # the three good JPEGs; PNGs and the broken file went to the CPU
    for a, b in zip(got, want, strict=True):
        if a.ok:  # the CPU path may draft JPEGs (1/2 scale here); the tiny model averages channels
            assert abs(a.scores["tiny"].mean - b.scores["tiny"].mean) < 1e-3


def test_scorer_config_refuses_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="gpu_decode must be one of auto, on, off, got 'gpu'"):
        scorer.ScorerConfig(gpu_decode="gpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs torch with a usable CUDA GPU")
def test_nvjpeg_against_the_cpu_decoder(tmp_path: Path) -> None:
    paths = [save_jpeg(tmp_path / f"{i}.jpg", photo_like(i, 1024, 768)) for i in range(8)]
    spec = Preprocess(224, ResizeSpec("squash", "bilinear", jpeg_draft=False))
    decoder = gpu_decode.GpuDecoder([spec], device="cuda")
    with ThreadPoolExecutor(4) as pool:
        got = decoder.decode_paths(paths, pool)
    assert decoder.gpu_decoded == 8
    diffs = [np.abs(g[0].astype(int) - decode_file(p, [spec])[0].astype(int)) for g, p in zip(got, paths, strict=True)]
    # nvJPEG's IDCT and chroma upsampling differ slightly from libjpeg-turbo; the resize is Pillow's
    assert max(d.mean() for d in diffs) < 1.0
    assert max(int(d.max()) for d in diffs) <= 16
