"""The Python API: real values, order under threads, shared decode, bad inputs as rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.photos import photo_like
from helpers.tiny_models import reference_scores, write_tiny_model
from PIL import Image

from nima_rt import ContractError, ModelNotFound, Scorer, ScorerConfig
from nima_rt.contract.spec import ResizeSpec
from nima_rt.io.decode import Preprocess, decode_file


def test_scores_match_the_reference_computation(tiny_model: Path, photo_dir: Path) -> None:
    paths = sorted(str(p) for p in photo_dir.rglob("*") if p.is_file())
    with Scorer([tiny_model]) as scorer:
        results = list(scorer.score_paths([photo_dir]))
    assert [r.path for r in results] == paths
    inputs = np.stack([decode_file(p, [Preprocess(32, ResizeSpec())])[0] for p in paths])
    dist, mean, std = reference_scores(inputs)
    for row, result in enumerate(results):
        score = result.scores["tiny"]
        assert score.mean == pytest.approx(float(mean[row]), abs=1e-5)
        assert score.std == pytest.approx(float(std[row]), abs=1e-5)
        assert np.allclose(score.dist, dist[row], atol=1e-6)
        assert sum(score.dist) == pytest.approx(1.0, abs=1e-5)


def test_order_is_kept_under_threads_and_small_batches(tiny_model: Path, tmp_path: Path) -> None:
    names = []
    for index in range(57):
        name = tmp_path / f"{index:03d}.png"
        Image.new("RGB", (8 + index % 13, 8), (index * 4, 0, 0)).save(name)
        names.append(str(name))
    (tmp_path / "030_bad.png").write_text("not an image")
    config = ScorerConfig(batch_size=4, workers=5, prefetch_batches=1)
    with Scorer([tiny_model], config) as scorer:
        results = list(scorer.score_paths(names[:30] + [str(tmp_path / "030_bad.png")] + names[30:]))
    assert [r.path for r in results] == names[:30] + [str(tmp_path / "030_bad.png")] + names[30:]
    means = [r.scores["tiny"].mean for r in results if r.ok]
    assert means == sorted(means)  # redder files later: strictly rising means prove rows were not swapped
    assert results[30].error == f"{tmp_path / '030_bad.png'}: not an image file Pillow can read"


def test_several_models_read_each_file_once_and_decode_once_per_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nima_rt.io.decode as decode

    small = write_tiny_model(tmp_path / "a.onnx", name="small", size=16)  # JPEG draft to >= 16 px
    large = write_tiny_model(tmp_path / "b.onnx", name="large", size=48, resize=ResizeSpec(policy="center_crop"))
    exact = write_tiny_model(tmp_path / "c.onnx", name="exact", size=16, resize=ResizeSpec(jpeg_draft=False))
    same_name = write_tiny_model(tmp_path / "d.onnx", name="small", size=16)
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(3):
        Image.fromarray(photo_like(index, 400, 300)).save(photos / f"{index}.jpg", quality=90)
    Image.fromarray(photo_like(3, 400, 300)).save(photos / "3.png")
    reads: list[str] = []
    decodes: list[tuple[str, object]] = []
    real_open, real_decode = decode._open_file, decode._rgb_from_open

    def counting_open(path, label):
        reads.append(path)
        return real_open(path, label)

    def counting_decode(image, label, max_pixels, side, *rest, **named):
        decodes.append((label, side))
        return real_decode(image, label, max_pixels, side, *rest, **named)

    monkeypatch.setattr(decode, "_open_file", counting_open)
    monkeypatch.setattr(decode, "_rgb_from_open", counting_decode)
    with Scorer([small, large, exact, same_name], ScorerConfig(workers=2)) as scorer:
        assert scorer.columns == ["a", "large", "exact", "d"]  # two models named small: told apart by file stem
        together = {Path(r.path).name: r.scores for r in scorer.score_paths([photos])}
    assert sorted(Path(p).name for p in reads) == ["0.jpg", "1.jpg", "2.jpg", "3.png"]  # one read per file
    per_file = {name: sorted(map(str, (side for label, side in decodes if label.endswith(name)))) for name in together}
    # 400x300 JPEG: >= 16 px is a 1/8 draft, >= 48 px a 1/4 draft, the exact model the full decode; a PNG has no draft
    assert per_file == {"0.jpg": ["16", "48", "None"], "1.jpg": ["16", "48", "None"], "2.jpg": ["16", "48", "None"],
                        "3.png": ["None"]}
    monkeypatch.undo()
    for column, model, alone_column in (("a", small, "small"), ("large", large, "large"), ("exact", exact, "exact")):
        with Scorer([model]) as alone:
            for result in alone.score_paths([photos]):
                assert together[Path(result.path).name][column] == result.scores[alone_column]  # bit for bit
    assert all(scores["a"] == scores["d"] for scores in together.values())


def test_pil_images_and_arrays(tiny_model: Path) -> None:
    images = [Image.fromarray(photo_like(1)), photo_like(2), np.zeros((4, 4), np.float32)]
    with Scorer([tiny_model]) as scorer:
        results = list(scorer.score_images(images, names=["pil", "array", "bad"]))
    assert [r.path for r in results] == ["pil", "array", "bad"]
    assert results[0].ok and results[1].ok
    assert results[2].error == "array input must be a numpy uint8 array, got float32"
    resized = Image.fromarray(photo_like(1)).resize((32, 32), Image.Resampling.BILINEAR)
    expected = reference_scores(np.stack([np.asarray(resized)]))
    assert results[0].scores["tiny"].mean == pytest.approx(float(expected[1][0]), abs=1e-5)


def test_missing_paths_become_rows(tiny_model: Path, tmp_path: Path) -> None:
    with Scorer([tiny_model]) as scorer:
        results = list(scorer.score_paths([tmp_path / "missing.jpg"]))
    assert results[0].error == f"{tmp_path / 'missing.jpg'}: no such file (or a broken symlink)"


def test_inference_failure_marks_the_batch_and_goes_on(tiny_model: Path, photo_dir: Path) -> None:
    # one session: batches run one after another, so "the second call" is the second batch
    # (parallel sessions: tests/runtime/test_cpu_schedule.py)
    with Scorer([tiny_model], ScorerConfig(batch_size=2, threads=1)) as scorer:
        backend = scorer.models[0].backend
        real_run = backend.run
        calls = {"n": 0}

        def flaky(images):
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("device lost")
            return real_run(images)

        backend.run = flaky  # type: ignore[method-assign]
        results = list(scorer.score_paths([photo_dir]))
    assert [r.ok for r in results] == [True, True, False, False, True, True]
    assert results[2].error.endswith(": inference failed (RuntimeError: device lost)")


def test_bad_model_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01 not a model at all")
    with pytest.raises(ContractError, match=r"junk.onnx: not an ONNX model file"):
        Scorer([tmp_path / "junk.onnx"])
    no_meta = write_tiny_model(tmp_path / "plain.onnx", metadata=False)
    with pytest.raises(ContractError) as info:
        Scorer([no_meta])
    assert str(info.value) == (
        f"{no_meta}: ONNX model has no 'nima_rt' metadata; it was not exported by nima-rt (use `nima-rt export`)"
    )
    with pytest.raises(ModelNotFound, match=r"nope.onnx: no such model file or bundled model name"):
        Scorer([tmp_path / "nope.onnx"])
    with pytest.raises(ModelNotFound, match=r"^aesthetics: no such model file or bundled model name \(bundled: "):
        Scorer(["aesthetics"])


def test_import_leaves_torch_and_gpu_libraries_unloaded() -> None:
    code = (
        "import sys, nima_rt, nima_rt.cli, nima_rt.runtime.scorer; "
        "heavy = ('torch', 'tensorrt', 'torchvision', 'ray', 'matplotlib', 'onnx', 'cuda'); "
        "heavy = [m for m in heavy if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == ""


def test_precision_reaches_the_backend_options(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nima_rt.runtime.scorer as scorer_module

    seen = []
    real_choose = scorer_module.choose_backend

    def spy(model, device, backend, options):
        seen.append(options)
        return real_choose(model, device, backend, options)

    monkeypatch.setattr(scorer_module, "choose_backend", spy)
    with Scorer([tiny_model], ScorerConfig(precision="fp32", batch_size=4)):
        pass
    assert seen[0].precision == "fp32" and seen[0].max_batch == 4
    with pytest.raises(ValueError, match="precision must be one of fp32, fp16, int8, got 'fp8'"):
        ScorerConfig(precision="fp8")


def test_bytes_score_exactly_as_their_file(tiny_model: Path, tmp_path: Path) -> None:
    paths = []
    for index in range(4):
        path = tmp_path / f"{index}.jpg"
        Image.fromarray(photo_like(index, 640, 480)).save(path, quality=88)  # large enough for the draft
        paths.append(path)
    Image.fromarray(photo_like(9, 64, 48)).save(tmp_path / "p.png")
    paths.append(tmp_path / "p.png")
    with Scorer([tiny_model]) as scorer:
        from_files = list(scorer.score_paths(paths))
        from_bytes = list(scorer.score_bytes([p.read_bytes() for p in paths], names=[str(p) for p in paths]))
        broken = list(scorer.score_bytes([b"\xff\xd8 not really"]))
        from_pixels = list(scorer.score_images([Image.open(paths[0]).convert("RGB")]))
    assert [r.scores for r in from_bytes] == [r.scores for r in from_files]  # identical, not close
    assert all(r.ok for r in from_files)
    assert broken[0].error == "<bytes 0>: not an image file Pillow can read"
    # decoded pixels get no draft: the documented difference that score_bytes exists to avoid
    assert from_pixels[0].scores["tiny"].mean != from_files[0].scores["tiny"].mean


def test_a_single_path_string_is_one_path(tiny_model: Path, photo_dir: Path) -> None:
    with Scorer([tiny_model]) as scorer:
        as_string = [r.path for r in scorer.score_paths(str(photo_dir))]
        as_list = [r.path for r in scorer.score_paths([photo_dir])]
    assert as_string == as_list and len(as_string) == 6


def test_a_closed_scorer_raises(tiny_model: Path, photo_dir: Path) -> None:
    scorer = Scorer([tiny_model])
    scorer.close()
    message = r"this Scorer is closed: create a new one \(or score inside its `with` block\)"
    for call in (lambda: scorer.score_paths([photo_dir]), lambda: scorer.score_images([photo_like(1)]),
                 lambda: scorer.score_bytes([b""]), lambda: next(scorer.score_items([]))):
        with pytest.raises(RuntimeError, match=message):
            call()


def test_name_equals_file_sets_the_column(tiny_model: Path, tmp_path: Path, photo_dir: Path) -> None:
    with Scorer([f"ava={tiny_model}", tiny_model]) as scorer:
        assert scorer.columns == ["ava", "tiny"]
        result = next(scorer.score_paths(photo_dir))
    assert result.scores["ava"] == result.scores["tiny"]
    linked = tmp_path / "odd=name.onnx"  # an existing path is never split at '='
    linked.symlink_to(tiny_model)
    with Scorer([str(linked)]) as scorer:
        assert scorer.columns == ["tiny"]
    with pytest.raises(ModelNotFound, match=r"bad name=x.onnx: expected NAME=FILE with NAME 1 to 64 characters"):
        Scorer(["bad name=x.onnx"])
