"""`nima-rt rank` through the CLI, and the smaller score options that go with it (format names, --group-by none,
--resume with ranking, a real kill before the rank step)."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from nima_rt.cli import app

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_rank_marks_the_same_best_photo_as_score_group_by(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    grouped = run("score", photo_dir, "-m", tiny_model, "--group-by", "parent", "-q")
    scores = tmp_path / "s.jsonl"
    assert run("score", photo_dir, "-m", tiny_model, "-o", scores, "-q").exit_code == 0
    ranked = run("rank", scores, "--group-by", "parent")
    assert ranked.exit_code == 0, ranked.output
    assert ranked.stdout == grouped.stdout  # the same rows, the same bytes
    assert ranked.stderr.startswith("ranked 6 row(s) in 2 listing(s) (0 failed, never best) in ")
    best = [(r["group"], r["path"]) for r in rows_of(ranked.stdout) if r["best"] == "True"]
    assert len(best) == 2


def test_rank_formats_top_and_several_files(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert run("score", photo_dir / "listing_a", "-m", tiny_model, "-o", a, "-q").exit_code == 0
    assert run("score", photo_dir / "listing_b", "-m", tiny_model, "-o", b, "-q").exit_code == 0
    out = tmp_path / "top.json"  # .json is JSON Lines, as -f json is
    result = run("rank", a, b, "--top", "2", "-o", out, "-q")
    assert result.exit_code == 0 and result.output == ""
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["tiny"]["mean"] >= rows[1]["tiny"]["mean"]
    assert run("rank", a, b, "--top", "2", "-f", "JSON", "-q").stdout == out.read_text()
    parquet = tmp_path / "r.parquet"
    assert run("rank", a, "--rank-by", "tiny", "-o", parquet, "-q").exit_code == 0
    import pyarrow.parquet as pq

    table = pq.read_table(parquet)
    assert table.column_names[-2:] == ["rank", "rank_score"] and str(table.schema.field("rank_score").type) == "double"


def test_rank_errors_and_exit_codes(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    scores = tmp_path / "s.csv"
    assert run("score", photo_dir, "-m", tiny_model, "-o", scores, "-q").exit_code == 0
    missing = run("rank", tmp_path / "nope.csv")
    assert missing.exit_code == 1
    assert missing.stderr == f"error: {tmp_path / 'nope.csv'}: cannot read score file (No such file or directory)\n"
    column = run("rank", scores, "--group-by", "listing_id")
    assert column.exit_code == 1 and column.stderr.startswith("error: --group-by listing_id: no such column in")
    assert run("rank", scores, "--top", "0").exit_code == 2
    assert run("rank", scores, "-f", "xml").exit_code == 2
    assert run("rank").exit_code == 2
    empty = tmp_path / "empty.csv"
    empty.write_text(scores.read_text().splitlines()[0] + "\n")
    nothing = run("rank", empty)
    assert nothing.exit_code == 3 and nothing.stderr.splitlines()[-1] == f"error: no rows to rank in {empty}"
    unchanged = scores.read_bytes()
    failed = run("rank", scores, "--sort-by", "other", "-o", scores)
    assert failed.exit_code == 1 and scores.read_bytes() == unchanged  # a failed rank step leaves its output alone
    other = tmp_path / "other.csv"
    other.write_text("keep me\n")
    refused = run("rank", scores, "--top", "1", "-o", other)
    assert refused.exit_code == 2 and other.read_text() == "keep me\n"
    assert refused.stderr == (f"error: {other}: already holds 8 bytes; pass --overwrite to replace it (or rank it in "
                              "place by naming it among the SCORES)\n")
    assert run("rank", scores, "--top", "1", "-o", other, "--overwrite", "-q").exit_code == 0
    assert len(other.read_text().splitlines()) == 2


def test_score_takes_json_jsonl_and_group_by_none(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    plain = run("score", photo_dir, "-m", tiny_model, "-f", "jsonl", "-q").stdout
    assert run("score", photo_dir, "-m", tiny_model, "-f", "json", "-q").stdout == plain
    assert run("score", photo_dir, "-m", tiny_model, "-f", "JSONL", "-q").stdout == plain
    assert run("score", photo_dir, "-m", tiny_model, "-f", "jsonl", "--group-by", "none", "-q").stdout == plain


def test_report_reads_what_rank_reads(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    scores = tmp_path / "s.csv"
    assert run("score", photo_dir, "-m", tiny_model, "-o", scores, "-q").exit_code == 0
    page = tmp_path / "r.html"
    result = run("report", "--scores", scores, "--group-by", "dir:" + str(len(photo_dir.parts)), "-o", page, "-q")
    assert result.exit_code == 0, result.output
    assert run("report", "--scores", scores, "--group-by", "listing_id", "-o", page).exit_code == 1


def test_a_ranked_run_killed_before_it_ranks_resumes_to_the_same_rows(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    for index in range(240):
        listing = folder / f"L{index % 7:02d}"
        listing.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24, 24), (index % 256, (index * 7) % 256, 90)).save(listing / f"{index:04d}.png")
    whole, killed = tmp_path / "whole.csv", tmp_path / "killed.csv"
    ranking = ["--group-by", "parent", "--rank-by", "tiny"]
    command = [sys.executable, "-m", "nima_rt", "score", str(folder), "-m", str(tiny_model), "--batch-size", "1",
               "--workers", "1", "-q", *ranking]
    assert subprocess.run(command + ["-o", str(whole)], capture_output=True).returncode == 0
    process = subprocess.Popen(command + ["-o", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not killed.exists() or killed.read_text().count("\n") < 30):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = killed.read_text().count("\n") - 1
    assert 29 <= written < 240, "the run must be killed part way"
    assert "group" not in killed.read_text().splitlines()[0]  # not ranked yet: the rows as they were scored
    resumed = subprocess.run(command + ["-o", str(killed), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert killed.read_bytes() == whole.read_bytes()
