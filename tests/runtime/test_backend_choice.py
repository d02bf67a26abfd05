"""Choosing a backend on a CPU machine: every GPU backend's availability, the auto order, the one
summary line, engine sidecars that do not match the machine, and `--device cuda` without a GPU.

The GPU is simulated only where the choosing logic is under test (``probe_gpu`` monkeypatched);
nothing here claims a GPU backend ran. Real GPU runs are in tests/test_gpu_*.py (marked gpu).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers.tiny_models import tiny_model_proto
from onnx import helper
from typer.testing import CliRunner

from nima_rt.cli import app
from nima_rt.contract.spec import METADATA_KEY, EngineInfo, ModelMetadata, engine_sidecar_json
from nima_rt.io.files import file_sha256
from nima_rt.io.model_file import load_model_file
from nima_rt.runtime.backends import (
    BACKENDS,
    BackendOptions,
    BackendOutput,
    BackendUnavailable,
    choose_backend,
    cuda_driver,
    onnxruntime_gpu,
    probe_backends,
    tensorrt_engine,
    torch_cuda,
)

runner = CliRunner()
NO_DRIVER = "no NVIDIA GPU driver: libcuda.so.1 not found"
H200 = cuda_driver.GpuInfo(name="NVIDIA H200", compute_capability="9.0", driver_version="12.8", device_count=1)
GPU_NAMES = ["tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "torch-cuda"]


def no_gpu() -> cuda_driver.GpuInfo:
    raise BackendUnavailable(NO_DRIVER)


@pytest.fixture
def without_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_driver, "probe_gpu", no_gpu)


@pytest.fixture
def with_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_driver, "probe_gpu", lambda: H200)


class FakeBackend:
    """Stands in for a GPU backend the choosing logic opened (it never computes on a GPU)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def run(self, images: np.ndarray) -> BackendOutput:
        raise AssertionError("not used")

    def close(self) -> None:
        self.closed = True


def test_backends_are_registered_in_the_auto_order() -> None:
    assert [e.name for e in BACKENDS] == GPU_NAMES + ["onnxruntime-cpu"]
    assert [e.device for e in BACKENDS] == ["cuda"] * 4 + ["cpu"]


def test_cpu_machine_skips_every_gpu_backend_in_one_line(tiny_model: Path, without_gpu: None) -> None:
    model = load_model_file(tiny_model)
    statuses = probe_backends(model)
    assert [(s.name, s.reason) for s in statuses] == [(n, NO_DRIVER) for n in GPU_NAMES] + [("onnxruntime-cpu", None)]
    choice = choose_backend(model)
    assert choice.backend.name == "onnxruntime-cpu"
    assert choice.summary == (
        "backend: onnxruntime-cpu; skipped tensorrt, onnxruntime-tensorrt, onnxruntime-cuda, torch-cuda "
        f"({NO_DRIVER})"
    )
    choice.backend.close()


def test_real_probe_on_this_machine_gives_a_one_line_reason(tiny_model: Path) -> None:
    try:
        gpu = cuda_driver.probe_gpu()
    except BackendUnavailable as exc:
        assert "\n" not in str(exc) and str(exc)
        statuses = probe_backends(load_model_file(tiny_model), "cuda")
        assert {s.reason for s in statuses} == {str(exc)}
    else:
        assert gpu.name and gpu.compute_capability.count(".") == 1


