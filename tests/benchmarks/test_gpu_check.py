"""benchmarks/gpu_check.py --dry-run: the CPU-safe parts run, exit 0, the table (printed last) says
why every GPU row was skipped, and the full results land in the --out folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers.paths import REPO

from nima_rt.runtime.backends import BackendUnavailable, cuda_driver


def test_dry_run_exits_0_and_prints_its_table_with_skip_reasons(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run", "--model", str(tiny_model),
         "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].split() == ["step", "item", "result"]
    rows = {" ".join(line.split()[:3]): line for line in lines[2:]}
    try:
        cuda_driver.probe_gpu()
        reason = None
    except BackendUnavailable as exc:
        reason = str(exc)
    if reason is not None:  # this machine has no GPU: every GPU backend row names the driver's reason
        for backend in ("tensorrt fp16", "onnxruntime-tensorrt fp16", "onnxruntime-cuda fp32", "torch-cuda fp16"):
            assert rows[f"model-only {backend}"].endswith(f"SKIPPED: {reason}")
    assert rows["model-only onnxruntime-cpu fp32"].endswith("images/s")
    assert "SKIPPED: dry run: no GPU" in rows["end-to-end folder of"]
    assert any("draft off" in line and "pixels mean 0.00 / max 1 grey levels" in line for line in lines)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["environment"]["dry_run"] is True
    assert {row["step"] for row in results["rows"]} >= {"environment", "tests", "model-only", "decode", "end-to-end"}
    assert not [row for row in results["rows"] if row["status"] == "failed"]
    assert (out / "summary.md").read_text(encoding="utf-8").startswith("# GPU check ")
