"""Evaluation plots: four PNGs with the right numbers in their titles; `nima-rt evaluate` writes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
scipy_stats = pytest.importorskip("scipy.stats")

from PIL import Image  # noqa: E402

from nima_rt.runtime.metrics import compute_metrics  # noqa: E402
from nima_rt.train.evaluation.plots import PLOT_FILES, confusion_at_threshold, write_evaluation_plots  # noqa: E402

SCORES = np.arange(1, 11, dtype=np.float64)


def _dists(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    true = rng.dirichlet(np.linspace(0.5, 3.0, 10) * rng.uniform(0.3, 3.0), size=n)
    noisy = np.log(true + 1e-3) + rng.normal(0, 0.6, true.shape)
    pred = np.exp(noisy) / np.exp(noisy).sum(axis=1, keepdims=True)
    return true, pred


def _text(path: Path) -> dict[str, str]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return dict(image.text)


def test_four_plots_with_their_numbers(tmp_path: Path):
    true, pred = _dists(np.random.default_rng(0), 300)
    written = write_evaluation_plots(true, pred, tmp_path / "plots", "mobilenet on AVA test",
                                     compute_metrics(true, pred))
    assert [p.name for p in written] == list(PLOT_FILES)
    assert all(p.parent == tmp_path / "plots" and p.stat().st_size > 10_000 for p in written)
    with Image.open(written[0]) as image:
        assert image.size == (640, 480)

    true_mean, pred_mean = true @ SCORES, pred @ SCORES
    lcc = scipy_stats.pearsonr(pred_mean, true_mean)[0]
    srcc = scipy_stats.spearmanr(pred_mean, true_mean)[0]
    scatter = _text(written[2])
    assert scatter["Title"] == f"mobilenet on AVA test\nLCC {lcc:.3f}  SRCC {srcc:.3f}  (n=300)"
    assert json.loads(scatter["Description"])["lcc"] == pytest.approx(lcc, abs=1e-9)

    confusion = json.loads(_text(written[3])["Description"])
    true_high, pred_high = true_mean >= 5.0, pred_mean >= 5.0
    assert confusion["confusion"] == [
        [int(np.sum(~true_high & ~pred_high)), int(np.sum(~true_high & pred_high))],
        [int(np.sum(true_high & ~pred_high)), int(np.sum(true_high & pred_high))],
    ]
    assert confusion["accuracy"] == pytest.approx(np.mean(true_high == pred_high))
    assert _text(written[0])["Title"] == "mobilenet on AVA test: mean scores (n=300)"
    stds = json.loads(_text(written[1])["Description"])
    true_std = np.sqrt(true @ SCORES**2 - true_mean**2)
    assert stds["true_std"] == pytest.approx(true_std.mean())


def test_confusion_threshold_is_inclusive():
    matrix = confusion_at_threshold(np.array([4.99, 5.0, 6.0, 3.0, 7.0]), np.array([5.0, 4.0, 6.5, 2.0, 7.5]))
    assert matrix.tolist() == [[1, 1], [1, 2]]


def test_bad_shapes_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match=r"expected two \[N, 10\] arrays, got \(3, 10\) and \(3, 9\)"):
        write_evaluation_plots(np.full((3, 10), 0.1), np.full((3, 9), 0.1), tmp_path, "x", {})


def test_evaluate_command_writes_the_plots(tmp_path: Path, one_torch_thread: None):
    torch = pytest.importorskip("torch")
    pytest.importorskip("timm")
    from typer.testing import CliRunner

    from nima_rt.cli import app
    from nima_rt.contract.spec import ModelMetadata
    from nima_rt.train.model.checkpoint import save_checkpoint
    from nima_rt.train.model.network import ModelConfig
    from nima_rt.train.model.pretrained import build_network

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(3)
    rows = ["path,mean,std"]
    for index in range(8):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(images / f"i{index}.jpg")
        rows.append(f"i{index}.jpg,{3.0 + 0.5 * index:.1f},1.2")
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    config = ModelConfig(backbone="mobilenetv3_small_050", image_size=32)
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "run" / "best.pt", build_network(config, None), config,
                                 ModelMetadata(name="tiny-eval"))

    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["evaluate", str(checkpoint), "--labels", str(labels), "--images",
                                      str(images), "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in PLOT_FILES:
        assert (out / name).is_file(), name
        assert str(out / name) in result.output
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    scatter = _text(out / "mean_scatter.png")
    assert scatter["Title"] == f"tiny-eval on labels.csv\nLCC {metrics['lcc']:.3f}  SRCC {metrics['srcc']:.3f}  (n=8)"
