"""Rank rules (--rank-by): parsing, each rule kind, ties, failed rows, the CLI columns and the report's pick."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import pytest
from helpers.tiny_models import write_tiny_model
from typer.testing import CliRunner

from nima_rt.apps.report import ReportConfig, build_report
from nima_rt.cli import app
from nima_rt.io.results import ModelScore, ScoreResult
from nima_rt.runtime.ranking import (
    Condition,
    RankRule,
    RankRuleError,
    Term,
    parse_rank_rule,
    rank_groups,
    rank_rows,
    sort_rows,
)

FLAT = tuple([0.1] * 10)


def row(path: str, aesthetic: float | None = None, technical: float | None = None, error: str | None = None):
    scores = {name: ModelScore(value, 1.0, FLAT) for name, value in (("aesthetic", aesthetic),
                                                                      ("technical", technical)) if value is not None}
    return ScoreResult(path, error, {} if error else scores)


@pytest.mark.parametrize(
    ("text", "rule", "canonical"),
    [
        ("aesthetic", RankRule((Term(1.0, "aesthetic"),)), "aesthetic"),
        ("0.7*aesthetic+0.3*technical", RankRule((Term(0.7, "aesthetic"), Term(0.3, "technical"))),
         "0.7*aesthetic+0.3*technical"),
        (" aesthetic - 0.5 * technical ", RankRule((Term(1.0, "aesthetic"), Term(-0.5, "technical"))),
         "aesthetic-0.5*technical"),
        ("aesthetic if technical>=5.0", RankRule((Term(1.0, "aesthetic"),), (Condition("technical", ">=", 5.0),)),
         "aesthetic if technical>=5"),
        ("-technical if technical > 2 and aesthetic<=9.5",
         RankRule((Term(-1.0, "technical"),), (Condition("technical", ">", 2.0), Condition("aesthetic", "<=", 9.5))),
         "-technical if technical>2 and aesthetic<=9.5"),
        ("technical_2 if technical_2 < -1e-3", RankRule((Term(1.0, "technical_2"),),
                                                        (Condition("technical_2", "<", -0.001),)),
         "technical_2 if technical_2<-0.001"),
    ],
)
def test_rules_parse_to_dataclasses_and_print_canonically(text: str, rule: RankRule, canonical: str) -> None:
    parsed = parse_rank_rule(text)
    assert parsed == rule
    assert parsed.text() == canonical
    assert parse_rank_rule(canonical) == rule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "rank rule is empty; give a model column, e.g. 'aesthetic'"),
        ("0.7 aesthetic", "rank rule '0.7 aesthetic': expected '*' and a model column after a weight "
                          "(e.g. 0.7*aesthetic), got 'aesthetic'"),
        ("aesthetic technical", "rank rule 'aesthetic technical': expected '+', '-' or 'if', got 'technical'"),
        ("aesthetic if", "rank rule 'aesthetic if': expected a condition such as technical>=5, got the end"),
        ("aesthetic if technical", "rank rule 'aesthetic if technical': expected >=, >, <= or < after 'technical', "
                                   "got the end"),
        ("aesthetic if technical>=high", "rank rule 'aesthetic if technical>=high': expected a number after "
                                         "technical>=, got 'high'"),
        ("aesthetic if technical>=5 aesthetic", "rank rule 'aesthetic if technical>=5 aesthetic': expected 'and' or "
                                                "the end, got 'aesthetic'"),
        ("aesthetic == 3", "rank rule 'aesthetic == 3': unexpected '== 3'"),
        ("__import__('os')", "rank rule \"__import__('os')\": unexpected \"('os')\""),
        ("aesthetic+", "rank rule 'aesthetic+': expected a model column, got the end"),
    ],
)
def test_bad_rules_get_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(RankRuleError) as caught:
        parse_rank_rule(text)
    assert str(caught.value) == message


def test_unknown_columns_are_named_with_the_columns_there_are() -> None:
    with pytest.raises(RankRuleError) as caught:
        parse_rank_rule("0.5*aesthetc+0.5*technical if sharpness>=3").check(["aesthetic", "technical"])
    assert str(caught.value) == ("rank rule '0.5*aesthetc+0.5*technical if sharpness>=3': unknown model columns "
                                 "aesthetc, sharpness (the models give aesthetic, technical)")


ROWS = [
    row("l/a.jpg", aesthetic=6.0, technical=4.0),
    row("l/b.jpg", aesthetic=5.0, technical=6.0),
    row("l/c.jpg", aesthetic=4.0, technical=7.5),
    row("l/d.jpg", error="l/d.jpg: cannot decode image"),
]


@pytest.mark.parametrize(
    ("rule", "order", "scores", "best_by"),
    [
        ("aesthetic", ["l/a.jpg", "l/b.jpg", "l/c.jpg"], [6.0, 5.0, 4.0], "aesthetic"),
        ("technical", ["l/c.jpg", "l/b.jpg", "l/a.jpg"], [7.5, 6.0, 4.0], "technical"),
        ("0.5*aesthetic+0.5*technical", ["l/c.jpg", "l/b.jpg", "l/a.jpg"], [5.75, 5.5, 5.0],
         "0.5*aesthetic+0.5*technical"),
        ("aesthetic if technical>=5", ["l/b.jpg", "l/c.jpg", "l/a.jpg"], [5.0, 4.0, 6.0], "aesthetic if technical>=5"),
        ("aesthetic if technical>=7 and aesthetic>4.5", ["l/a.jpg", "l/b.jpg", "l/c.jpg"], [6.0, 5.0, 4.0],
         "aesthetic (no photo meets technical>=7 and aesthetic>4.5)"),
    ],
)
def test_each_rule_kind_ranks_and_says_which_rule_picked_the_best(rule, order, scores, best_by) -> None:
    ranked = list(rank_groups(ROWS, parse_rank_rule(rule)))
    assert [r.result.path for r in ranked] == [*order, "l/d.jpg"]
    assert [r.rank for r in ranked] == [1, 2, 3, None]
    assert [r.best for r in ranked] == [True, False, False, False]
    assert [r.rank_score for r in ranked[:3]] == pytest.approx(scores)
    assert [r.best_by for r in ranked] == [best_by, None, None, None]
    assert ranked[3].extra() == {"group": "l", "rank": None, "best": False, "rank_score": None, "best_by": None}


def test_ties_go_by_path_whatever_the_input_order() -> None:
    tied = [row("g/c.jpg", 5.0), row("g/a.jpg", 5.0), row("g/b.jpg", 5.0), row("g/z.jpg", 7.0)]
    for rows in (tied, tied[::-1]):
        assert [r.result.path for r in rank_groups(rows, "aesthetic")] == ["g/z.jpg", "g/a.jpg", "g/b.jpg", "g/c.jpg"]
        assert [r.path for r in sort_rows(rows, "aesthetic", top=3)] == ["g/z.jpg", "g/a.jpg", "g/b.jpg"]
    # a photo meeting the condition beats a higher-scoring one that does not, even on equal scores
    gated = [row("g/a.jpg", 5.0, 4.0), row("g/b.jpg", 5.0, 6.0)]
    assert [r.result.path for r in rank_rows(gated, parse_rank_rule("aesthetic if technical>=5"))] == [
        "g/b.jpg", "g/a.jpg"]


def test_failed_and_incomplete_rows_are_never_best_and_have_no_rank() -> None:
    rows = [row("g/z.jpg", error="g/z.jpg: not an image file Pillow can read"),
            row("g/only_aesthetic.jpg", aesthetic=9.9),  # no technical score: the rule cannot score it
            row("g/nan.jpg", aesthetic=math.nan, technical=9.0),
            row("g/b.jpg", aesthetic=3.0, technical=3.0),
            row("h/x.jpg", error="h/x.jpg: no such file")]
    rule = parse_rank_rule("0.5*aesthetic+0.5*technical")
    ranked = list(rank_groups(rows, rule))
    assert [(r.result.path, r.rank, r.best) for r in ranked] == [
        ("g/b.jpg", 1, True), ("g/nan.jpg", None, False), ("g/only_aesthetic.jpg", None, False),
        ("g/z.jpg", None, False), ("h/x.jpg", None, False)]  # a listing with no scored photo has no best
    assert [r.best_by for r in ranked] == ["0.5*aesthetic+0.5*technical", None, None, None, None]
    assert [r.path for r in sort_rows(rows, rule)][-1] == "h/x.jpg"
    assert [r.path for r in sort_rows(rows, rule, top=5)] == ["g/b.jpg"]  # top drops failed rows


def test_top_keeps_the_best_k_per_listing_and_lists_failed_rows() -> None:
    ranked = list(rank_groups(ROWS, parse_rank_rule("technical"), top=2))
    assert [(r.result.path, r.rank) for r in ranked] == [("l/c.jpg", 1), ("l/b.jpg", 2), ("l/d.jpg", None)]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("models")
    return (write_tiny_model(folder / "a.onnx", name="aesthetic", kind="aesthetic"),
            write_tiny_model(folder / "t.onnx", name="technical", kind="technical"))


def test_score_rank_by_writes_the_rule_columns(two_models, photo_dir: Path) -> None:
    (photo_dir / "listing_b" / "broken.jpg").write_bytes(b"not a jpeg")
    aesthetic, technical = two_models
    result = CliRunner().invoke(app, ["score", str(photo_dir), "--model", str(aesthetic), "--model", str(technical),
                                      "--group-by", "parent", "--rank-by", "aesthetic if technical>=5.3", "-q"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0])[-5:] == ["group", "rank", "best", "rank_score", "best_by"]
    by_group: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_group.setdefault(Path(r["path"]).parent.name, []).append(r)
    for members in by_group.values():
        scored = [r for r in members if not r["error"]]
        assert [r["best"] for r in members] == ["True"] + ["False"] * (len(members) - 1)
        best = max(scored, key=lambda r: (float(r["technical_mean"]) >= 5.3, float(r["aesthetic_mean"])))
        assert members[0]["path"] == best["path"]
        assert float(members[0]["rank_score"]) == pytest.approx(float(best["aesthetic_mean"]), abs=1e-6)
        meets = float(best["technical_mean"]) >= 5.3
        assert members[0]["best_by"] == ("aesthetic if technical>=5.3" if meets else
                                         "aesthetic (no photo meets technical>=5.3)")
    broken = next(r for r in rows if r["path"].endswith("broken.jpg"))
    assert (broken["rank"], broken["best"], broken["rank_score"], broken["best_by"]) == ("", "False", "", "")


def test_score_rank_by_refuses_unknown_columns_in_one_line(two_models, photo_dir: Path) -> None:
    aesthetic, technical = two_models
    result = CliRunner().invoke(app, ["score", str(photo_dir), "--model", str(aesthetic), "--model", str(technical),
                                      "--rank-by", "aesthetic if sharpness>=5"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == ("error: --rank-by: rank rule 'aesthetic if sharpness>=5': unknown model "
                                              "column sharpness (the models give aesthetic, technical)")


def test_the_report_shows_the_same_pick(tmp_path: Path) -> None:
    rows = [row("hotel_a/1.jpg", 6.0, 4.0), row("hotel_a/2.jpg", 5.0, 6.0), row("hotel_a/3.jpg", 4.0, 7.0),
            row("hotel_b/1.jpg", 8.0, 3.0), row("hotel_b/2.jpg", 7.0, 2.0), row("hotel_b/3.jpg", error="bad")]
    rule = "aesthetic if technical>=5"
    picks = {r.group: r.result.path for r in rank_groups(rows, parse_rank_rule(rule)) if r.best}
    page = tmp_path / "report.html"
    build_report(rows, ["aesthetic", "technical"], page, ReportConfig(rank_by=rule, embed=True))
    html = page.read_text()
    assert re.findall(r'<li class="card best" data-path="([^"]+)"', html) == [picks["hotel_a"], picks["hotel_b"]]
    assert picks == {"hotel_a": "hotel_a/2.jpg", "hotel_b": "hotel_b/1.jpg"}
    assert "ranked by <b>aesthetic if technical&gt;=5</b>" in html
    assert html.count("picked by <code>aesthetic if technical&gt;=5</code>") == 1
    assert html.count("picked by <code>aesthetic (no photo meets technical&gt;=5)</code>") == 1
