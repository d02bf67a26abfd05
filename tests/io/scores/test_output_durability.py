"""The output a run writes: one writer at a time, nothing replaced unasked, torn tails cut at record ends,
Parquet resumable through its parts (nima_rt/io/scores/output_file.py, parquet_parts.py, score_output.py).

The same guarantees under real kills and concurrent processes: tests/cli/test_output_kills.py."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from nima_rt.io.results import ModelScore, ScoreBatch, ScoreColumns, ScoreResult
from nima_rt.io.scores.open_output import open_output
from nima_rt.io.scores.output_file import OutputBusy, OutputExists, repair_torn_tail
from nima_rt.io.scores.writers import CsvWriter, JsonlWriter, path_from_cell
from nima_rt.runtime.run import RunOptions, SettingError

FORMATS = ["csv", "jsonl", "parquet"]
# Paths that break line-based reading: line breaks (and a lone carriage return) inside the quoted CSV field,
# quotes, commas, a formula prefix.
ODD_PATHS = ["a.jpg", "line\nbreak.jpg", 'say "cheese"\n.jpg', "cr\ronly.png", "x,y.png", "=1+1.jpg",
             "two\n\nbreaks.jpg", "end.jpg"]


def batch(paths: list[str], failed: tuple[int, ...] = ()) -> ScoreBatch:
    scores = ScoreColumns.empty(len(paths))
    for row in range(len(paths)):
        if row not in failed:
            scores.mean[row], scores.std[row] = 5.0 + row / 10, 1.0
            scores.dist[row] = np.full(10, 0.1, np.float32)
    errors = [f"{path}: broken" if row in failed else None for row, path in enumerate(paths)]
    return ScoreBatch(list(paths), errors, {"tiny": scores})


def write_all(fmt: str, out: Path, paths: list[str], **kwargs: bool) -> None:
    opened = open_output(fmt, str(out), ["tiny"], **kwargs)
    opened.writer.write_batch(batch(paths))
    opened.close()


def written_paths(fmt: str, out: Path) -> list[str]:
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8"))))[1:]
        return [path_from_cell(row[0], csv_cell=True) for row in rows]
    if fmt == "jsonl":
        return [json.loads(line)["path"] for line in out.read_text(encoding="utf-8").splitlines()]
    import pyarrow.parquet as pq

    return pq.read_table(out).column("path").to_pylist()


@pytest.fixture(params=FORMATS)
def fmt(request: pytest.FixtureRequest) -> str:
    if request.param == "parquet":
        pytest.importorskip("pyarrow.parquet")
    return request.param


def test_a_second_writer_is_refused_while_the_first_holds_the_output(fmt: str, tmp_path: Path) -> None:
    out = tmp_path / f"s.{fmt}"
    first = open_output(fmt, str(out), ["tiny"])
    first.writer.write_batch(batch(["a.jpg", "b.jpg"]))
    for asked in ({"resume": True}, {}, {"overwrite": True}):  # whatever it asks, the first writer keeps it
        with pytest.raises(OutputBusy) as busy:
            open_output(fmt, str(out), ["tiny"], **asked)
        assert str(busy.value) == (f"{out}: another nima-rt run is writing this output; wait for it to end (or "
                                   "stop it), then --resume")
    first.writer.write_batch(batch(["c.jpg"]))
    first.close()  # the lock goes with the output
    second = open_output(fmt, str(out), ["tiny"], resume=True)
    assert sorted(second.done.written) == ["a.jpg", "b.jpg", "c.jpg"]
    second.writer.write_batch(batch(["d.jpg"]))
    second.close()
    assert written_paths(fmt, out) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]


def test_an_output_holding_rows_is_refused_unless_resumed_or_overwritten(fmt: str, tmp_path: Path) -> None:
    out = tmp_path / f"s.{fmt}"
    write_all(fmt, out, ["a.jpg", "b.jpg"])
    before = out.read_bytes()
    with pytest.raises(OutputExists) as exists:
        open_output(fmt, str(out), ["tiny"])
    assert str(exists.value).startswith(f"{out}: already ")
    assert str(exists.value).endswith("; pass --resume to continue it or --overwrite to replace it")
    assert out.read_bytes() == before  # untouched
    write_all(fmt, out, ["c.jpg"], overwrite=True)
    assert written_paths(fmt, out) == ["c.jpg"]
    if fmt != "parquet":
        out.write_bytes(b"")  # an empty file (made by mktemp, say) holds nothing to lose
        write_all(fmt, out, ["d.jpg"])
        assert written_paths(fmt, out) == ["d.jpg"]
    with pytest.raises(SettingError, match="--overwrite replaces the output, --resume continues it: choose one"):
        RunOptions(output=str(out), resume=True, overwrite=True)


def test_a_refused_parquet_output_leaves_no_parts_folder(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "s.parquet"
    write_all("parquet", out, ["a.jpg"])
    with pytest.raises(OutputExists, match=r"s.parquet: already exists \(s.parquet\); pass --resume"):
        open_output("parquet", str(out), ["tiny"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.parquet"]


def record_ends(fmt: str, paths: list[str]) -> tuple[bytes, list[int]]:
    """A file's bytes as the writer makes them, and the offset where each record ends (the header's too)."""
    buffer = io.StringIO(newline="")
    writer = CsvWriter(buffer, ["tiny"]) if fmt == "csv" else JsonlWriter(buffer, ["tiny"])
    ends = [len(buffer.getvalue().encode())] if fmt == "csv" else [0]
    for row in batch(paths, failed=(1,)).rows():
        writer.write(row)
        ends.append(len(buffer.getvalue().encode()))
    return buffer.getvalue().encode(), ends


@pytest.mark.parametrize("text_fmt", ["csv", "jsonl"])
def test_a_tail_torn_at_any_byte_is_cut_back_to_the_last_complete_record(text_fmt: str, tmp_path: Path) -> None:
    data, ends = record_ends(text_fmt, ODD_PATHS)
    out = tmp_path / f"torn.{text_fmt}"
    for cut in range(len(data) + 1):  # a kill can stop a write after any byte
        out.write_bytes(data[:cut])
        repair_torn_tail(out, text_fmt)
        kept = max(end for end in ends if end <= cut) if cut >= ends[0] else 0
        assert out.read_bytes() == data[:kept], f"cut at byte {cut}"
        if kept:
            opened = open_output(text_fmt, str(out), ["tiny"], resume=True)
            records = ends.index(kept)  # complete records kept (the header is ends[0] in CSV)
            assert [path in opened.done for path in ODD_PATHS] == [i < records for i in range(len(ODD_PATHS))]
            assert len(opened.done) == records
            opened.writer.abort()
            opened.release()


def test_a_csv_path_with_a_line_break_survives_a_kill_and_resume(tmp_path: Path) -> None:
    data, ends = record_ends("csv", ODD_PATHS)
    out = tmp_path / "s.csv"
    inside = data.index(b"line\n") + len(b"line\n")  # torn just after the line break inside the quoted path
    out.write_bytes(data[:inside])
    opened = open_output("csv", str(out), ["tiny"], resume=True)
    assert set(opened.done.written) == {"a.jpg"}
    opened.writer.write_batch(batch([p for p in ODD_PATHS if p not in opened.done]))
    opened.close()
    assert written_paths("csv", out) == ODD_PATHS
    rows = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8"))))
    assert all(len(row) == len(rows[0]) for row in rows)


def test_a_damaged_csv_row_stops_resume_with_its_line(tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    write_all("csv", out, ["a.jpg", "b.jpg"])
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + lines[1][:20] + lines[2])  # two rows merged into one (an old concurrent run)
    from nima_rt.io.scores.writers import OutputError

    with pytest.raises(OutputError, match=r"s.csv:2: cannot resume, a row has \d+ fields where the header has 14"):
        open_output("csv", str(out), ["tiny"], resume=True)


def parquet_writer_parts(out: Path, paths: list[str], part_rows: int) -> list[Path]:
    """Write ``paths`` into the parts of ``out`` (``part_rows`` a part) without merging them; the parts."""
    from nima_rt.io.scores.parquet_parts import ResumableParquetWriter, claim_parquet, parts_folder

    claim = claim_parquet(out, resume=True, overwrite=False)
    writer = ResumableParquetWriter(claim, ["tiny"], part_rows=part_rows)
    for path in paths:
        writer.write_batch(batch([path]))
    writer.abort()  # as a kill would leave it (minus the unfinished part)
    claim.release()
    return sorted(parts_folder(out).glob("part-*.parquet"))


def test_parquet_parts_are_complete_files_and_resume_continues_them(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "s.parquet"
    parts = parquet_writer_parts(out, [f"{i}.jpg" for i in range(7)], part_rows=3)
    assert not out.exists() and len(parts) == 2  # 6 rows in two parts; the 7th was in the unfinished part
    assert [pq.read_table(p).num_rows for p in parts] == [3, 3]  # each part readable alone
    (parts[0].parent / ".part-1-2.parquet.tmp").write_bytes(b"PAR1 torn")  # a part killed while written
    opened = open_output("parquet", str(out), ["tiny"], resume=True)
    assert sorted(opened.done.written) == [f"{i}.jpg" for i in range(6)]
    opened.writer.write_batch(batch(["6.jpg"]))
    opened.close()
    assert written_paths("parquet", out) == [f"{i}.jpg" for i in range(7)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.parquet"]  # parts and temporary files gone


def test_parts_merged_before_a_kill_are_not_counted_twice(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "s.parquet"
    parts = parquet_writer_parts(out, [f"{i}.jpg" for i in range(4)], part_rows=2)
    saved = tmp_path / "saved"
    shutil.copytree(parts[0].parent, saved)
    opened = open_output("parquet", str(out), ["tiny"], resume=True)
    opened.close()  # merges the parts into s.parquet, then removes them
    shutil.copytree(saved, parts[0].parent)  # as if killed after the rename, before the parts were removed
    again = open_output("parquet", str(out), ["tiny"], resume=True)
    assert sorted(again.done.written) == [f"{i}.jpg" for i in range(4)]
    again.writer.write_batch(batch(["4.jpg"]))
    again.close()
    assert written_paths("parquet", out) == [f"{i}.jpg" for i in range(5)]


def test_resuming_another_runs_parquet_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow.parquet")
    from nima_rt.io.scores.writers import OutputError

    out = tmp_path / "s.parquet"
    write_all("parquet", out, ["a.jpg"])
    with pytest.raises(OutputError, match=r"s.parquet: cannot resume, its columns \(path, error, tiny_mean, tiny_std"
                                          r"\.\.\.\) are not this run's \(path, error, other_mean, other_std\.\.\.\)"):
        open_output("parquet", str(out), ["other"], resume=True)


def test_a_ranked_parquet_output_is_written_through_parts_too(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "r.parquet"
    opened = open_output("parquet", str(out), ["tiny"], ("group", "rank", "best"))
    score = ModelScore(5.0, 1.0, (0.1,) * 10)
    opened.writer.write(ScoreResult("a.jpg", None, {"tiny": score}), {"group": "g", "rank": 1, "best": True})
    opened.close()
    table = pq.read_table(out)
    assert table.column("rank").to_pylist() == [1] and str(table.schema.field("best").type) == "bool"


def test_an_interrupted_ranked_parquet_run_resumes_to_the_uninterrupted_rows(
    tiny_model: Path, photo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    import nima_rt.io.scores.parquet_parts as parts
    from nima_rt import Scorer, ScorerConfig
    from nima_rt.runtime.run import score_run

    photos = sorted(str(p) for p in photo_dir.rglob("*.*"))
    whole, resumed = tmp_path / "whole.parquet", tmp_path / "resumed.parquet"

    def interrupted() -> Iterator[str]:
        yield from photos[:4]
        raise KeyboardInterrupt  # Ctrl-C while the run goes

    monkeypatch.setattr(parts, "PART_ROWS", 1)  # a part per row: the rows scored before the interrupt stay
    with Scorer([tiny_model], ScorerConfig(batch_size=1, prefetch_batches=1)) as scorer:
        score_run(scorer, photos, RunOptions(output=str(whole), group_by="parent"))
        with pytest.raises(KeyboardInterrupt):
            score_run(scorer, interrupted(), RunOptions(output=str(resumed), group_by="parent"))
        assert not resumed.exists() and 1 <= len(list(parts.parts_folder(resumed).glob("part-*"))) <= 4
        summary = score_run(scorer, photos, RunOptions(output=str(resumed), resume=True, group_by="parent"))
        assert summary.resumed >= 1 and summary.resumed + summary.done == 6
        again = score_run(scorer, photos, RunOptions(output=str(resumed), resume=True, group_by="parent"))
    assert (again.done, again.resumed) == (0, 6)
    assert pq.read_table(resumed).equals(pq.read_table(whole))  # ranked, row for row
    assert not parts.parts_folder(resumed).exists()


@pytest.mark.parametrize("ranked_fmt", ["csv", "parquet"])
def test_a_ranked_run_holds_its_output_until_it_is_ranked(
    tiny_model: Path, photo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ranked_fmt: str
) -> None:
    if ranked_fmt == "parquet":
        pytest.importorskip("pyarrow.parquet")
    import nima_rt.runtime.run as run_module
    from nima_rt import Scorer

    out = tmp_path / f"ranked.{ranked_fmt}"
    real_rank = run_module.rank_output
    tried: list[str] = []

    def rank_while_another_run_starts(sources, options):  # noqa: ANN001, ANN202
        with pytest.raises(OutputBusy):  # another run on this output, while it is being ranked: refused
            open_output(ranked_fmt, str(out), ["tiny"], ranked=True, resume=True)
        tried.append("refused")
        return real_rank(sources, options)

    monkeypatch.setattr(run_module, "rank_output", rank_while_another_run_starts)
    with Scorer([tiny_model]) as scorer:
        summary = run_module.score_run(scorer, [photo_dir], RunOptions(output=str(out), group_by="parent"))
    assert tried == ["refused"] and summary.ranked is not None
    again = open_output(ranked_fmt, str(out), ["tiny"], ranked=True, resume=True)  # released once ranked
    assert len(again.done) == 6
    again.release()
