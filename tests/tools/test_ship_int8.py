"""tools/ship_int8.py: disjoint photo sets by the manifest's splits, graded sets of the right size, and the
rule that picks the recipe (the bar first, then speed, then ranking)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from helpers.photos import photo_like
from PIL import Image
from ship_int8 import calibration_set, choose, graded_set, photos_by_split

from nima_rt.contract.spec import Preprocess, ResizeSpec
from nima_rt.train.datasets import distortions


def fake_cache(root: Path) -> Path:
    (root / "photos").mkdir(parents=True)
    entries = []
    for index, split in enumerate(["train", "train", "val", "test"]):
        name = f"p{index}.png"
        Image.fromarray(photo_like(index, 120, 80)).save(root / "photos" / name)
        entries.append({"id": f"p{index}", "file": name, "split": split, "license": "test", "author": "test"})
    (root / "manifest.json").write_text(json.dumps({"photos": entries}), encoding="utf-8")
    return root


def test_sets_follow_the_manifest_splits_and_sizes(tmp_path: Path) -> None:
    split = photos_by_split(fake_cache(tmp_path / "cache"))
    assert {k: [p.name for p in v] for k, v in split.items()} == {"train": ["p0.png", "p1.png"], "val": ["p2.png"],
                                                                  "test": ["p3.png"]}
    spec = Preprocess(32, ResizeSpec())
    graded = graded_set(split["test"], spec, seed=0)
    assert graded.shape == (1 + len(distortions.DISTORTIONS) * distortions.NUM_LEVELS, 32, 32, 3)
    assert graded.dtype == np.uint8
    crops = calibration_set(split["train"], spec, 6, seed=0)
    assert crops.shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(crops, calibration_set(split["train"], spec, 6, seed=0))  # reproducible


def test_choose_needs_the_bar_then_takes_the_fastest_and_breaks_near_ties_by_ranking() -> None:
    rates = {"a": 100.0, "b": 130.0, "c": 128.0, "d": 150.0}
    assert choose({"a": 0.995, "b": 0.993, "c": 0.997, "d": 0.98}, rates) == "c"  # d fails; b and c tie on speed
    assert choose({"a": 0.995, "b": 0.993, "c": 0.991, "d": 0.99}, rates) == "d"  # the bar is inclusive
    assert choose({"a": 0.95, "b": 0.9, "c": 0.98, "d": 0.1}, rates) is None
