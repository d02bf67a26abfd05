"""`nima-rt export --format tensorrt` on a real GPU (run by benchmarks/gpu_check.py; skipped elsewhere).

Engines are built from the same tiny models as tests/export/test_export.py, checked against the float32
ONNX model through the runtime's TensorRT backend, and their sidecars must load in the runtime.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("timm")

from helpers.export_models import TINY_SIZE, brightness_onnx_file, tiny_checkpoint  # noqa: E402

from nima_rt.cli import app  # noqa: E402
from nima_rt.contract.spec import EngineInfo, engine_sidecar_json  # noqa: E402
from nima_rt.export.tensorrt_build import TensorRTUnavailable, require_tensorrt  # noqa: E402
from nima_rt.io.files import file_sha256  # noqa: E402
from nima_rt.io.model_file import load_model_file  # noqa: E402

runner = CliRunner()


def _tensorrt_missing() -> str | None:
    try:
        require_tensorrt()
    except TensorRTUnavailable as exc:
        return str(exc)
    return None


MISSING = _tensorrt_missing()
if MISSING is not None:
    pytest.skip(MISSING, allow_module_level=True)


def _export(*args: object):
    return runner.invoke(app, ["export", *[str(a) for a in args]])


def _run_engine(engine: Path, images: np.ndarray):
    from nima_rt.runtime.backends.base import BackendOptions
    from nima_rt.runtime.backends.tensorrt_engine import create

    backend = create(load_model_file(engine), BackendOptions())
    try:
        return backend.run(images)
    finally:
        backend.close()


def _run_onnx(path: Path, images: np.ndarray):
    from nima_rt.export.verify import onnx_scores

    run, close = onnx_scores(path)
    try:
        return run(images)
    finally:
        close()


def test_fp16_engine_from_a_checkpoint(tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "best.pt")
    engine = tmp_path / "tiny.engine"
    timing = tmp_path / "timing.cache"
    result = _export(checkpoint, "-o", engine, "--precision", "fp16", "--min-batch", 1, "--opt-batch", 8,
                     "--max-batch", 64, "--verify-count", 16, "--timing-cache", timing)
    assert result.exit_code == 0, result.output
    onnx_path = tmp_path / "tiny.onnx"  # the float32 graph the engine was built from, kept beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "timing.cache", "tiny.engine",
                                                          "tiny.engine.json", "tiny.onnx"]
    from nima_rt.runtime.backends.cuda_driver import probe_gpu

    model = load_model_file(engine)
    info = model.engine
    assert (info.precision, info.min_batch, info.opt_batch, info.max_batch) == ("fp16", 1, 8, 64)
    assert info.source_onnx_sha256 == file_sha256(onnx_path)
    gpu = probe_gpu()
    assert (info.gpu_name, info.compute_capability) == (gpu.name, gpu.compute_capability)
    sidecar = (tmp_path / "tiny.engine.json").read_text(encoding="utf-8")
    assert sidecar == engine_sidecar_json(load_model_file(onnx_path).metadata,
                                          EngineInfo(**json.loads(sidecar)["engine"])) + "\n"
    images = np.random.default_rng(3).integers(0, 256, (64, TINY_SIZE, TINY_SIZE, 3), dtype=np.uint8)
    for batch in (1, 7, 64):
        got = _run_engine(engine, images[:batch])
        ref = _run_onnx(onnx_path, images[:batch])
        assert got.mean.shape == (batch,)
        assert np.abs(got.mean - ref[1]).max() <= 0.02
    # A second build reuses the timing cache (and must give an engine that passes again).
    again = _export(onnx_path, "-o", tmp_path / "again.engine", "--precision", "fp16", "--opt-batch", 8,
                    "--max-batch", 64, "--verify-count", 16, "--timing-cache", timing)
    assert again.exit_code == 0, again.output


def test_fp32_engine_matches_onnx_within_1e4(tmp_path: Path) -> None:
    source = brightness_onnx_file(tmp_path / "brightness.onnx", outlier=0.0)
    engine = tmp_path / "brightness.engine"
    result = _export(source, "-o", engine, "--precision", "fp32", "--opt-batch", 16, "--max-batch", 32,
                     "--verify-count", 32, "--timing-cache", tmp_path / "timing.cache")
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stderr.splitlines() if x.startswith("TensorRT fp32 brightness.engine vs float32"))
    assert float(re.search(r"max \|Δ mean\| ([0-9.e+-]+)", line).group(1)) <= 1e-4
    assert load_model_file(engine).engine.precision == "fp32"


def test_int8_engine_is_calibrated_checked_and_its_qdq_model_kept(tmp_path: Path) -> None:
    source = brightness_onnx_file(tmp_path / "brightness.onnx", outlier=0.0)
    engine = tmp_path / "brightness.int8.engine"
    args = [source, "-o", engine, "--precision", "int8", "--opt-batch", 16, "--max-batch", 32,
            "--verify-count", 50, "--calibration-count", 32, "--timing-cache", tmp_path / "timing.cache"]
    first = _export(*args)
    assert first.exit_code == 0, first.output
    qdq = tmp_path / f"brightness.int8.int8-qdq-minmax-{file_sha256(source)[:12]}.onnx"
    assert f"INT8: calibrating on 32 images (minmax) into Q/DQ model {qdq}" in first.stderr
    assert qdq.is_file() and load_model_file(engine).engine.precision == "int8"
    second = _export(*args)
    assert second.exit_code == 0, second.output
    assert f"INT8: reusing the Q/DQ model {qdq} (delete it to recalibrate)" in second.stderr
    assert not list(tmp_path.glob("*.unverified.*"))
