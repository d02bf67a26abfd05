"""The score run as a library call (nima_rt.runtime.run): resume, strict, ranking and the settings check,
without the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from nima_rt import RunOptions, Scorer, SettingError, score_run
from nima_rt.io.scores.writers import OutputError


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_run_writes_one_row_per_file_in_order(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    seen: list[str] = []
    with Scorer([tiny_model]) as scorer:
        summary = score_run(scorer, [photo_dir], RunOptions(output=str(out)), on_result=lambda r: seen.append(r.path))
    rows = _rows(out)
    assert [row["path"] for row in rows] == seen == sorted(str(p) for p in photo_dir.rglob("img_*"))
    assert (summary.scored, summary.failed, summary.resumed, summary.stopped_at) == (6, 0, 0, None)
    assert summary.done == 6 and summary.rate > 0


def test_resume_skips_what_an_earlier_run_wrote(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    with Scorer([tiny_model]) as scorer:
        score_run(scorer, [photo_dir], RunOptions(output=str(full)))
        lines = full.read_text(encoding="utf-8").splitlines(keepends=True)
        part.write_text("".join(lines[:2]) + lines[2][:15], encoding="utf-8")  # killed in the third row
        resumed_from: list[int] = []
        summary = score_run(scorer, [photo_dir], RunOptions(output=str(part), resume=True),
                            on_resume=resumed_from.append)
    assert resumed_from == [2] and (summary.resumed, summary.scored) == (2, 4)
    assert part.read_text(encoding="utf-8") == full.read_text(encoding="utf-8")


def test_strict_stops_at_the_first_failure(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    bad = photo_dir / "listing_a" / "img_1.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "s.csv"
    with Scorer([tiny_model]) as scorer:
        summary = score_run(scorer, [photo_dir], RunOptions(output=str(out), strict=True))
    rows = _rows(out)
    assert [Path(row["path"]).name for row in rows] == ["img_0.jpg", "img_1.png"]  # nothing after the failure
    assert summary.stopped_at == rows[-1]["error"] and summary.stopped_at.startswith(str(bad))


def test_grouped_ranking_marks_one_best_per_folder(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    with Scorer([tiny_model]) as scorer:
        score_run(scorer, [photo_dir], RunOptions(output=str(out), group_by="parent", top=2))
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(Path(row["group"]).name, row["rank"], row["best"]) for row in rows] == [
        ("listing_a", 1, True), ("listing_a", 2, False), ("listing_b", 1, True), ("listing_b", 2, False)]
    means = [row["tiny"]["mean"] for row in rows]
    assert means[0] >= means[1] and means[2] >= means[3]


@pytest.mark.parametrize(
    ("given", "option", "message"),
    [
        ({"resume": True}, "--resume", "--resume needs --output FILE"),
        ({"group_by": "dir:0"}, "--group-by", "--group-by dir:0: the depth counts folders from 1 (dir:1 is the first "
         "folder)"),
        ({"group_by": "dir:x"}, "--group-by", "--group-by 'dir:x': expected parent, dir:N (N >= 1), none or a "
         "manifest column name"),
        ({"top": 0}, "--top", "--top must be >= 1, got 0"),
        ({"format": "xml"}, "--format", "--format must be one of csv, jsonl, parquet, got 'xml'"),
        ({"format": "parquet"}, "--format", "--format parquet needs --output FILE"),
        ({"extensions": ("",)}, "--ext", "extensions: give at least one, e.g. jpg,png"),
    ],
)
def test_settings_are_checked_once_when_made(given: dict[str, object], option: str, message: str) -> None:
    with pytest.raises(SettingError) as info:
        RunOptions(**given)  # type: ignore[arg-type]
    assert (info.value.option, str(info.value)) == (option, message)


def test_a_rank_column_the_models_lack_is_refused_before_scoring(tiny_model: Path, photo_dir: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    with Scorer([tiny_model]) as scorer, pytest.raises(SettingError, match=r"--sort-by nope: no such model column"):
        score_run(scorer, [photo_dir], RunOptions(output=str(out), sort=True, sort_by="nope"))
    assert not out.exists()


def test_resuming_another_runs_output_is_one_line(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    out.write_text("path,error,other_mean\n", encoding="utf-8")
    with Scorer([tiny_model]) as scorer, pytest.raises(OutputError, match=r"cannot resume, its columns"):
        score_run(scorer, [photo_dir], RunOptions(output=str(out), resume=True))
