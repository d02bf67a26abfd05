"""benchmarks/serve_load.py --quick: every server and load level runs once on generated photos and the
table and JSON carry each figure with the CPU model (a smoke test of the benchmark, never of speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.paths import REPO

pytest.importorskip("uvicorn", reason="nima-rt serve needs the 'serve' extra")


@pytest.mark.slow
def test_quick_run_prints_every_server_and_level(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "serve_load.py"), "--quick", "--model", str(tiny_model),
         "--workdir", str(tmp_path / "work"), "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("CPU: ") and " cores; load average " in lines[0] and "127.0.0.1 only" in lines[0]
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert len(figures["score_rates"]) == 1 and figures["score_rates"][0] > 0
    assert len(figures["single_ms"]) == 1 and figures["single_ms"][0] > 0
    assert set(figures["servers"]) == {"nima-rt serve", "naive (threads, 1 request per run)"}
    for server in figures["servers"].values():
        assert set(server) == {"1", "4"}
        for clients, (level,) in server.items():
            assert level["clients"] == int(clients) and level["requests"] == 8 and level["errors"] == 0
            assert level["rate"] > 0 and 0 < level["p50_ms"] <= level["p99_ms"]
    rows = [line for line in lines if line.startswith("| nima-rt serve |") or line.startswith("| naive")]
    assert len(rows) == 4
