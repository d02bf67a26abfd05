"""The cross-source evaluation (train/evaluation/cross_source.py) on a tiny generated dataset and by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.photos import photo_like
from PIL import Image

pytest.importorskip("scipy")
pytest.importorskip("skimage")
pytest.importorskip("nima_rt.train.datasets.kadid")

from nima_rt.train.datasets.build_dataset import BuildConfig, Reference, build_dataset  # noqa: E402
from nima_rt.train.evaluation.cross_source import (  # noqa: E402
    CrossSourceConfig,
    CrossSourceError,
    evaluate_scores,
    markdown_table,
    photo_variance_share,
    run_cross_source,
    write_result,
)


def test_photo_variance_share_by_hand() -> None:
    # Photo a: 1, 3 (mean 2); photo b: 5, 7 (mean 6); grand mean 4.
    # Between: 2 * (2-4)^2 + 2 * (6-4)^2 = 16; total: 9 + 1 + 1 + 9 = 20.
    assert photo_variance_share(["a", "a", "b", "b"], [1, 3, 5, 7]) == pytest.approx(0.8)
    assert photo_variance_share(["a", "b", "a", "b"], [1, 1, 5, 5]) == pytest.approx(0.0)
    assert np.isnan(photo_variance_share(["a", "b"], [2, 2]))
    with pytest.raises(ValueError, match="3 groups but 2 scores"):
        photo_variance_share(["a", "b", "c"], [1, 2])


def _dataset(tmp_path: Path) -> Path:
    refs = []
    for index in range(2):
        path = tmp_path / "photos" / f"p{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo_like(index, 96, 64)).save(path)
        refs.append(Reference(path, f"p{index}", "test"))
    config = BuildConfig(short_side=64, crops={"train": 0, "val": 0, "test": 0},
                         distortions=("underexposure", "overexposure"))
    build_dataset(refs, tmp_path / "ds", config)
    return tmp_path / "ds"


def test_run_cross_source_with_the_tiny_model(tmp_path: Path, tiny_model: Path) -> None:
    # The tiny model's score rises with brightness: darkening lowers it at every level (Spearman -1,
    # every pair right), brightening raises it (Spearman +1, every pair wrong).
    dataset = _dataset(tmp_path)
    result = run_cross_source(CrossSourceConfig(dataset, models=(str(tiny_model),)))
    assert result.photos == ["p0", "p1"] and result.images == 22
    (tiny,) = result.scorers
    assert tiny.name == "tiny"
    dark, bright = tiny.report.types["underexposure"], tiny.report.types["overexposure"]
    assert (dark.spearman_mean, dark.spearman_worst, dark.pairs, dark.pairs_correct) == (-1.0, -1.0, 6, 6)
    assert (bright.spearman_mean, bright.pairs_correct) == (1.0, 0)
    assert tiny.mean_spearman() == pytest.approx(0.0)
    assert tiny.mean_spearman(["underexposure"]) == -1.0
    assert 0.0 <= tiny.photo_variance < 1.0
    table = markdown_table(result)
    assert "| **underexposure** | -1.000 / 1.00 |" in table
    assert "| overexposure | 1.000 / 0.00 |" in table
    one = run_cross_source(CrossSourceConfig(dataset, models=(str(tiny_model),), photos=("p1",)))
    assert one.photos == ["p1"] and one.images == 11
    with pytest.raises(CrossSourceError, match="test.csv: no photo 'p9' in this split"):
        run_cross_source(CrossSourceConfig(dataset, models=(str(tiny_model),), photos=("p9",)))
    write_result(result, tmp_path / "out" / "result.json")
    saved = json.loads((tmp_path / "out" / "result.json").read_text(encoding="utf-8"))
    assert saved["scorers"][0]["types"]["underexposure"]["pair_accuracy"] == 1.0


def test_scorer_names_are_unique_and_say_which_is_bundled() -> None:
    from nima_rt.train.evaluation.cross_source import scorer_name

    assert scorer_name("work/technical.onnx", []) == "technical"
    assert scorer_name("technical", ["technical"]) == "technical (bundled)"
    assert scorer_name("other/technical.onnx", ["technical"]) == "technical #2"


def test_evaluate_scores_refuses_non_finite_scores() -> None:
    rows = [{"path": "a/clean", "group": "a", "view": "full", "distortion": "clean", "level": "0"},
            {"path": "a/1", "group": "a", "view": "full", "distortion": "jpeg", "level": "1"}]
    with pytest.raises(CrossSourceError, match="brisque: score of a/1 is not a finite number"):
        evaluate_scores("brisque", rows, [1.0, float("nan")], CrossSourceConfig(Path(".")))
    result = evaluate_scores("x", rows, [2.0, 1.0], CrossSourceConfig(Path(".")))
    assert result.report.types["jpeg"].spearman_mean == -1.0
    assert result.photo_variance == 0.0  # a single photo explains none of the variance


def test_missing_split_is_named(tmp_path: Path) -> None:
    with pytest.raises(CrossSourceError, match="test.csv: no such split file"):
        run_cross_source(CrossSourceConfig(tmp_path))


def test_graded_eval_command_prints_the_table(tmp_path: Path, tiny_model: Path) -> None:
    from typer.testing import CliRunner

    from nima_rt.cli import app

    dataset = _dataset(tmp_path)
    result = CliRunner().invoke(app, ["graded-eval", str(dataset), "--model", str(tiny_model),
                                      "--output", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "| **underexposure** | -1.000 / 1.00 |" in result.output
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["images"] == 22
    empty = CliRunner().invoke(app, ["graded-eval", str(dataset)])
    assert empty.exit_code == 1
    assert empty.output.strip().endswith("error: nothing to evaluate: give --model and/or --baselines")
