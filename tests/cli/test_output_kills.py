"""Real `nima-rt score` processes killed (SIGKILL) at several moments and resumed, and two processes on one
output: every input ends with exactly one row, equal to an uninterrupted run's, in CSV, JSONL and Parquet
(docs/guide/runtime.md#guarantees)."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import REPO
from PIL import Image

from nima_rt.io.scores.writers import path_from_cell

INPUTS = 600
PART_ROWS = 16  # small Parquet parts, so that a kill lands between parts, not only before the first
# `nima-rt` with small Parquet parts (the run's only difference from the installed command)
LAUNCH = (f"import sys, nima_rt.io.scores.parquet_parts as parts; parts.PART_ROWS = {PART_ROWS}; "
          "from nima_rt.cli import app; app(prog_name='nima-rt')")
SLOW = ["--batch-size", "1", "--workers", "1", "--threads", "1", "-q"]  # one image at a time: kills land mid-run


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(0)
    for index in range(INPUTS):
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(folder / f"{index:04d}.png")
    (folder / "0100.png").write_bytes(b"\x89PNG torn")  # failed rows are rows too
    return folder


def score_command(folder: Path | str, model: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", LAUNCH, "score", str(folder), "-m", str(model), "-o", str(out), *SLOW, *extra]


def start(command: list[str], stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen[str]:
    return subprocess.Popen(command, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))


def rows_on_disk(fmt: str, out: Path) -> int:
    """Rows a reader would see now (CSV/JSONL: complete lines, roughly; Parquet: rows in finished parts)."""
    if fmt == "parquet":
        return PART_ROWS * len(list(out.with_name(out.name + ".parts").glob("part-*.parquet"))) if not \
            out.exists() else INPUTS
    return out.read_bytes().count(b"\n") if out.exists() else 0


def kill_when(process: subprocess.Popen[str], fmt: str, out: Path, rows: int, timeout: float = 120) -> int:
    """SIGKILL ``process`` once ``rows`` rows are on disk (0: at once, while it starts); the rows seen."""
    deadline = time.monotonic() + timeout
    while rows and rows_on_disk(fmt, out) < rows and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return rows_on_disk(fmt, out)


def read_rows(fmt: str, out: Path) -> list[tuple[str, object]]:
    """(path, the rest of the row) for every row, in file order."""
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8"))))
        assert all(len(row) == len(rows[0]) for row in rows), "a torn or merged row"
        return [(path_from_cell(row[0], csv_cell=True), tuple(row[1:])) for row in rows[1:]]
    if fmt == "jsonl":
        records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        return [(r.pop("path"), json.dumps(r, sort_keys=True)) for r in records]
    import pyarrow.parquet as pq

    records = pq.read_table(out).to_pylist()
    return [(r.pop("path"), json.dumps(r, sort_keys=True)) for r in records]


def formats() -> list[str]:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return ["csv", "jsonl"]
    return ["csv", "jsonl", "parquet"]


@pytest.mark.parametrize("fmt", formats())
def test_killed_at_several_moments_then_resumed_every_row_once(
    fmt: str, many: Path, tiny_model: Path, tmp_path: Path
) -> None:
    reference = tmp_path / f"reference.{fmt}"
    done = subprocess.run(score_command(many, tiny_model, reference), capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    out = tmp_path / f"killed.{fmt}"
    seen = []
    for index, wait_rows in enumerate([0, 20, 150, 320]):  # at start-up, early, after parts, further on
        command = score_command(many, tiny_model, out, *(["--resume"] if index else []))
        seen.append(kill_when(start(command), fmt, out, wait_rows))
    assert seen[-1] < INPUTS, f"the runs ended before the last kill ({seen}): nothing was tested"
    if fmt == "parquet":
        assert not out.exists()  # never a file under the final name before the run ends
    last = subprocess.run(score_command(many, tiny_model, out, "--resume"), capture_output=True, text=True,
                          cwd=REPO)
    assert last.returncode == 0, last.stderr
    rows = read_rows(fmt, out)
    assert sorted(path for path, _ in rows) == sorted(str(p) for p in many.iterdir())  # nothing lost
    assert len(rows) == len({path for path, _ in rows}) == INPUTS  # nothing twice
    assert dict(rows) == dict(read_rows(fmt, reference))  # each row as an uninterrupted run writes it


@pytest.mark.parametrize("fmt", formats())
def test_a_second_run_on_the_same_output_is_refused_and_the_first_finishes_alone(
    fmt: str, many: Path, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / f"shared.{fmt}"
    first = start(score_command("-", tiny_model, out), stdin=subprocess.PIPE)  # waits for its paths on stdin
    assert first.stdin is not None
    deadline = time.monotonic() + 60
    while not (out.exists() or out.with_name(out.name + ".parts").exists()) and time.monotonic() < deadline:
        time.sleep(0.005)  # the first run holds the output
    second = subprocess.run(score_command(many, tiny_model, out, "--resume"), capture_output=True, text=True,
                            cwd=REPO)
    assert first.poll() is None  # still waiting for its inputs
    first.stdin.write("".join(f"{path}\n" for path in sorted(many.iterdir())))
    first.stdin.close()
    assert first.wait(120) == 0, first.stderr.read() if first.stderr else ""
    assert second.returncode == 2
    assert second.stderr == (f"error: {out}: another nima-rt run is writing this output; wait for it to end (or "
                             "stop it), then --resume\n")
    rows = read_rows(fmt, out)
    assert len(rows) == len({path for path, _ in rows}) == INPUTS


def test_two_runs_started_together_one_writes_the_other_is_refused(
    many: Path, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "race.jsonl"
    runs = [start(score_command(many, tiny_model, out)) for _ in range(2)]
    codes = sorted(run.wait(120) for run in runs)
    assert codes == [0, 2]  # the other found the output busy, or (had the first ended) holding rows
    rows = read_rows("jsonl", out)
    assert len(rows) == len({path for path, _ in rows}) == INPUTS
