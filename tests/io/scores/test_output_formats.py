"""Rows on disk for hostile file names: every field round-trips through csv, pandas, JSON and Parquet;
names that are not UTF-8 are written with \\xNN escapes; formula-like cells are escaped in CSV; resume
finds every path it wrote."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from nima_rt import Scorer
from nima_rt.io.scores.reader import done_paths
from nima_rt.io.scores.writers import (
    CsvWriter,
    JsonlWriter,
    ParquetWriter,
    text_cell,
)
from nima_rt.runtime.ranking import rank_groups

HOSTILE_NAMES = [
    os.fsdecode(b"caf\xe9.jpg"),  # Latin-1 bytes, not UTF-8
    os.fsdecode(b"\xff\xfe odd.png"),
    "line\nbreak.jpg",
    "carriage\rreturn.jpg",
    "both\r\nends.png",
    "=HYPERLINK(x).jpg",
    "+1.jpg",
    "-2.jpg",
    "@SUM(A1).png",
    "\tstarts with a tab.jpg",
    'quote " and, comma.jpg',
    "naïve ünïcödé 写真.jpg",
]


@pytest.fixture
def hostile_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for index, name in enumerate(HOSTILE_NAMES):
        path = os.path.join(folder, name)
        if index % 3 == 2:
            Path(path).write_bytes(b"not an image at all")  # an error row, its message naming the file
        else:
            Image.new("RGB", (12, 10), (index * 20, 90, 40)).save(path, format="PNG")
    return folder


def expected_cell(path: str) -> str:
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def test_text_cell_writes_non_utf8_bytes_as_escapes() -> None:
    assert text_cell(os.fsdecode(b"caf\xe9.jpg")) == "caf\\xe9.jpg"
    assert text_cell("fine/päth\n.jpg") == "fine/päth\n.jpg"


def test_every_format_round_trips_hostile_names(tiny_model: Path, hostile_dir: Path, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pq = pytest.importorskip("pyarrow.parquet")
    with Scorer([tiny_model]) as scorer:
        results = list(scorer.score_paths([hostile_dir]))
    assert len(results) == len(HOSTILE_NAMES)
    paths = [r.path for r in results]
    written = [expected_cell(p) for p in paths]
    with open(tmp_path / "s.csv", "w", encoding="utf-8", newline="") as stream:
        writer = CsvWriter(stream, ["tiny"], escape_formulas=False)
        for result in results:
            writer.write(result)
    with open(tmp_path / "s.jsonl", "w", encoding="utf-8", newline="") as stream:
        jsonl = JsonlWriter(stream, ["tiny"])
        for result in results:
            jsonl.write(result)
    parquet = ParquetWriter(str(tmp_path / "s.parquet"), ["tiny"])
    for result in results:
        parquet.write(result)
    parquet.close()

    with open(tmp_path / "s.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert [row[0] for row in rows[1:]] == written
    frame = pd.read_csv(tmp_path / "s.csv", keep_default_na=False)
    assert list(frame["path"]) == written  # one pandas row per file, not more
    lines = (tmp_path / "s.jsonl").read_text(encoding="utf-8").split("\n")[:-1]
    assert [json.loads(line)["path"] for line in lines] == written
    assert pq.read_table(tmp_path / "s.parquet").column("path").to_pylist() == written

    errors = [row[1] for row in rows[1:] if row[1]]
    assert len(errors) == 4
    for error in errors + [json.loads(line)["error"] for line in lines if json.loads(line)["error"]]:
        assert error.isprintable() and "\n" not in error and "\r" not in error
    assert f"{hostile_dir}/line\\nbreak.jpg: not an image file Pillow can read" in errors

    for fmt in ("csv", "jsonl"):  # resume finds every path it wrote: nothing would be scored again
        done = done_paths(tmp_path / f"s.{fmt}", fmt, ["tiny"])
        assert len(done) == len(paths) and all(path in done for path in paths)


def test_csv_formula_cells_are_escaped_by_default(tiny_model: Path, hostile_dir: Path, tmp_path: Path) -> None:
    with Scorer([tiny_model]) as scorer:
        results = list(scorer.score_paths([hostile_dir]))
    relative = [type(r)(os.path.basename(r.path), r.error, r.scores) for r in results]  # names alone
    buffer = io.StringIO()
    writer = CsvWriter(buffer, ["tiny"])
    for result in relative:
        writer.write(result)
    first_cells = [row[0] for row in csv.reader(io.StringIO(buffer.getvalue()))][1:]
    assert "'=HYPERLINK(x).jpg" in first_cells and "'+1.jpg" in first_cells and "'-2.jpg" in first_cells
    assert "'@SUM(A1).png" in first_cells and "'\tstarts with a tab.jpg" in first_cells
    assert "naïve ünïcödé 写真.jpg" in first_cells  # nothing else changes
    plain = io.StringIO()
    writer = CsvWriter(plain, ["tiny"], escape_formulas=False)
    for result in relative:
        writer.write(result)
    assert "=HYPERLINK(x).jpg" in [row[0] for row in csv.reader(io.StringIO(plain.getvalue()))]
    (tmp_path / "e.csv").write_text(buffer.getvalue(), encoding="utf-8")
    done = done_paths(tmp_path / "e.csv", "csv", ["tiny"])
    assert "=HYPERLINK(x).jpg" in done and "+1.jpg" in done  # resume compares the escaped form


def test_parquet_rank_and_best_are_typed(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    with Scorer([tiny_model]) as scorer:
        ranked = list(rank_groups(scorer.score_paths([photo_dir]), "tiny"))
    writer = ParquetWriter(str(tmp_path / "g.parquet"), ["tiny"], ("group", "rank", "best"))
    for row in ranked:
        writer.write(row.result, row.extra())
    writer.close()
    table = pq.read_table(tmp_path / "g.parquet")
    assert str(table.schema.field("rank").type) == "int32" and str(table.schema.field("best").type) == "bool"
    assert table.column("rank").to_pylist() == [1, 2, 3, 1, 2, 3]
    assert table.column("best").to_pylist() == [True, False, False, True, False, False]


def test_score_files_read_back_to_the_real_paths(tiny_model: Path, hostile_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyarrow.parquet")
    from nima_rt.apps.report import read_score_file

    with Scorer([tiny_model]) as scorer:
        results = list(scorer.score_paths([hostile_dir]))
    monkeypatch.chdir(hostile_dir)  # relative names: "=HYPERLINK(x).jpg" is written "'=HYPERLINK(x).jpg" in CSV
    relative = [type(r)(os.path.basename(r.path), r.error, r.scores) for r in results]
    for fmt in ("csv", "jsonl", "parquet"):
        target = tmp_path / f"back.{fmt}"
        if fmt == "parquet":
            writer = ParquetWriter(str(target), ["tiny"])
        else:
            stream = open(target, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
            writer = CsvWriter(stream, ["tiny"]) if fmt == "csv" else JsonlWriter(stream, ["tiny"])
        for result in relative:
            writer.write(result)
        writer.close()
        if fmt != "parquet":
            stream.close()
        _, rows = read_score_file(target)
        assert [row.path for row in rows] == [r.path for r in relative]  # files the report can open again
        assert all(os.path.exists(row.path) for row in rows)
