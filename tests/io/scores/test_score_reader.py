"""The one score-file reader (nima_rt.io.scores.reader): every format the writers make and Ray output folders,
read back row for row (carried columns, hostile names, failed rows), several at once, and its one-line
errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from nima_rt.io.results import ModelScore, ScoreBatch, ScoreColumns, ScoreResult
from nima_rt.io.scores.open_output import open_output
from nima_rt.io.scores.reader import RUN_FILE, ScoreFiles, ScoreRow, part_name, read_score_file, read_table
from nima_rt.io.scores.writers import OutputError

DIST = tuple(round(0.05 + 0.01 * k, 6) for k in range(10))
NAMES = ["L1/a.jpg", "L1/=b.jpg", os.fsdecode(b"L2/caf\xe9.jpg"), "L2/line\nbreak.jpg", "L2/bad.jpg"]


def batch() -> ScoreBatch:
    """Five rows, the last failed; scores exact in float32."""
    means = np.array([5.5, 6.25, 4.75, 7.0, np.nan], np.float32)
    dist = np.tile(np.array(DIST, np.float32), (5, 1))
    dist[4] = np.nan
    return ScoreBatch(list(NAMES), [None] * 4 + ["L2/bad.jpg: not an image file Pillow can read"],
                      {"tiny": ScoreColumns(means, np.where(np.isnan(means), np.nan, 1.5).astype(np.float32), dist)})


CARRIED = {"listing_id": ["1", "1", "2", "=2", ""], "city": ["Paris", "Paris", "Lyon", "Lyon", "Lyon"]}


def write(path: Path, fmt: str, carried: dict[str, list[str]] | None = CARRIED) -> Path:
    opened = open_output(fmt, str(path), ["tiny"], tuple(carried or ()))
    opened.writer.write_batch(batch(), carried)
    opened.close()
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_every_format_reads_back_row_for_row(tmp_path: Path, fmt: str) -> None:
    files = ScoreFiles([write(tmp_path / f"s.{fmt}", fmt)])
    assert (files.columns, files.carried) == (["tiny"], ["listing_id", "city"])
    rows = list(files.rows())
    assert [r.path for r in rows] == NAMES  # escapes undone: the names the files had
    assert [r.carried for r in rows] == [{"listing_id": i, "city": c}
                                         for i, c in zip(CARRIED["listing_id"], CARRIED["city"], strict=True)]
    assert rows[0].scores["tiny"] == ModelScore(5.5, 1.5, pytest.approx(DIST, abs=1e-6))
    assert rows[3].scores["tiny"].mean == 7.0 and rows[4].scores == {} and not rows[4].ok
    assert rows[4].error == "L2/bad.jpg: not an image file Pillow can read"
    assert isinstance(rows[0], ScoreRow) and isinstance(rows[0], ScoreResult)
    without = list(files.rows(scores=False))  # the cheap pass ranking makes first
    assert [(r.path, r.carried, r.scores) for r in without] == [(r.path, r.carried, {}) for r in rows]
    cells = list(files.cells())
    assert cells[2] == "L2/caf\\xe9.jpg"  # the cell as written: what --resume compares
    assert cells[1] == "L1/=b.jpg"  # a path starting with a folder is not formula-like


def test_csv_formula_escapes_are_undone(tmp_path: Path) -> None:
    out = tmp_path / "f.csv"
    opened = open_output("csv", str(out), ["tiny"], ("listing_id",))
    picked = batch().take([0])
    opened.writer.write_batch(ScoreBatch(["=cmd.jpg"], picked.errors, picked.scores), {"listing_id": ["=SUM(A1)"]})
    opened.close()
    assert "'=cmd.jpg" in out.read_text() and "'=SUM(A1)" in out.read_text()
    [row] = ScoreFiles([out]).rows()
    assert (row.path, row.cell, row.carried) == ("=cmd.jpg", "'=cmd.jpg", {"listing_id": "=SUM(A1)"})


def ray_folder(root: Path, shards: int = 2, expected: int | None = None) -> Path:
    """A Ray output folder as the engine writes it: a run record and part files (scores + sha256 column)."""
    from nima_rt.io.scores.writers import ParquetWriter

    root.mkdir()
    record = {"inputs": 5 * (expected or shards), "inputs_sha256": "f" * 64, "shard_size": 5, "models": [],
              "version": 1}
    (root / RUN_FILE).write_text(json.dumps(record))
    for shard in range(shards):
        writer = ParquetWriter(str(root / part_name(shard)), ["tiny"], ("listing_id", "city"),
                               constants={"tiny_sha256": "ab" * 32})
        writer.write_batch(batch(), CARRIED)
        writer.close()
    (root / ".part-000009.parquet.tmp-x").write_bytes(b"torn")  # never read
    return root


def test_ray_folders_read_in_shard_order_without_their_sha_columns(tmp_path: Path) -> None:
    folder = ray_folder(tmp_path / "out")
    files = ScoreFiles([str(folder)])
    assert (files.columns, files.carried) == (["tiny"], ["listing_id", "city"])  # tiny_sha256 is provenance
    assert [r.path for r in files.rows()] == NAMES * 2
    assert read_table(str(folder)).num_rows == 10 and "tiny_sha256" in read_table(str(folder)).column_names
    columns, rows = read_score_file(folder)  # what `nima-rt report --scores OUT/` reads
    assert columns == ["tiny"] and len(rows) == 10


def test_several_sources_read_as_one_stream(tmp_path: Path) -> None:
    sources = [write(tmp_path / "a.csv", "csv"), write(tmp_path / "b.jsonl", "jsonl"), ray_folder(tmp_path / "c")]
    assert [r.path for r in ScoreFiles(sources).rows()] == NAMES * 4
    other = write(tmp_path / "d.csv", "csv", carried=None)
    with pytest.raises(OutputError) as caught:
        ScoreFiles([sources[0], other])
    assert str(caught.value) == (f"{other}: holds other columns (tiny) than the first score file (tiny, listing_id, "
                                 "city); rank or report them apart")


def test_unfinished_runs_and_foreign_files_are_one_line_errors(tmp_path: Path) -> None:
    unfinished = ray_folder(tmp_path / "u", shards=1, expected=3)
    with pytest.raises(OutputError) as caught:
        ScoreFiles([unfinished])
    assert str(caught.value) == (f"{unfinished}: the run is not finished (1 of 3 shards written); run the same "
                                 "`nima-rt score --engine ray` command again to complete it")
    assert read_table(str(unfinished)).num_rows == 5  # the Ray engine's read_output reads what there is
    (tmp_path / "empty").mkdir()
    with pytest.raises(OutputError, match="a folder, but not a `nima-rt score --engine ray` output"):
        ScoreFiles([tmp_path / "empty"])
    text = tmp_path / "photo.jsonl"
    text.write_bytes(b"\xff\xd8 not json")
    with pytest.raises(OutputError, match=r"photo.jsonl: not a score file \(not UTF-8 text\)"):
        list(ScoreFiles([text]).rows())
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 but not really")
    with pytest.raises(OutputError, match=r"broken.parquet: cannot read parquet \("):
        ScoreFiles([broken])
    with pytest.raises(OutputError, match=r"missing.csv: cannot read score file \(No such file or directory\)"):
        ScoreFiles([tmp_path / "missing.csv"])
    bad = tmp_path / "bad.csv"
    write(bad, "csv")
    bad.write_text(bad.read_text().replace("5.5", "five", 1))
    with pytest.raises(OutputError, match=r"bad.csv:2: a model score needs a number mean, std and 10 dist values"):
        list(ScoreFiles([bad]).rows())


def test_uris_read_and_rank_like_local_files(tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    from nima_rt.runtime.rank_output import RankOptions, rank_output

    folder = ray_folder(tmp_path / "out")
    memory = fsspec.filesystem("memory")
    for path in folder.iterdir():
        if not path.name.startswith("."):
            memory.pipe(f"/nima-test-uri/out/{path.name}", path.read_bytes())
    uri = "memory://nima-test-uri/out"
    assert [r.path for r in ScoreFiles([uri]).rows()] == [r.path for r in ScoreFiles([folder]).rows()]
    summary = rank_output([uri], RankOptions(output="memory://nima-test-uri/picks.csv", group_by="listing_id"))
    assert (summary.rows, summary.listings) == (10, 4)  # listings "1", "2", "=2" and "" (the failed row's)
    local = tmp_path / "picks.csv"
    rank_output([folder], RankOptions(output=str(local), group_by="listing_id"))
    assert memory.cat("/nima-test-uri/picks.csv").decode("utf-8") == local.read_text(encoding="utf-8")
    assert not [name for name in memory.ls("/nima-test-uri", detail=False) if ".tmp-" in name]
