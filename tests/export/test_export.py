"""`nima-rt export` on CPU: checkpoint -> contract ONNX (fp32, fp16, INT8 QDQ), parity, refusals.

The checkpoint is a random-init ``mobilenetv3_small_050`` at 64 px with its head weights scaled up
so the scores spread over about one point; the INT8 pass case uses a small convolutional network
whose score follows brightness, which INT8 must rank exactly as float32 does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("timm")

from helpers.export_models import TINY_SIZE, brightness_onnx_file, tiny_checkpoint  # noqa: E402

from nima_rt.cli import app  # noqa: E402
from nima_rt.contract.spec import default_gpu_precision  # noqa: E402
from nima_rt.export import tensorrt_build  # noqa: E402
from nima_rt.export.api import ExportFailed, ExportRequest, default_output, run_export  # noqa: E402
from nima_rt.export.images import ImageSetError, plan_split  # noqa: E402
from nima_rt.export.onnx_export import OPSET, contract_nodes  # noqa: E402
from nima_rt.export.verify import Drift, VerificationFailed, check_int8, check_tolerance, onnx_scores  # noqa: E402
from nima_rt.io.files import file_sha256  # noqa: E402
from nima_rt.io.model_file import load_model_file  # noqa: E402
from nima_rt.runtime.backends import cuda_driver  # noqa: E402
from nima_rt.runtime.metrics import spearman  # noqa: E402
from nima_rt.train.model.checkpoint import load_checkpoint  # noqa: E402

runner = CliRunner()
SIZE = TINY_SIZE
VERIFY = 16  # verification images per export (enough for the statistics, quick on 2 cores)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt")


@pytest.fixture(scope="module")
def fp32_export(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    output = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    lines: list[str] = []
    result = run_export(ExportRequest(checkpoint, output, verify_count=VERIFY), lines.append)
    return result, lines


@pytest.fixture(scope="module")
def brightness_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return brightness_onnx_file(tmp_path_factory.mktemp("bright") / "brightness.onnx", outlier=0.0)


def _shape(value) -> tuple[int, list]:
    tensor = value.type.tensor_type
    return tensor.elem_type, [d.dim_param or d.dim_value for d in tensor.shape.dim]


def test_fp32_graph_follows_the_contract(fp32_export) -> None:
    result, lines = fp32_export
    model = onnx.load(str(result.output))
    onnx.checker.check_model(model, full_check=True)
    umask = os.umask(0)
    os.umask(umask)
    assert result.output.stat().st_mode & 0o777 == 0o666 & ~umask  # a model file others may read
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    assert [i.name for i in model.graph.input] == ["images"]
    assert _shape(model.graph.input[0]) == (onnx.TensorProto.UINT8, ["N", SIZE, SIZE, 3])
    assert {o.name: _shape(o) for o in model.graph.output} == {
        "dist": (onnx.TensorProto.FLOAT, ["N", 10]),
        "mean": (onnx.TensorProto.FLOAT, ["N"]),
        "std": (onnx.TensorProto.FLOAT, ["N"]),
    }
    ops = [node.op_type for node in model.graph.node]
    assert ops[:4] == ["Transpose", "Cast", "Sub", "Div"]  # normalisation inside the graph
    assert "Identity" not in ops  # onnxslim's pass was kept
    assert re.fullmatch(r"traced .*best\.pt \(opset 17\): simplified \d+ -> \d+ nodes \(max \|diff\| 0\.0e\+00\)",
                        lines[0])


def test_fp32_matches_pytorch_within_1e4(fp32_export) -> None:
    result, lines = fp32_export
    drift = result.drift
    assert drift.count == VERIFY
    assert drift.max_abs_mean <= 1e-4
    assert drift.max_abs_dist <= 1e-5
    assert drift.reference_spread > 0.3  # the check compares scores that actually differ
    assert drift.spearman > 0.999
    assert lines[-2] == "verify fp32: within tolerance 0.0001"


def test_fp32_export_records_the_fp16_check_the_gpu_policy_reads(fp32_export) -> None:
    result, lines = fp32_export
    check = result.metadata.precision_checks["fp16"]
    assert check["passed"] is True and check["tolerance"] == 0.02 and check["images"] == VERIFY
    assert 0 < check["max_abs_mean"] <= 0.02
    assert lines[-1] == (f"fp16 check for GPU backends: max |Δ mean| {check['max_abs_mean']:.2e} "
                         "(passed the 0.02 bar; GPUs default to fp16)")
    written = load_model_file(result.output).metadata  # the file itself carries the verdict
    assert written.precision_checks == result.metadata.precision_checks
    assert default_gpu_precision(written) == "fp16"
    assert default_gpu_precision(dataclasses.replace(written, precision_checks={})) == "fp32"
    failed = {"fp16": {**check, "passed": False}}
    assert default_gpu_precision(dataclasses.replace(written, precision_checks=failed)) == "fp32"


def test_dynamic_batch_1_7_64_matches_pytorch(fp32_export, checkpoint: Path) -> None:
    result, _ = fp32_export
    module = load_checkpoint(checkpoint).contract_module()
    run, close = onnx_scores(result.output, threads=2)
    images = np.random.default_rng(7).integers(0, 256, (64, SIZE, SIZE, 3), dtype=np.uint8)
    for batch in (1, 7, 64):
        dist, mean, std = run(images[:batch])
        with torch.no_grad():
            ref = [t.numpy() for t in module(torch.from_numpy(images[:batch]))]
        assert dist.shape == (batch, 10) and mean.shape == (batch,) and std.shape == (batch,)
        assert np.abs(mean - ref[1]).max() <= 1e-4
        assert np.abs(std - ref[2]).max() <= 1e-4
        assert np.abs(dist - ref[0]).max() <= 1e-5
    close()


def test_metadata_round_trips_through_info_json(fp32_export, checkpoint: Path) -> None:
    result, _ = fp32_export
    shown = runner.invoke(app, ["info", str(result.output), "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    meta = data["metadata"]
    assert data["format"] == "onnx"
    assert meta["name"] == "tiny-export" and meta["kind"] == "technical"
    assert meta["input_size"] == SIZE
    assert meta["backbone"] == "mobilenetv3_small_050"
    assert meta["trained_on"] == "nothing (test checkpoint)"
    assert meta["metrics"] == {"srcc": 0.5}
    assert meta["source_checkpoint_sha256"] == file_sha256(checkpoint)
    assert meta["normalization"] == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", meta["created"])


def test_fp16_keeps_uint8_input_float32_outputs_and_parity(checkpoint: Path, tmp_path: Path) -> None:
    output = tmp_path / "tiny.fp16.onnx"
    result = run_export(ExportRequest(checkpoint, output, precision="fp16", verify_count=VERIFY))
    assert result.drift.max_abs_mean <= 0.02
    assert result.drift.spearman > 0.99
    model = onnx.load(str(output))
    onnx.checker.check_model(model, full_check=True)
    assert _shape(model.graph.input[0]) == (onnx.TensorProto.UINT8, ["N", SIZE, SIZE, 3])
    assert all(_shape(o)[0] == onnx.TensorProto.FLOAT for o in model.graph.output)
    weights = [t for t in model.graph.initializer if t.name.startswith("onnx::Conv")]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    # The contract's own nodes (normalisation, logits, softmax, mean/std) stay float32: no
    # float32 -> float16 -> float32 round trips between them.
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert len(casts) == 3  # uint8 -> float32, float32 -> float16 into the backbone, features back
    assert "fp16 weights and compute" in result.metadata.notes


def test_int8_below_the_ranking_bar_is_refused_then_forced(tmp_path: Path) -> None:
    source = brightness_onnx_file(tmp_path / "outlier.onnx", outlier=1300.0)
    output = tmp_path / "outlier.int8.onnx"
    args = [source, "--precision", "int8", "--verify-count", 56, "--calibration-count", 24]
    refused = _cli(*args)
    assert refused.exit_code == 1
    reason = refused.stderr.splitlines()[-1]
    assert re.fullmatch(
        "error: " + re.escape(str(output)) + r": INT8 Spearman -?0\.\d{4} against float32 on 56 held-out images "
        r"is below 0\.99 \(mean \|Δ mean\| [0-9.e-]+\); calibrate with more representative images "
        r"\(--calibration-images\) or use fp16; not written \(--force writes it anyway\)",
        reason,
    ), refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outlier.onnx"]
    forced = _cli(*args, "--force")
    assert forced.exit_code == 0, forced.output
    assert forced.stdout == f"{output}\n"
    warning = reason.removeprefix("error: ").split("; not written")[0] + "; written anyway (--force)"
    assert f"warning: {warning}" in forced.stderr.splitlines()
    assert output.is_file()


def test_int8_from_a_checkpoint_reports_its_drift(checkpoint: Path, tmp_path: Path) -> None:
    output = tmp_path / "tiny.int8.onnx"
    result = run_export(ExportRequest(checkpoint, output, precision="int8", verify_count=16,
                                      calibration_count=16, force=True))
    assert output.is_file() and result.drift.count == 16
    assert 0.0 < result.drift.mean_abs_mean < 0.2  # quantised: not identical, not wild
    ops = [node.op_type for node in onnx.load(str(output)).graph.node]
    assert ops.count("QuantizeLinear") > 10
    assert re.fullmatch(r"INT8 static QDQ \(minmax, 16 calibration images\); Spearman -?[01]\.\d{4}, "
                        r"mean \|Δ mean\| [0-9.e-]+ vs float32 on 16 held-out images", result.metadata.notes)
    assert result.metadata.source_checkpoint_sha256 == file_sha256(checkpoint)


def test_int8_from_onnx_meets_the_bar_on_held_out_images(brightness_onnx: Path, tmp_path: Path) -> None:
    output = tmp_path / "brightness.int8.onnx"
    lines: list[str] = []
    result = run_export(
        ExportRequest(brightness_onnx, output, precision="int8", verify_count=56, calibration_count=24), lines.append
    )
    assert lines[0] == ("INT8 calibration: 24 images from 24 generated images; "
                        "evaluation: 56 held-out images from 56 generated images")
    assert re.fullmatch(r"INT8 gate: Spearman 1\.0000 >= 0\.99 on 56 held-out images \(the gate needs at least 50\)",
                        lines[-1]), lines
    assert result.drift.spearman >= 0.99
    assert result.drift.mean_abs_mean < 0.01
    assert result.drift.reference_spread > 4
    model = onnx.load(str(output))
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("QuantizeLinear") >= 1 and ops.count("DequantizeLinear") >= 2
    assert "Softmax" in ops and _shape(model.graph.input[0])[0] == onnx.TensorProto.UINT8
    assert result.metadata.notes.startswith("INT8 static QDQ (minmax, 24 calibration images); Spearman 1.0000")


def test_int8_calibration_and_evaluation_images_never_overlap(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(9):
        Image.new("RGB", (40, 30), (index * 20, 50, 80)).save(folder / f"p{index}.png")
    plan = plan_split(folder, None, 100, 100)
    assert [p.name for p in plan.evaluation] == ["p0.png", "p2.png", "p4.png", "p6.png", "p8.png"]  # every 2nd
    assert [p.name for p in plan.calibration] == ["p1.png", "p3.png", "p5.png", "p7.png"]
    with pytest.raises(ImageSetError, match="every image is also an evaluation image"):
        plan_split(folder, folder, 100, 100)


def test_the_int8_gate_needs_enough_held_out_images(brightness_onnx: Path, tmp_path: Path) -> None:
    """12 images once passed at Spearman 0.993 a file whose Spearman on all 88 photos was 0.982: a verdict on
    so few images is refused, before quantising, naming how many there were and how many it needs."""
    lucky = Drift(count=12, max_abs_mean=0.1, mean_abs_mean=0.05, max_abs_std=0, max_abs_dist=0, spearman=0.993,
                  reference_spread=3.0)
    too_few = ("m.onnx: INT8 would be judged on 12 held-out images, fewer than the 50 its Spearman bar needs to be "
               "trusted; give more photos (--verify-images DIR, or one folder of at least 100 files: every 2nd file "
               "evaluates) or leave both folders out for generated images")
    with pytest.raises(VerificationFailed) as refused:
        check_int8(lucky, "m.onnx", force=False)  # before: passed (0.993 >= 0.99)
    assert str(refused.value) == f"{too_few} (Spearman 0.9930 on those); not written (--force writes it anyway)"
    forced = check_int8(lucky, "m.onnx", force=True)
    assert forced == f"{too_few} (Spearman 0.9930 on those); written anyway (--force)"
    enough = Drift(count=50, max_abs_mean=0.1, mean_abs_mean=0.05, max_abs_std=0, max_abs_dist=0, spearman=0.993,
                   reference_spread=3.0)
    assert check_int8(enough, "m.onnx", force=False) is None
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(24):
        Image.new("RGB", (40, 30), (index * 10, 50, 80)).save(folder / f"p{index:02d}.png")
    output = tmp_path / "b.int8.onnx"
    lines: list[str] = []
    with pytest.raises(VerificationFailed) as early:
        run_export(ExportRequest(brightness_onnx, output, precision="int8", calibration_images=folder), lines.append)
    assert str(early.value) == too_few.replace("m.onnx", str(output)) + "; nothing written (--force writes it anyway)"
    assert lines == [f"INT8 calibration: 12 images from {folder} (files not held out); "
                     f"evaluation: 12 held-out images from {folder} (every other file)"]  # refused before quantising
    assert not output.exists()


def test_verification_tolerances_and_spearman() -> None:
    drift = Drift(count=8, max_abs_mean=2e-4, mean_abs_mean=1e-4, max_abs_std=0, max_abs_dist=0,
                  spearman=1.0, reference_spread=1.0)
    with pytest.raises(VerificationFailed) as failed:
        check_tolerance(drift, "fp32", "m.onnx")
    assert str(failed.value) == ("m.onnx: fp32 scores differ from the reference by up to 0.0002 "
                                 "(tolerance 0.0001) on 8 images")
    with pytest.raises(VerificationFailed):
        check_tolerance(drift, "fp32", "m.onnx", force=True)  # a float32 mismatch is a bug, never forced
    assert check_tolerance(drift, "fp16", "m.onnx") is None
    steep = Drift(count=8, max_abs_mean=0.05, mean_abs_mean=0.01, max_abs_std=0, max_abs_dist=0, spearman=0.9999,
                  reference_spread=8.0)
    with pytest.raises(VerificationFailed, match=r"^m\.onnx: fp16 scores differ from the reference by up to 0\.05 "
                                                 r"\(tolerance 0\.02\) on 8 images$"):
        check_tolerance(steep, "fp16", "m.onnx")
    assert check_tolerance(steep, "fp16", "m.onnx", force=True) == (
        "m.onnx: fp16 scores differ from the reference by up to 0.05 (tolerance 0.02) on 8 images; "
        "written anyway (--force)")
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([10, 20, 40, 30.0])) == pytest.approx(0.8)
    assert np.isnan(spearman(np.ones(4), np.arange(4.0)))


def test_contract_nodes_are_the_normalisation_and_the_score_head(fp32_export) -> None:
    result, _ = fp32_export
    model = onnx.load(str(result.output))
    kinds = {n.name: n.op_type for n in model.graph.node}
    kept = [kinds[name] for name in contract_nodes(model)]
    assert sorted(kept) == sorted(["Transpose", "Cast", "Sub", "Div", "Gemm", "Softmax", "MatMul", "MatMul",
                                   "Mul", "Sub", "Clip", "Sqrt"])


def _cli(*args: object):
    return runner.invoke(app, ["export", *[str(a) for a in args]])


def test_corrupt_and_foreign_onnx_files_are_refused(tmp_path: Path) -> None:
    from helpers.tiny_models import write_tiny_model

    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage that is not protobuf\xff\xff")
    result = _cli(corrupt, "--precision", "fp16")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {corrupt}: not an ONNX model file (")
    foreign = write_tiny_model(tmp_path / "foreign.onnx", metadata=False)
    for extra in (["--precision", "fp16"], ["--format", "tensorrt", "-o", str(tmp_path / "f.engine")]):
        result = _cli(foreign, *extra)
        assert result.exit_code == 1
        assert result.stderr == (f"error: {foreign}: ONNX model has no 'nima_rt' metadata; it was not exported "
                                 "by nima-rt (use `nima-rt export`)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.onnx", "foreign.onnx"]


def test_variants_are_made_from_the_float32_graph_only(fp32_export, tmp_path: Path) -> None:
    result, _ = fp32_export
    half = tmp_path / "tiny.fp16.onnx"
    assert _cli(result.output, "-o", half, "--precision", "fp16", "--verify-count", 4).exit_code == 0
    again = _cli(half, "-o", tmp_path / "tiny.int8.onnx", "--precision", "int8")
    assert (again.exit_code, again.stderr) == (
        1, f"error: {half}: is an fp16 model; export from the float32 ONNX model or the checkpoint instead\n")


def test_usage_errors_are_one_line(checkpoint: Path, tmp_path: Path) -> None:
    result = _cli(checkpoint, "-o", tmp_path / "x.onnx", "--precision", "int4")
    assert (result.exit_code, result.stderr) == (1, "error: --precision must be one of fp32, fp16, int8, got 'int4'\n")
    result = _cli(tmp_path / "missing.pt")
    missing = tmp_path / "missing.pt"
    assert (result.exit_code, result.stderr) == (1, f"error: {missing}: no such checkpoint or ONNX file\n")
    not_checkpoint = tmp_path / "notes.pt"
    not_checkpoint.write_text("hello")
    result = _cli(not_checkpoint, "-o", tmp_path / "x.onnx")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {not_checkpoint}: not a readable nima-rt checkpoint (")
    assert default_output(Path("runs/a/best.pt"), "onnx", "fp16") == Path("runs/a/best.fp16.onnx")
    assert default_output(Path("m.onnx"), "tensorrt", "int8") == Path("m.int8.engine")
    assert default_output(Path("out/m.int8.engine"), "onnx", "fp32") == Path("out/m.onnx")
    result = _cli(checkpoint, "-o", tmp_path / "x.onnx", "--verify-images", tmp_path / "nowhere")
    assert (result.exit_code, result.stderr) == (
        1, f"error: {tmp_path / 'nowhere'}: --verify-images must be a folder of images\n")
    result = _cli(checkpoint, "-o", tmp_path / "x.engine", "--opt-batch", 512)
    assert (result.exit_code, result.stderr) == (
        1, "error: batch profile must satisfy 1 <= --min-batch <= --opt-batch <= --max-batch, got 1/512/256\n")
    with pytest.raises(ExportFailed, match="already a float32 ONNX model"):
        run_export(ExportRequest(_existing_onnx(tmp_path), tmp_path / "y.onnx"))


def _existing_onnx(tmp_path: Path) -> Path:
    from helpers.tiny_models import write_tiny_model

    return write_tiny_model(tmp_path / "tiny.onnx")


@pytest.mark.skipif(tensorrt_build.tensorrt_installed(), reason="tensorrt is installed here")
def test_tensorrt_missing_is_one_line_and_writes_nothing(checkpoint: Path, tmp_path: Path) -> None:
    result = _cli(checkpoint, "-o", tmp_path / "model.engine", "--precision", "fp16")
    assert result.exit_code == 1
    assert result.stderr == ("error: TensorRT export needs the 'gpu' extra (the tensorrt Python package is not "
                             "installed): pip install 'nima-rt[gpu]'\n")
    assert list(tmp_path.iterdir()) == []


def test_tensorrt_without_gpu_names_the_missing_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tensorrt_build, "tensorrt_installed", lambda: True)
    monkeypatch.setattr(cuda_driver, "DRIVER_LIBRARY", "libcuda-not-here.so.1")
    with pytest.raises(tensorrt_build.TensorRTUnavailable) as missing:
        tensorrt_build.require_tensorrt()
    assert str(missing.value) == ("TensorRT export needs an NVIDIA GPU (no NVIDIA GPU driver: "
                                  "libcuda-not-here.so.1 not found)")