def test_gpu_present_but_libraries_missing_names_each_reason(
    tiny_model: Path, with_gpu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnxruntime_gpu.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    version = onnxruntime_gpu.ort.__version__
    reasons = {s.name: s.reason for s in probe_backends(load_model_file(tiny_model), "cuda")}
    assert reasons == {
        "tensorrt": "needs a TensorRT .engine file, not an onnx model",
        "onnxruntime-tensorrt": f"onnxruntime {version} has no TensorrtExecutionProvider (has: CPUExecutionProvider); "
        "pip install 'nima-rt[gpu]' for onnxruntime-gpu",
        "onnxruntime-cuda": f"onnxruntime {version} has no CUDAExecutionProvider (has: CPUExecutionProvider); "
        "pip install 'nima-rt[gpu]' for onnxruntime-gpu",
        "torch-cuda": "needs the training checkpoint tiny.pt beside tiny.onnx, see docs/guide/gpu.md",
    }


def test_auto_takes_the_first_backend_that_opens_and_says_why_others_were_skipped(
    tiny_model: Path, with_gpu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []

    def refuse(model, options):
        raise BackendUnavailable("onnxruntime did not start TensorrtExecutionProvider")

    def open_cuda(model, options):
        opened.append("onnxruntime-cuda")
        return FakeBackend("onnxruntime-cuda")

    monkeypatch.setattr(onnxruntime_gpu, "tensorrt_availability", lambda model: None)
    monkeypatch.setattr(onnxruntime_gpu, "cuda_availability", lambda model: None)
    monkeypatch.setattr(onnxruntime_gpu, "create_tensorrt", refuse)
    monkeypatch.setattr(onnxruntime_gpu, "create_cuda", open_cuda)
    choice = choose_backend(load_model_file(tiny_model))
    assert choice.backend.name == "onnxruntime-cuda" and opened == ["onnxruntime-cuda"]
    assert choice.summary == (
        "backend: onnxruntime-cuda; skipped tensorrt (needs a TensorRT .engine file, not an onnx model); "
        "onnxruntime-tensorrt (onnxruntime did not start TensorrtExecutionProvider)"
    )
    # --device cpu never looks at the GPU backends; --backend picks one by name
    assert choose_backend(load_model_file(tiny_model), "cpu").summary == "backend: onnxruntime-cpu"
    forced = choose_backend(load_model_file(tiny_model), backend="onnxruntime-cuda")
    assert forced.backend.name == "onnxruntime-cuda"


def test_gpu_provider_dropped_by_onnxruntime_is_unavailable_not_cpu_in_disguise(
    tiny_model: Path, with_gpu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CPU build of onnxruntime drops a CUDA provider it was asked for and runs on the CPU.
    monkeypatch.setattr(onnxruntime_gpu, "_gpu_reason", lambda model, provider: None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(BackendUnavailable) as caught:
            onnxruntime_gpu.create_cuda(load_model_file(tiny_model), BackendOptions())
    assert str(caught.value) == (
        "onnxruntime did not start CUDAExecutionProvider (session runs on CPUExecutionProvider); "
        "check that the CUDA, cuDNN and TensorRT libraries it needs are installed"
    )


def test_tensorrt_provider_options_cache_folder_profile_and_precision(tiny_model: Path, tmp_path: Path) -> None:
    model = load_model_file(tiny_model)
    options = onnxruntime_gpu.tensorrt_provider_options(model, BackendOptions(cache_dir=str(tmp_path), max_batch=64))
    cache = str(tmp_path / model.sha256[:16])
    assert options == {
        "device_id": "0",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": cache,
        "trt_fp16_enable": "False",  # no fp16 check recorded in the tiny model: fp32 (docs/design/architecture.md)
        "trt_profile_min_shapes": "images:1x32x32x3",
        "trt_profile_opt_shapes": "images:64x32x32x3",
        "trt_profile_max_shapes": "images:64x32x32x3",
    }
    fp16 = onnxruntime_gpu.tensorrt_provider_options(model, BackendOptions(precision="fp16"))
    assert fp16["trt_fp16_enable"] == "True"
    checked = dataclasses.replace(model, metadata=dataclasses.replace(
        model.metadata, precision_checks={"fp16": {"passed": True, "max_abs_mean": 0.004}}))
    assert onnxruntime_gpu.tensorrt_provider_options(checked, BackendOptions())["trt_fp16_enable"] == "True"
    fp32 = onnxruntime_gpu.tensorrt_provider_options(checked, BackendOptions(precision="fp32"))
    assert fp32["trt_fp16_enable"] == "False"
    with pytest.raises(BackendUnavailable, match="precision 'int8' is not one of fp16, fp32 here"):
        onnxruntime_gpu.tensorrt_provider_options(model, BackendOptions(precision="int8"))
    with pytest.raises(BackendUnavailable, match="onnxruntime-cuda runs the model's own precision"):
        onnxruntime_gpu.create_cuda(model, BackendOptions(precision="fp16"))


# -- TensorRT engine sidecars ---------------------------------------------------------------------


def write_engine(folder: Path, tensorrt_version: str = "10.3.0", gpu_name: str = "NVIDIA H200",
                 compute_capability: str = "9.0") -> Path:
    engine = folder / "model.engine"
    engine.write_bytes(b"not a real engine: never deserialised by these tests")
    info = EngineInfo(tensorrt_version, gpu_name, compute_capability, "fp16", 1, 64, 256, "0" * 64)
    metadata = ModelMetadata(name="tiny", kind="technical", input_size=32)
    (folder / "model.engine.json").write_text(engine_sidecar_json(metadata, info), encoding="utf-8")
    return engine


@pytest.fixture
def tensorrt_10_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_driver, "probe_gpu", lambda: H200)
    monkeypatch.setattr(tensorrt_engine, "tensorrt_version", lambda: "10.3.0")
    monkeypatch.setattr(tensorrt_engine, "import_cudart", lambda: object())


REBUILD = "rebuild it on this machine with `nima-rt export MODEL.onnx --format tensorrt`"


@pytest.mark.parametrize(
    ("built", "message"),
    [
        ({"tensorrt_version": "10.1.0"},
         f"model.engine was built with TensorRT 10.1.0, this machine has TensorRT 10.3.0; {REBUILD}"),
        ({"gpu_name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"},
         "model.engine was built for compute capability 8.0 (NVIDIA A100-SXM4-80GB), this GPU (NVIDIA H200) "
         f"has compute capability 9.0; {REBUILD}"),
        ({"gpu_name": "NVIDIA H100 80GB HBM3"},
         f"model.engine was built for GPU NVIDIA H100 80GB HBM3, this machine has GPU NVIDIA H200; {REBUILD}"),
        ({}, None),
    ],
)
def test_engine_sidecar_is_checked_against_the_machine(
    tmp_path: Path, tensorrt_10_3: None, built: dict, message: str | None
) -> None:
    model = load_model_file(write_engine(tmp_path, **built))
    assert tensorrt_engine.availability(model) == message


def test_mismatched_engine_is_refused_through_the_cli(tmp_path: Path, tensorrt_10_3: None) -> None:
    engine = write_engine(tmp_path, tensorrt_version="10.1.0")
    reason = f"model.engine was built with TensorRT 10.1.0, this machine has TensorRT 10.3.0; {REBUILD}"
    result = runner.invoke(app, ["info", str(engine)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert f"  {'tensorrt':<22} cuda  unavailable ({reason})" in lines
    assert any(line.startswith(f"  {'onnxruntime-cpu':<22} cpu   unavailable (") for line in lines)
    assert result.stderr.strip().startswith(f"error: no usable backend for model.engine: tensorrt: {reason}; ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_engine_without_tensorrt_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_driver, "probe_gpu", lambda: H200)
    monkeypatch.setattr(tensorrt_engine.importlib.util, "find_spec", lambda name: None)
    model = load_model_file(write_engine(tmp_path))
    assert tensorrt_engine.availability(model) == "tensorrt is not installed: pip install 'nima-rt[gpu]'"


# -- PyTorch CUDA: the checkpoint beside the ONNX -------------------------------------------------


def write_model_with_checkpoint(folder: Path, checkpoint: bytes | None, recorded: str | None) -> Path:
    proto = tiny_model_proto(name="tiny", size=32)
    meta = ModelMetadata(name="tiny", kind="technical", input_size=32, source_checkpoint_sha256=recorded or "")
    helper.set_model_props(proto, {METADATA_KEY: meta.to_json()})
    path = folder / "aesthetic.onnx"
    onnx.save(proto, str(path))
    if checkpoint is not None:
        (folder / "aesthetic.pt").write_bytes(checkpoint)
    return path


def test_torch_cuda_needs_the_matching_checkpoint(tmp_path: Path, with_gpu: None) -> None:
    (tmp_path / "a").mkdir()
    missing = load_model_file(write_model_with_checkpoint(tmp_path / "a", None, "ab" * 32))
    assert torch_cuda.availability(missing) == "needs the training checkpoint aesthetic.pt beside aesthetic.onnx, " \
                                                "see docs/guide/gpu.md"
    (tmp_path / "b").mkdir()
    unrecorded = load_model_file(write_model_with_checkpoint(tmp_path / "b", b"weights", None))
    assert torch_cuda.availability(unrecorded) == (
        "aesthetic.onnx records no source_checkpoint_sha256, so aesthetic.pt cannot be matched to it"
    )
    (tmp_path / "c").mkdir()
    foreign = load_model_file(write_model_with_checkpoint(tmp_path / "c", b"other weights", "ab" * 32))
    actual = file_sha256(tmp_path / "c" / "aesthetic.pt")
    assert torch_cuda.availability(foreign) == (
        f"aesthetic.pt has sha256 {actual[:16]}, but aesthetic.onnx was exported from {'ab' * 8}"
    )


def test_torch_cuda_with_matching_checkpoint_then_asks_torch(tmp_path: Path, with_gpu: None) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a usable GPU: the reason under test does not arise")
    checkpoint = tmp_path / "probe.pt"
    checkpoint.write_bytes(b"weights")
    model = load_model_file(write_model_with_checkpoint(tmp_path, b"weights", file_sha256(checkpoint)))
    assert torch_cuda.availability(model) == (
        f"torch {torch.__version__} cannot use the GPU: torch.cuda.is_available() is False"
    )


# -- the CLI --------------------------------------------------------------------------------------


def test_device_cuda_without_gpu_is_one_line_and_exit_1(tiny_model: Path, photo_dir: Path, without_gpu: None) -> None:
    result = runner.invoke(app, ["score", str(photo_dir), "--model", str(tiny_model), "--device", "cuda"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: --device cuda: no usable NVIDIA GPU ({NO_DRIVER}); use --device auto or --device cpu\n"
    )


def test_info_lists_every_backend_as_available_unavailable_or_chosen(tiny_model: Path, without_gpu: None) -> None:
    result = runner.invoke(app, ["info", str(tiny_model)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = lines.index("backends:")
    assert lines[start + 1:] == [f"  {name:<22} cuda  unavailable ({NO_DRIVER})" for name in GPU_NAMES] + [
        f"  {'onnxruntime-cpu':<22} cpu   chosen"
    ]
