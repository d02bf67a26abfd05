"""benchmarks/rank_memory.py on small files: every case runs `nima-rt rank` in a fresh process and prints its
peak RSS (a smoke test of the benchmark, never of speed or memory)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from helpers.paths import REPO


def test_small_run_prints_every_case(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "rank_memory.py"), "--rows", "2000", "--formats", "csv,parquet",
         "--keep", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if re.match(r"^(csv|parquet) (grouped|spread|sort) ", line)]
    assert len(rows) == 12  # 2 formats x 2 sizes x 3 cases
    for line in rows:
        peak = float(line.split()[4])
        assert 20 < peak < 2000, line  # a peak RSS in MiB was read from the child process
    assert (tmp_path / "ranked-grouped-2000.csv").read_text().startswith("path,error,m_mean")
