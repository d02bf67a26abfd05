"""The bundled technical model (nima_rt/models/technical.onnx), one of the two default models: metadata,
real scores, rankings."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import REPO as ROOT
from PIL import Image, ImageFilter
from typer.testing import CliRunner

from nima_rt import Scorer, ScorerConfig, bundled_models, load_model_file
from nima_rt.cli import app

EXAMPLES = ROOT / "examples" / "photos"

pytestmark = pytest.mark.skipif("technical" not in bundled_models(), reason="no bundled technical model")

# Predicted mean scores of the example photos (ONNX Runtime, CPU, fp32), recorded when the model
# was shipped; tolerance covers ONNX Runtime versions and CPU kernels, not a different model.
GOLDEN = {
    "chelsea.jpg": 5.7470,
    "chelsea_noisy.jpg": 5.0385,
    "coffee.jpg": 5.8544,
    "coffee_blurred.jpg": 5.2546,
    "seeding.jpg": 5.7111,
    "seeding_dark.jpg": 5.2803,
}


def score_files(paths: list[Path]) -> dict[str, float]:
    with Scorer(["technical"], ScorerConfig(batch_size=8, threads=1)) as scorer:
        return {Path(r.path).name: r.scores["technical"].mean for r in scorer.score_paths(paths)}


def test_the_bundled_technical_model() -> None:
    model = load_model_file("technical")
    assert model.path.name == "technical.onnx"
    assert model.path.stat().st_size < 25 * 1024 * 1024
    meta = model.metadata
    # v3: a head on the bundled aesthetic model's network, with that model's preprocessing (one decode serves both).
    assert (meta.name, meta.kind, meta.input_size, meta.backbone) == ("technical", "technical", 224,
                                                                       "keras_mobilenet_v1_1.00_folded")
    assert (meta.resize.policy, meta.resize.interpolation, meta.resize.jpeg_draft) == ("squash", "nearest", False)
    assert meta.resize == load_model_file("aesthetic").metadata.resize
    assert meta.parent["name"] == "aesthetic" and meta.parent["sha256"] == load_model_file("aesthetic").sha256
    assert "KADID-10k" in meta.trained_on
    assert any("KADID-10k" in line for line in meta.licenses)
    assert any(line.startswith("Apache-2.0, Copyright 2018 idealo internet GmbH") for line in meta.licenses)
    assert sum(line.startswith("photo ") for line in meta.licenses) == 75  # 54 training + 21 validation photos
    assert meta.source_checkpoint_sha256
    # The held-out figures it ships with meet the acceptance bar of docs/reference/models.md.
    for name in ("gaussian_blur", "jpeg", "white_noise", "underexposure"):
        assert meta.metrics[f"test_spearman_{name}"] <= -0.95, name
    assert meta.metrics["test_pair_accuracy_primary"] >= 0.97
    assert meta.metrics["test_spearman_oversharpen"] <= -0.8  # v1 scored over-sharpened copies higher
    # What it still does not see is said where users look (nima-rt models / info).
    assert meta.blind_spots.startswith("ranks overexposure (-0.38), tone mapping (-0.45) weakly")
    assert "no interiors or rooms" in meta.blind_spots


def test_example_photos_get_their_recorded_scores() -> None:
    scores = score_files(sorted(EXAMPLES.glob("*.jpg")))
    assert set(scores) == set(GOLDEN)
    for name, expected in GOLDEN.items():
        assert scores[name] == pytest.approx(expected, abs=0.02), name
    assert all(1.0 <= s <= 10.0 for s in scores.values())


def test_clean_photos_outscore_their_degraded_copies() -> None:
    scores = score_files(sorted(EXAMPLES.glob("*.jpg")))
    # v3's scores are compressed (clean held-out photos average 5.8, the strongest blur 4.5:
    # docs/reference/models.md), so the gaps are small; the order is what the ranking uses.
    assert scores["coffee.jpg"] > scores["coffee_blurred.jpg"] + 0.4
    assert scores["chelsea.jpg"] > scores["chelsea_noisy.jpg"] + 0.4
    assert scores["seeding.jpg"] > scores["seeding_dark.jpg"] + 0.3  # 1.5 EV darker (v1: +0.24)


def test_over_sharpened_copies_score_below_their_originals() -> None:
    # The issue that made v3: Pillow's UnsharpMask(radius=3, percent=300) raised v1's score on every photo tried
    # (astronaut 6.10 -> 7.23). Made here with Pillow only, on the example photos and five photos of scikit-image
    # and scikit-learn (v3 never saw any of them).
    data = pytest.importorskip("skimage.data")
    sklearn_datasets = pytest.importorskip("sklearn.datasets")

    photos = [Image.open(path).convert("RGB") for path in sorted(EXAMPLES.glob("*.jpg")) if "_" not in path.stem]
    photos += [Image.fromarray(array) for array in (data.astronaut(), data.rocket(), data.stereo_motorcycle()[0],
                                                    *sklearn_datasets.load_sample_images().images)]
    sharpened = [photo.filter(ImageFilter.UnsharpMask(radius=3, percent=300, threshold=0)) for photo in photos]
    with Scorer(["technical"], ScorerConfig(batch_size=16, threads=1)) as scorer:
        means = np.array([r.scores["technical"].mean for r in scorer.score_images([*photos, *sharpened])])
    drop = means[: len(photos)] - means[len(photos):]
    # chelsea, coffee, seeding, astronaut, rocket, motorcycle, china, flower: all fall but seeding (1024 x 576,
    # where a 3-pixel halo all but vanishes at 224 x 224: +0.09); v1 rose on all four photos tried.
    np.testing.assert_allclose(drop, [0.13, 0.72, -0.09, 0.81, 0.27, 1.08, 1.12, 0.36], atol=0.02)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def test_scores_fall_as_degradation_grows() -> None:
    # Distortions made here with Pillow only (not the training code): blur radius and JPEG quality.
    with Image.open(EXAMPLES / "coffee.jpg") as opened:
        photo = opened.convert("RGB")
    blurred = [photo.filter(ImageFilter.GaussianBlur(r)) for r in (0.8, 1.6, 3.2)]
    compressed = [_jpeg(photo, q) for q in (30, 12, 5)]
    array = np.asarray(photo).astype(np.float32)
    darker = [Image.fromarray((array * f).astype(np.uint8)) for f in (0.6, 0.35, 0.2)]
    with Scorer([None], ScorerConfig(batch_size=16, threads=1)) as scorer:
        images = [photo, *blurred, *compressed, *darker]
        means = [r.scores["technical"].mean for r in scorer.score_images(images)]
    clean, series = means[0], [means[1:4], means[4:7], means[7:10]]
    for name, values in zip(("blur", "jpeg", "dark"), series, strict=True):
        assert clean > values[0], (name, clean, values)
        assert values == sorted(values, reverse=True), (name, values)


def test_cli_scores_the_examples_with_no_model_option() -> None:
    result = CliRunner().invoke(app, ["score", str(EXAMPLES), "--quiet", "--threads", "1"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 6
    assert all(row["error"] == "" and 1.0 <= float(row["technical_mean"]) <= 10.0 for row in rows)
