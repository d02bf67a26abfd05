"""benchmarks/gpu_check.py --dry-run: with every GPU library faked on the CPU (tests/helpers/gpu_fakes.py)
the one call reaches every GPU path for every bundled model — TensorRT fp32/fp16/int8 engines built and
run, ONNX Runtime's TensorRT and CUDA providers, torch-cuda, GPU decode, the Scorer end to end — measures
throughput at its batch sizes and checks parity with the CPU scores, exits 0 and prints its table last.
The figures are CPU stand-ins; what this proves is the control flow a GPU session will run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers.paths import REPO

from nima_rt.io.model_file import bundled_models, default_models


def test_dry_run_reaches_every_gpu_path_for_every_bundled_model(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr[-5000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("DRY RUN: every GPU library was faked on the CPU")
    assert lines[1].split() == ["step", "item", "result"]
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert len(lines) == 3 + len(results["rows"])  # one printed line per row, after the banner and the header
    by_item = {(r["step"], r["item"]): r for r in results["rows"]}
    assert [r for r in results["rows"] if r["status"] == "failed"] == [], done.stdout
    assert results["environment"]["dry_run"] is True and results["environment"]["gpu"]["name"].startswith("fake GPU")
    bundled = bundled_models()
    assert bundled, "the package bundles at least one model"
    for name, path in bundled.items():
        label = f"{name} (bundled)"
        float32 = not name.endswith((".int8", ".fp16"))
        paths = ([("tensorrt", p) for p in ("fp32", "fp16", "int8")] + [("onnxruntime-tensorrt", "fp16"),
                 ("onnxruntime-tensorrt", "fp32"), ("onnxruntime-cuda", "fp32")]) if float32 else \
            [("onnxruntime-tensorrt", "int8"), ("onnxruntime-cuda", "int8")]
        for backend, precision in paths:
            item = f"{label}: {backend} {precision}"
            if backend == "tensorrt":
                assert by_item[("engines", f"{label}: tensorrt {precision}")]["status"] == "ok"
            speed = by_item[("model-only", item)]
            assert speed["status"] == "ok" and set(speed["data"]["batches"]) == {"1", "4", "8"}, speed
            parity = by_item[("parity", item)]
            assert parity["status"] == "ok" and parity["data"]["same_graph"]["spearman"] > 0.99, parity
            if (backend, precision) == ("onnxruntime-tensorrt", "fp16"):  # the runtime picks layer precisions
                assert parity["data"]["reference"] == "fp32" and parity["data"]["bar"].startswith(
                    ("no bar: the model's fp16 check did not pass", "max|d mean| <= 0.02")), parity
            else:
                assert "(within " in parity["result"], parity
        if float32:  # bundled models ship without their checkpoint: torch-cuda says so
            torch_row = by_item[("model-only", f"{label}: torch-cuda fp16")]
            assert torch_row["status"] == "skipped" and f"{path.stem}.pt beside {path.name}" in torch_row["result"]
    pair = next(item for step, item in by_item if step == "models" and item.endswith(".onnx"))
    for precision in ("fp16", "fp32"):
        label = f"{pair} (random weights, checkpoint beside): torch-cuda {precision}"
        assert by_item[("model-only", label)]["status"] == by_item[("parity", label)]["status"] == "ok"
    decode = [r for r in results["rows"] if r["step"] == "decode" and "vs CPU decoder" in r["item"]]
    assert len(decode) == 2 and all(r["status"] == "ok" for r in decode)
    ends = [r for r in results["rows"] if r["step"] == "end-to-end"]
    assert [r["status"] for r in ends] == ["ok", "ok"] and all(r["data"]["errors"] == 0 for r in ends)
    if default_models():  # end to end runs the first default model's fp16 engine through the Scorer
        first = default_models()[0]
        assert all(r["data"]["summary"][0] == f"{first}: backend: tensorrt" for r in ends), ends
        assert "decode: nvJPEG" in ends[1]["data"]["summary"][-1]
    assert by_item[("target", "model-only >= 20,000 images/s, b256 fp16")]["status"] == "skipped"
    assert {r["step"] for r in results["rows"]} >= {"environment", "tests", "models", "engines", "model-only",
                                                     "parity", "decode", "end-to-end", "target"}
    assert (out / "summary.md").read_text(encoding="utf-8").startswith("# GPU check ")


def test_a_gpu_run_measures_batch_1_64_and_256() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_check_paths
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert gpu_check_paths.BATCHES == (1, 64, 256)
