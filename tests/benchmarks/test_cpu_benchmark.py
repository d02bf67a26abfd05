"""benchmarks/cpu_throughput.py --quick: every variant runs once on generated photos, the table and the
JSON carry each figure, the CPU model and the load (a smoke test of the benchmark, never of speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.paths import REPO


@pytest.mark.slow
def test_quick_run_prints_every_variant_and_the_measured_ceiling(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("torchvision")
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "cpu_throughput.py"), "--quick", "--model", str(tiny_model),
         "--peer-backbone", "mobilenetv3_small_050", "--workdir", str(tmp_path / "work"), "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("CPU: ") and " cores; load average " in lines[0]
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert set(figures["rows"]) == {"eager", "eager-1thread", "dataloader", "naive-ort", "nima-rt fp32"}
    for name, row in figures["rows"].items():
        assert len(row["rates"]) == 1 and row["rates"][0] > 0, name
    assert figures["files"] == 24 and len(list((tmp_path / "work" / "quick").glob("*.jpg"))) == 24
    ceiling = figures["ceilings"]["fp32"]
    assert ceiling["cpu_ms_decode"] > 0 and ceiling["cpu_ms_infer"] > 0
    assert ceiling["images_per_s"] == pytest.approx(ceiling["cores"] * 1000 / (ceiling["cpu_ms_decode"]
                                                                               + ceiling["cpu_ms_infer"]))
    assert figures["rows"]["nima-rt fp32"]["peak_rss_mb"][0] > 10  # VmHWM of the child was read
    assert figures["rows"]["nima-rt fp32"]["cpu_ms"][0] > 0  # the child's CPU time was read
    assert figures["first_row_s"]["fp32"] > 0
    assert figures["int8_skipped"].endswith("and pass that file with --model")  # a model file has no INT8 copy
    table = [line for line in lines if line.startswith("| ")]
    assert any(line.startswith("| ceiling fp32: ") for line in table)
    assert any(line.startswith("| `nima-rt score` fp32 (steady state) | ") for line in table)
    assert any(line.startswith("  where the time goes: the whole process spends ") for line in lines)
    assert lines[-1].startswith("load average ")
