"""The TensorRT export flow on CPU, against fakes of TensorRT 10.x and 11.x (tests/helpers/gpu_fakes.py).

What the fakes show: every network is strongly typed (the creation flag on 10.x, nothing on 11.x, where
it is the only mode), the graph TensorRT parses carries the precision (the float32 file itself, its
fp16 copy, or a Q/DQ copy with TensorRT's quantisation rules, kept beside the engine and reused), the
builder is configured as documented (profile, TF32 off for fp32 only, workspace, timing cache in and
out), and the provisional engine + sidecar are loaded by the runtime's own TensorRT backend, which
runs the parsed graph (ONNX Runtime on CPU through the fake engine), and checked against the float32
ONNX: written, or deleted when INT8 misses the bar. Parity and refusal are real measurements of
those graphs.

What they cannot show: that real TensorRT parses and builds these graphs on a GPU
(tests/export/test_export_tensorrt.py, run by benchmarks/gpu_check.py); the calls themselves are
checked against NVIDIA's real 10.x and 11.x bindings in tests/runtime/test_gpu_conformance.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")

from helpers.export_models import brightness_onnx_file  # noqa: E402
from helpers.gpu_fakes import FAKE_GPU_NAME, install_fake_gpu  # noqa: E402
from helpers.tensorrt_fake import PLAN_MAGIC  # noqa: E402

from nima_rt.export import tensorrt_build  # noqa: E402
from nima_rt.export.api import ExportRequest, run_export  # noqa: E402
from nima_rt.export.tensorrt_build import TensorRTSettings, TensorRTUnavailable  # noqa: E402
from nima_rt.export.verify import VerificationFailed  # noqa: E402
from nima_rt.io.files import file_sha256  # noqa: E402

VERSIONS = ["10.16.1.11", "11.4.0.106"]


@pytest.fixture(params=VERSIONS)
def fake(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    return install_fake_gpu(monkeypatch, request.param)


def _parsed(fake) -> onnx.ModelProto:
    (network,) = fake.networks
    return onnx.load_from_string(network.onnx)


def _strongly_typed_flags(fake) -> int:
    return 0 if fake.__version__.startswith("11.") else 1 << 1  # STRONGLY_TYPED is 1 in NVIDIA's enum


def test_fp16_engine_parses_the_fp16_graph_strongly_typed(fake, tmp_path: Path) -> None:
    source = brightness_onnx_file(tmp_path / "brightness.onnx", outlier=0.0)
    engine, timing = tmp_path / "brightness.engine", tmp_path / "timing.cache"
    timing.write_bytes(b"earlier")
    lines: list[str] = []
    settings = TensorRTSettings(min_batch=1, opt_batch=8, max_batch=32, timing_cache=timing, workspace_gib=0.5)
    result = run_export(ExportRequest(source, engine, format="tensorrt", precision="fp16", verify_count=12,
                                      tensorrt=settings), lines.append)
    (network,) = fake.networks
    assert network.flags == _strongly_typed_flags(fake) and network.strongly_typed(fake)
    parsed = _parsed(fake)
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in parsed.graph.initializer)  # the fp16 graph
    assert parsed.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    (config,) = fake.configs
    assert config.profiles == [{"images": [[1, 32, 32, 3], [8, 32, 32, 3], [32, 32, 32, 3]]}]
    assert config.flags == {"TF32"} and config.workspace == 1 << 29  # no precision flag: the graph decides
    assert fake.timing_in == [b"earlier"] and timing.read_bytes() == b"earlier+timings"
    assert engine.read_bytes().startswith(PLAN_MAGIC)
    info = json.loads((tmp_path / "brightness.engine.json").read_text(encoding="utf-8"))["engine"]
    assert {k: info[k] for k in ("tensorrt_version", "gpu_name", "compute_capability", "precision", "min_batch",
                                 "opt_batch", "max_batch", "source_onnx_sha256")} == {
        "tensorrt_version": fake.__version__, "gpu_name": FAKE_GPU_NAME, "compute_capability": "9.0",
        "precision": "fp16", "min_batch": 1, "opt_batch": 8, "max_batch": 32, "source_onnx_sha256": file_sha256(source)}
    # the runtime backend ran the fp16 graph: in chunks of the opt batch, within the fp16 bar, not bit-exact
    assert fake.executed == [8, 4]
    assert 0 < result.drift.max_abs_mean < 0.02 and result.drift.count == 12
    assert lines[1] == (f"building fp16 engine for {FAKE_GPU_NAME} (sm 9.0), TensorRT {fake.__version__}, "
                        "strongly typed, batch 1/8/32")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["brightness.engine", "brightness.engine.json",
                                                         "brightness.onnx", "timing.cache"]


def test_fp32_engine_parses_the_source_and_turns_tf32_off(fake, tmp_path: Path) -> None:
    source = brightness_onnx_file(tmp_path / "brightness.onnx", outlier=0.0)
    settings = TensorRTSettings(opt_batch=4, max_batch=8, timing_cache=tmp_path / "t.cache")
    result = run_export(ExportRequest(source, tmp_path / "m.engine", format="tensorrt", verify_count=4,
                                      tensorrt=settings))
    assert fake.networks[0].onnx == source.read_bytes()
    assert fake.configs[0].flags == set()
    assert result.drift.max_abs_mean == 0.0


def _qdq_rules_broken(model: onnx.ModelProto) -> list[str]:
    """TensorRT's explicit-quantisation rules: int8 (not uint8) with zero point 0, and no int32 dequantisation."""
    values = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    broken = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zero = values.get(node.input[2]) if len(node.input) > 2 else None
        if zero is None or zero.dtype != np.int8 or zero.any():
            broken.append(f"{node.name}: zero point {None if zero is None else (zero.dtype, zero.ravel()[:3])}")
        if node.op_type == "DequantizeLinear" and node.input[0] in values and values[node.input[0]].dtype != np.int8:
            broken.append(f"{node.name}: dequantises {values[node.input[0]].dtype}")
    return broken


