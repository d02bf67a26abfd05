"""Error rows leave as their files fail: a run of failing files is not held in memory for a batch of images
that never comes (issue 25 item 7: 200,000 three-byte .jpg files wrote nothing until the end of the run).
The 200,000-file figure itself: benchmarks/memory_bound.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from helpers.paths import REPO

from nima_rt import Scorer, ScorerConfig
from nima_rt.io.inputs import InputItem


def broken_files(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    paths = [folder / f"{index:05d}.jpg" for index in range(count)]
    for path in paths:
        path.write_bytes(b"\xff\xd8\xff")  # three bytes of a JPEG: every decode fails
    return paths


def test_a_batch_of_error_rows_leaves_without_waiting_for_images(tiny_model: Path, tmp_path: Path) -> None:
    paths = broken_files(tmp_path / "broken", 2000)
    taken: list[str] = []

    def items() -> Iterator[InputItem]:
        for path in paths:
            taken.append(str(path))
            yield InputItem(str(path))

    with Scorer([tiny_model], ScorerConfig(batch_size=4, workers=2)) as scorer:
        batches = scorer.score_item_batches(items())
        first = next(batches)
        assert len(first) == 4 and first.failed == 4
        held = scorer.batch_size * (scorer.config.prefetch_batches + scorer.streams)  # decode window, inference
        assert len(taken) <= held == 16  # not all 2000
        rest = list(batches)
    assert sum(len(batch) for batch in rest) == 1996 and all(len(batch) <= 4 for batch in rest)


def test_error_rows_reach_the_output_while_the_run_still_waits_for_inputs(tiny_model: Path, tmp_path: Path) -> None:
    paths = broken_files(tmp_path / "broken", 100)
    out = tmp_path / "rows.csv"
    run = subprocess.Popen([sys.executable, "-m", "nima_rt", "score", "-", "-m", str(tiny_model), "-o", str(out),
                            "--batch-size", "4", "-q"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert run.stdin is not None
    run.stdin.write("".join(f"{path}\n" for path in paths))
    run.stdin.flush()  # the list stays open: the run waits for more paths
    deadline = time.monotonic() + 120
    rows = 0
    while time.monotonic() < deadline and rows < 84:
        time.sleep(0.05)
        rows = out.read_bytes().count(b"\n") - 1 if out.exists() else 0
    waiting = run.poll() is None
    run.stdin.close()
    assert run.wait(60) == 3  # every input failed
    assert waiting and rows >= 84, f"{rows} rows on disk while the run waited"  # all but the window and a batch
    assert out.read_bytes().count(b"\n") == 101
