"""ScoreBatch, the columns scores travel in: rows, slices and concatenation agree with the row form, and the
Parquet writer's columnar path writes exactly what its row path writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nima_rt import Scorer
from nima_rt.io.inputs import iter_inputs
from nima_rt.io.results import ModelScore, ScoreBatch, ScoreColumns, ScoreResult
from nima_rt.io.scores.writers import ParquetWriter

pq = pytest.importorskip("pyarrow.parquet")


def _batch() -> ScoreBatch:
    a = ScoreColumns.empty(3)
    a.mean[[0, 2]] = [5.5, 3.25]
    a.std[[0, 2]] = [1.5, 0.75]
    a.dist[0], a.dist[2] = np.full(10, 0.1), np.eye(10)[2]
    return ScoreBatch(["x/a.jpg", "x/b.jpg", "y/=c.jpg"], [None, "x/b.jpg: not an image", None], {"m": a})


def test_rows_slices_and_concatenation() -> None:
    batch = _batch()
    assert [row.ok for row in batch.rows()] == [True, False, True]
    assert batch.failed == 1 and batch.first_failure() == 1 and batch.ok.tolist() == [True, False, True]
    tenth = np.float32(0.1).item()  # stored as float32, read back as that float
    assert batch.row(0) == ScoreResult("x/a.jpg", None, {"m": ModelScore(5.5, 1.5, (tenth,) * 10)})
    assert batch.row(1) == ScoreResult("x/b.jpg", "x/b.jpg: not an image")
    reordered = batch.take([2, 0])
    assert [row.path for row in reordered.rows()] == ["y/=c.jpg", "x/a.jpg"]
    assert reordered.row(0).scores["m"].dist == tuple(np.eye(10)[2].tolist())
    joined = ScoreBatch.concat([batch.take([0]), batch.take([1, 2])], ["m"])
    assert list(joined.rows()) == list(batch.rows())
    assert len(ScoreBatch.concat([], ["m"])) == 0


def test_parquet_batches_and_rows_write_the_same_table(tmp_path: Path) -> None:
    batch = _batch()
    by_batch, by_row = tmp_path / "batch.parquet", tmp_path / "row.parquet"
    writer = ParquetWriter(str(by_batch), ["m"], group_rows=2)
    writer.write_batch(batch.take([0, 1]))
    writer.write_batch(batch.take([2]))
    writer.close()
    writer = ParquetWriter(str(by_row), ["m"])
    for row in batch.rows():
        writer.write(row)
    writer.close()
    assert pq.read_table(by_batch).equals(pq.read_table(by_row))
    assert pq.ParquetFile(by_batch).metadata.num_row_groups == 2  # row groups of ~group_rows, not one per batch


def test_scorer_batches_are_its_rows(tiny_model: Path, photo_dir: Path) -> None:
    (photo_dir / "listing_a" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with Scorer([tiny_model]) as scorer:
        rows = list(scorer.score_paths([photo_dir]))
        batches = list(scorer.score_item_batches(iter_inputs([photo_dir])))
    assert [row for batch in batches for row in batch.rows()] == rows
    assert sum(len(batch) for batch in batches) == 7 and sum(batch.failed for batch in batches) == 1
