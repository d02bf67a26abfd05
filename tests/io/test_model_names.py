"""Model identity (issue 13, item 15): distinct default run names, NAME=FILE columns, full names on the
report's cards."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from nima_rt import Scorer
from nima_rt.apps.report import build_report
from nima_rt.apps.report.page import CSS


def test_runs_without_a_name_are_named_after_preset_and_labels(tmp_path: Path) -> None:
    from nima_rt.train.fit.config import resolve_config

    ava = resolve_config("aesthetic", overrides={"data": {"labels": "data/AVA.txt"}})
    hotels = resolve_config("aesthetic", overrides={"data": {"labels": "hotel ratings.csv"}})
    plain = resolve_config("default", overrides={"data": {"labels": "labels.csv"}})
    assert (ava.name, hotels.name, plain.name) == ("aesthetic-AVA", "aesthetic-hotel_ratings", "nima-labels")
    named = resolve_config("aesthetic", overrides={"name": "mine", "data": {"labels": "AVA.txt"}})
    assert named.name == "mine"
    (tmp_path / "run.json").write_text('{"name": "from-file", "data": {"labels": "x.csv"}}')
    assert resolve_config("default", tmp_path / "run.json").name == "from-file"


def test_report_cards_show_whole_model_names(tiny_model: Path, tmp_path: Path) -> None:
    rule = re.search(r"\.score \.model \{([^}]*)\}", CSS)
    assert rule is not None
    assert "ellipsis" not in rule.group(1) and "nowrap" not in rule.group(1)  # names wrap, never clipped
    folder = tmp_path / "listing"
    folder.mkdir()
    Image.new("RGB", (40, 30), (90, 120, 30)).save(folder / "a.jpg")
    with Scorer([f"aesthetic-ava={tiny_model}", f"aesthetic-hotels={tiny_model}"]) as scorer:
        results = list(scorer.score_paths(folder))
        columns = scorer.columns
    build_report(results, columns, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert '<span class="model">aesthetic-ava</span>' in page
    assert '<span class="model">aesthetic-hotels</span>' in page
