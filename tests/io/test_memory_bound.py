"""Peak memory is bounded by the decode budget, not by what hostile files declare.

Measured in a fresh interpreter by its own peak RSS (VmHWM in /proc/self/status), with the bundled
default model and default settings, over tiny files made here (docs/guide/runtime.md#memory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.hostile_files import hostile_corpus
from helpers.paths import REPO

LIMIT_MB = 600

SCORE_AND_MEASURE = """
import json, sys
from nima_rt import Scorer
with Scorer() as scorer:
    rows = [(r.path, r.error) for r in scorer.score_paths([sys.argv[1]])]
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({"rows": rows, "vmhwm_kb": int(status["VmHWM"].split()[0])}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for the peak RSS")
def test_hostile_tiny_files_keep_peak_memory_under_600_mb(tmp_path: Path) -> None:
    corpus = hostile_corpus(4)
    for name, data in corpus.items():
        (tmp_path / name).write_bytes(data)
    assert sum(len(d) for d in corpus.values()) < 20_000  # 20 files, none over 1 KB
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", SCORE_AND_MEASURE, str(tmp_path)], capture_output=True, text=True,
                         env=env, cwd=REPO, timeout=300, check=True)
    result = json.loads(out.stdout)
    rows = dict(result["rows"])
    assert len(rows) == len(corpus)  # every file one row
    failed = {Path(p).name.rsplit("_", 1)[0] for p, error in rows.items() if error}
    assert failed == {"blp", "rle_cut", "png"}
    assert all(rows[str(tmp_path / f"blp_{i}.jpg")].endswith("embeds a 12000x12000 JPEG") for i in range(4))
    peak_mb = result["vmhwm_kb"] / 1024
    assert peak_mb < LIMIT_MB, f"peak RSS {peak_mb:.0f} MB"