def test_int8_engine_parses_a_tensorrt_qdq_graph_kept_beside_it_and_reused(fake, tmp_path: Path) -> None:
    source = brightness_onnx_file(tmp_path / "brightness.onnx", outlier=0.0)
    engine = tmp_path / "brightness.int8.engine"
    settings = TensorRTSettings(opt_batch=8, max_batch=32, timing_cache=tmp_path / "t.cache")
    request = ExportRequest(source, engine, format="tensorrt", precision="int8", verify_count=50,
                            calibration_count=20, tensorrt=settings)
    lines: list[str] = []
    result = run_export(request, lines.append)
    qdq = tmp_path / f"brightness.int8.int8-qdq-minmax-{file_sha256(source)[:12]}.onnx"
    parsed = _parsed(fake)
    assert fake.networks[0].onnx == qdq.read_bytes()
    quantizers = [n for n in parsed.graph.node if n.op_type == "QuantizeLinear"]
    assert quantizers and _qdq_rules_broken(parsed) == []
    assert fake.configs[0].flags == {"TF32"}
    assert f"INT8: calibrating on 20 images (minmax) into Q/DQ model {qdq}" in lines
    assert result.drift.spearman >= 0.99 and result.drift.max_abs_mean > 0  # measured on the Q/DQ graph
    assert engine.is_file() and (tmp_path / "brightness.int8.engine.json").is_file()
    lines.clear()
    run_export(request, lines.append)
    assert f"INT8: reusing the Q/DQ model {qdq} (delete it to recalibrate)" in lines
    assert fake.networks[1].onnx == qdq.read_bytes()


def test_the_cpu_int8_recipe_would_break_tensorrt_rules(tmp_path: Path) -> None:
    """Why TensorRT gets its own recipe: the CPU one has uint8 activations with non-zero zero points."""
    from nima_rt.export.quantize import QuantizeSettings, quantize_qdq

    source = brightness_onnx_file(tmp_path / "brightness.onnx", outlier=0.0)
    from nima_rt.io.model_file import load_model_file

    metadata = load_model_file(source).metadata
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    cpu = quantize_qdq(source, tmp_path / "cpu.onnx", images, metadata, QuantizeSettings())
    gpu = quantize_qdq(source, tmp_path / "gpu.onnx", images, metadata, tensorrt_build.tensorrt_qdq_settings())
    assert any("uint8" in line for line in _qdq_rules_broken(cpu))
    assert _qdq_rules_broken(gpu) == []


def test_int8_engine_below_the_bar_is_deleted_unless_forced(fake, tmp_path: Path) -> None:
    source = brightness_onnx_file(tmp_path / "outlier.onnx", outlier=1300.0)
    engine = tmp_path / "outlier.int8.engine"
    settings = TensorRTSettings(opt_batch=8, max_batch=32, timing_cache=tmp_path / "t.cache")
    request = ExportRequest(source, engine, format="tensorrt", precision="int8", verify_count=50,
                            calibration_count=16, tensorrt=settings)
    # one per-tensor int8 scale must span the outlier channel: the brightness channels collapse to one step
    with pytest.raises(VerificationFailed, match=r"outlier\.int8\.engine: INT8 Spearman undefined \(constant scores\) "
                                                 r"against float32 on 50 held-out images is below 0\.99"):
        run_export(request)
    assert not list(tmp_path.glob("*.engine*"))
    request.force = True
    result = run_export(request)
    assert engine.is_file() and (tmp_path / "outlier.int8.engine.json").is_file()
    assert result.warnings[0].endswith("; written anyway (--force)")
    assert not list(tmp_path.glob("*.unverified.*"))


def test_builder_that_cannot_start_is_one_line(fake, tmp_path: Path) -> None:
    class NoCuda(fake.Builder):
        def __init__(self, logger) -> None:
            raise TypeError("pybind11::init(): factory function returned nullptr")

    fake.Builder = NoCuda
    source = brightness_onnx_file(tmp_path / "brightness.onnx", outlier=0.0)
    with pytest.raises(TensorRTUnavailable) as caught:
        run_export(ExportRequest(source, tmp_path / "m.engine", format="tensorrt", verify_count=4))
    assert str(caught.value) == (
        "TensorRT could not start: trt.Builder failed (pybind11::init(): factory function returned nullptr); "
        "TensorRT could not initialise CUDA (check the NVIDIA driver, that the GPU is visible, and that the "
        "driver supports CUDA 13)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["brightness.onnx"]
