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
    "chelsea.jpg": 5.6601,
    "chelsea_noisy.jpg": 4.8650,
    "coffee.jpg": 6.8597,
    "coffee_blurred.jpg": 4.1082,
    "seeding.jpg": 4.5100,
    "seeding_dark.jpg": 4.2714,
}


def score_files(paths: list[Path]) -> dict[str, float]:
    with Scorer(["technical"], ScorerConfig(batch_size=8, threads=1)) as scorer:
        return {Path(r.path).name: r.scores["technical"].mean for r in scorer.score_paths(paths)}


def test_the_bundled_technical_model() -> None:
    model = load_model_file("technical")
    assert model.path.name == "technical.onnx"
    assert model.path.stat().st_size < 25 * 1024 * 1024
    meta = model.metadata
    assert (meta.name, meta.kind, meta.input_size, meta.backbone) == ("technical", "technical", 224,
                                                                       "efficientnet_lite0")
    assert (meta.resize.policy, meta.resize.interpolation) == ("squash", "bilinear")
    assert "KADID-10k" in meta.trained_on
    assert any("KADID-10k" in line for line in meta.licenses)
    assert any(line.startswith("photo ") for line in meta.licenses)
    assert meta.source_checkpoint_sha256
    # The held-out figures it ships with meet the acceptance bar of docs/reference/models.md.
    for name in ("gaussian_blur", "jpeg", "white_noise", "underexposure"):
        assert meta.metrics[f"test_spearman_{name}"] <= -0.9, name
    assert meta.metrics["test_pair_accuracy_primary"] >= 0.95


def test_example_photos_get_their_recorded_scores() -> None:
    scores = score_files(sorted(EXAMPLES.glob("*.jpg")))
    assert set(scores) == set(GOLDEN)
    for name, expected in GOLDEN.items():
        assert scores[name] == pytest.approx(expected, abs=0.02), name
    assert all(1.0 <= s <= 10.0 for s in scores.values())


def test_clean_photos_outscore_their_degraded_copies() -> None:
    scores = score_files(sorted(EXAMPLES.glob("*.jpg")))
    assert scores["coffee.jpg"] > scores["coffee_blurred.jpg"] + 2.0
    assert scores["chelsea.jpg"] > scores["chelsea_noisy.jpg"] + 0.5
    # Exposure moves the score least (docs/reference/models.md): 1.5 EV darker costs ~0.2 here.
    assert scores["seeding.jpg"] > scores["seeding_dark.jpg"] + 0.1


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
