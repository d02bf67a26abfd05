"""Ranking finished outputs (nima_rt.runtime.rank_output) and ranked runs (score_run): the rank step equals a
score run's ranking, groups stream out as soon as they are complete, listings by folder depth or manifest
column, and an interrupted, resumed, ranked run equals an uninterrupted one row for row."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from nima_rt import RunOptions, Scorer, score_run
from nima_rt.contract.choices import SettingError
from nima_rt.io.results import ModelScore, ScoreResult
from nima_rt.io.scores.reader import ScoreFiles
from nima_rt.runtime.grouping import Grouping, folder_at_depth, parse_grouping
from nima_rt.runtime.rank_output import RankOptions, rank_output
from nima_rt.runtime.ranking import rank_groups

FLAT = tuple([0.1] * 10)


def result(path: str, mean: float) -> ScoreResult:
    return ScoreResult(path, None, {"m": ModelScore(mean, 1.0, FLAT)})


@pytest.mark.parametrize(
    ("path", "depth", "key"),
    [
        ("listings/L1/ext/a.jpg", 2, "listings/L1"),
        ("listings/L1/a.jpg", 2, "listings/L1"),
        ("listings/a.jpg", 2, "listings"),  # fewer folders than the depth: its folder
        ("a.jpg", 1, "."),
        ("/data/listings/L1/int/b.jpg", 3, "/data/listings/L1"),
        ("./listings//L1/ext/a.jpg", 2, "listings/L1"),  # '.' and empty folders do not count
        ("s3://bucket/listings/L1/ext/a.jpg", 3, "s3://bucket/listings/L1"),
    ],
)
def test_folder_depth_keys(path: str, depth: int, key: str) -> None:
    assert folder_at_depth(path, depth) == key
    assert parse_grouping(f"dir:{depth}") == Grouping("dir", depth=depth)


def test_grouping_words() -> None:
    assert parse_grouping(None) is None and parse_grouping("none") is None
    assert parse_grouping("parent") == Grouping("parent")
    assert parse_grouping("listing_id") == Grouping("column", column="listing_id")


def test_groups_are_given_out_as_soon_as_they_are_complete() -> None:
    rows = [result("a/1.jpg", 5.0), result("a/2.jpg", 6.0), result("b/1.jpg", 4.0), result("b/2.jpg", 7.0),
            result("c/1.jpg", 1.0)]
    read: list[str] = []

    def stream():
        for row in rows:
            read.append(row.path)
            yield row

    ends = {"a": 1, "b": 3, "c": 4}
    ranked = rank_groups(stream(), "m", ends=ends)
    first = next(ranked)
    assert (first.group, first.result.path, first.best) == ("a", "a/2.jpg", True)
    assert read == ["a/1.jpg", "a/2.jpg"]  # listing b not read yet: one listing held at a time
    rest = list(ranked)
    assert [r.result.path for r in [first, *rest]] == ["a/2.jpg", "a/1.jpg", "b/2.jpg", "b/1.jpg", "c/1.jpg"]
    assert [(r.result.path, r.rank) for r in [first, *rest]] == [
        (r.result.path, r.rank) for r in rank_groups(rows, "m")]  # the same as holding everything


def test_spread_listings_wait_for_their_last_row_and_keep_first_seen_order() -> None:
    rows = [result("a/1.jpg", 5.0), result("b/1.jpg", 4.0), result("a/2.jpg", 6.0), result("c/1.jpg", 1.0)]
    ends = {"a": 2, "b": 1, "c": 3}
    ranked = list(rank_groups(rows, "m", ends=ends))
    assert [r.result.path for r in ranked] == [r.result.path for r in rank_groups(rows, "m")] == [
        "a/2.jpg", "a/1.jpg", "b/1.jpg", "c/1.jpg"]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_rank_step_equals_a_ranked_score_run(tiny_model: Path, photo_dir: Path, tmp_path: Path, fmt: str) -> None:
    plain, ranked = tmp_path / f"plain.{fmt}", tmp_path / f"ranked.{fmt}"
    with Scorer([tiny_model]) as scorer:
        score_run(scorer, [photo_dir], RunOptions(output=str(plain)))
        score_run(scorer, [photo_dir], RunOptions(output=str(ranked), group_by="parent", top=2, rank_by="tiny"))
    again = tmp_path / f"again.{fmt}"
    summary = rank_output([plain], RankOptions(output=str(again), group_by="parent", top=2, rank_by="tiny"))
    assert (summary.rows, summary.listings, summary.failed) == (4, 2, 0)
    assert again.read_bytes() == ranked.read_bytes() if fmt != "parquet" else _table(again) == _table(ranked)
    rows = list(ScoreFiles([ranked]).rows())
    assert [Path(r.path).parent.name for r in rows] == ["listing_a", "listing_a", "listing_b", "listing_b"]


def _table(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def test_rank_in_place_and_to_stdout(tiny_model: Path, photo_dir: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    scores = tmp_path / "s.csv"
    with Scorer([tiny_model]) as scorer:
        score_run(scorer, [photo_dir], RunOptions(output=str(scores)))
        score_run(scorer, [photo_dir], RunOptions(output=None, sort=True, top=3))  # ranked to stdout
    printed = capsys.readouterr().out
    rank_output([scores], RankOptions(output=str(scores), sort=True, top=3))  # the output is its own source
    assert scores.read_text(encoding="utf-8") == printed
    assert len(_lines(scores)) == 4 and not list(tmp_path.glob(".*"))  # no temporary file left


def test_rank_refuses_what_the_rows_cannot_serve(tmp_path: Path, tiny_model: Path, photo_dir: Path) -> None:
    scores = tmp_path / "s.csv"
    with Scorer([tiny_model]) as scorer:
        score_run(scorer, [photo_dir], RunOptions(output=str(scores)))
    with pytest.raises(SettingError) as caught:
        rank_output([scores], RankOptions(group_by="listing_id"))
    assert (caught.value.option, str(caught.value)) == ("--group-by", (
        f"--group-by listing_id: no such column in {scores} (carried columns: none; or use parent, dir:N, none)"))
    with pytest.raises(SettingError, match="--sort-by other: no such model column"):
        rank_output([scores], RankOptions(sort_by="other"))


def _kill_after(output: Path, rows: int, fmt: str) -> None:
    """What a run killed after ``rows`` rows leaves: those rows and a torn next line."""
    lines = output.read_text(encoding="utf-8").splitlines(keepends=True)
    keep = rows + (fmt == "csv")
    output.write_text("".join(lines[:keep]) + lines[keep][:23], encoding="utf-8")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_interrupted_resumed_ranked_run_equals_an_uninterrupted_one(
    tiny_model: Path, tmp_path: Path, fmt: str
) -> None:
    from helpers.photos import photo_like
    from PIL import Image

    root = tmp_path / "listings"
    for index in range(30):
        folder = root / f"L{index % 4}" / ("ext" if index % 3 else "int")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo_like(index)).save(folder / f"{index:02d}.jpg", quality=90)
    (root / "L2" / "int" / "broken.jpg").write_bytes(b"not a jpeg")
    depth = len(root.parts)  # an absolute path's folders count from the root: /tmp/.../listings/L0 is dir:depth
    options = {"group_by": f"dir:{depth}", "rank_by": "tiny", "top": 3}
    whole, resumed = tmp_path / f"whole.{fmt}", tmp_path / f"resumed.{fmt}"
    with Scorer([tiny_model]) as scorer:
        score_run(scorer, [root], RunOptions(output=str(whole), **options))
        every = tmp_path / f"whole.all.{fmt}"  # with --top the rows of every photo are kept beside the output
        assert len(list(ScoreFiles([every]).rows())) == 31
        shutil.copy(every, tmp_path / f"resumed.all.{fmt}")
        _kill_after(tmp_path / f"resumed.all.{fmt}", 11, fmt)
        summary = score_run(scorer, [root], RunOptions(output=str(resumed), resume=True, **options))
        assert (summary.resumed, summary.scored + summary.failed) == (11, 20)
        assert resumed.read_bytes() == whole.read_bytes()  # row for row, byte for byte
        assert (tmp_path / f"resumed.all.{fmt}").read_bytes() == every.read_bytes()
        assert summary.ranked is not None and (summary.ranked.listings, summary.ranked.rows) == (4, 13)
        again = score_run(scorer, [root], RunOptions(output=str(resumed), resume=True, **options))
    assert (again.done, again.resumed) == (0, 31)  # a finished run: nothing scored again
    assert resumed.read_bytes() == whole.read_bytes()  # and ranked the same again
    if fmt == "csv":
        rows = list(csv.DictReader(whole.open(encoding="utf-8", newline="")))
    else:
        rows = [json.loads(line) for line in _lines(whole)]
    assert [(Path(r["group"]).name, str(r["rank"]), str(r["best"])) for r in rows][:4] == [
        ("L0", "1", "True"), ("L0", "2", "False"), ("L0", "3", "False"), ("L1", "1", "True")]
    assert [r["path"] for r in rows if r["error"]] == [str(root / "L2" / "int" / "broken.jpg")]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_ranked_run_without_top_resumes_its_own_output(tiny_model: Path, photo_dir: Path, tmp_path: Path,
                                                         fmt: str) -> None:
    whole, resumed = tmp_path / f"whole.{fmt}", tmp_path / f"resumed.{fmt}"
    with Scorer([tiny_model]) as scorer:
        score_run(scorer, [photo_dir], RunOptions(output=str(whole), group_by="parent"))
        score_run(scorer, [photo_dir], RunOptions(output=str(resumed)))
        _kill_after(resumed, 2, fmt)  # killed before the rank step: the output holds rows as they were scored
        summary = score_run(scorer, [photo_dir], RunOptions(output=str(resumed), resume=True, group_by="parent"))
        assert (summary.resumed, summary.done) == (2, 4)
        assert resumed.read_bytes() == whole.read_bytes()
        again = score_run(scorer, [photo_dir], RunOptions(output=str(resumed), resume=True, group_by="parent"))
    assert (again.done, again.resumed) == (0, 6) and resumed.read_bytes() == whole.read_bytes()
    assert not (tmp_path / f"whole.all.{fmt}").exists()  # without --top the output holds every row
