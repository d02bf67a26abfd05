"""The TensorRT engine backend's buffering, splitting and padding, on CPU against honest fakes.

``FakeCudaRuntime`` (tests/helpers/gpu_fakes.py) mimics cuda-python's runtime calls with *lazy* streams:
nothing queued on a stream runs until the host synchronises on it (an event or the stream), and a stream
waiting on an event first runs the other stream up to that event. That is the most adversarial schedule
CUDA allows, so a missing event wait (a pinned buffer overwritten while its upload is pending, an
input overwritten while an execution still reads it) gives wrong numbers here. ``FakeTensorRT``'s
engine runs the tiny model's ONNX graph on the bytes at the addresses TensorRT was given, and the
results are compared with the model's numpy reference.

What this cannot show: real overlap, real TensorRT and CUDA behaviour. The test marked ``gpu`` at
the end builds a real engine where TensorRT and a GPU exist (run by benchmarks/gpu_check.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.gpu_fakes import FakeCudaRuntime
from helpers.tensorrt_fake import FakeTensorRT, fake_plan
from helpers.tiny_models import reference_scores, tiny_model_proto
from onnx import TensorProto

from nima_rt.contract.spec import ContractError, EngineInfo, ModelMetadata, engine_sidecar_json
from nima_rt.io.model_file import load_model_file
from nima_rt.runtime.backends import BackendOptions, BackendUnavailable, choose_backend, cuda_driver, tensorrt_engine

SIZE = 16
VERSION = "10.16.1.11"
H200 = cuda_driver.GpuInfo(name="NVIDIA H200", compute_capability="9.0", driver_version="12.8", device_count=1)


def write_engine(folder: Path, profile: tuple[int, int, int], input_dtype: int = TensorProto.UINT8) -> Path:
    """A fake engine of the tiny model (its ONNX graph inside, tests/helpers/gpu_fakes.py) and its sidecar."""
    proto = tiny_model_proto(name="tiny", size=SIZE)
    proto.graph.input[0].type.tensor_type.elem_type = input_dtype
    engine = folder / "tiny.engine"
    engine.write_bytes(fake_plan(proto.SerializeToString(), "images", SIZE, profile))
    info = EngineInfo(VERSION, H200.name, H200.compute_capability, "fp16", *profile, "0" * 64)
    sidecar = engine_sidecar_json(ModelMetadata(name="tiny", kind="technical", input_size=SIZE), info)
    (folder / "tiny.engine.json").write_text(sidecar, encoding="utf-8")
    return engine


def open_backend(folder: Path, profile: tuple[int, int, int], **kwargs) -> tuple[object, FakeTensorRT]:
    cuda = FakeCudaRuntime()
    trt = FakeTensorRT(cuda, VERSION)
    backend = tensorrt_engine.TensorRTBackend(load_model_file(write_engine(folder, profile, **kwargs)), trt, cuda)
    return backend, trt


def images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)


def assert_matches_reference(output, batch: np.ndarray) -> None:
    dist, mean, std = reference_scores(batch)
    np.testing.assert_allclose(output.dist, dist, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(output.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(output.std, std, rtol=1e-5)


def test_batches_split_to_the_profile_and_rows_land_in_order(tmp_path: Path) -> None:
    backend, trt = open_backend(tmp_path, (1, 4, 16))
    batch = images(11)
    assert_matches_reference(backend.run(batch), batch)
    assert trt.executed == [4, 4, 3]
    batch = images(16, seed=1)  # again, reusing both slots: stale buffers would show
    assert_matches_reference(backend.run(batch), batch)
    assert trt.executed[3:] == [4, 4, 4, 4]
    backend.close()


def test_next_chunk_uploads_before_the_host_waits_for_this_one(tmp_path: Path) -> None:
    backend, trt = open_backend(tmp_path, (1, 4, 16))
    backend.run(images(12))
    calls = backend._cuda.rt.calls
    uploads = [i for i, c in enumerate(calls) if c[0] == "copy" and c[1] == "H2D"]
    downloaded = {slot.downloaded for slot in backend.slots}
    first_wait = next(i for i, c in enumerate(calls) if c[0] == "sync" and c[1] in downloaded)
    assert len(uploads) == 3
    assert uploads[1] < first_wait  # chunk 2 was queued before the host blocked on chunk 1's results
    copy_stream = backend.copy_stream
    assert {calls[i][2] for i in uploads} == {copy_stream} and copy_stream != backend.compute_stream
    backend.close()


def test_small_batch_is_padded_to_the_profile_minimum(tmp_path: Path) -> None:
    backend, trt = open_backend(tmp_path, (4, 8, 8))
    batch = images(3)
    output = backend.run(batch)
    assert_matches_reference(output, batch)
    assert trt.executed == [4] and output.dist.shape == (3, 10)
    backend.close()


def test_close_frees_every_buffer_event_and_stream(tmp_path: Path) -> None:
    backend, _ = open_backend(tmp_path, (1, 4, 16))
    cuda = backend._cuda.rt
    backend.run(images(5))
    assert len(cuda.memory) == 2 * 8  # per slot: pinned + device input, 3 pinned + 3 device outputs
    backend.close()
    assert cuda.memory == {} and cuda.events == {} and cuda.streams == {}
    backend.close()  # twice is harmless


def test_engine_not_following_the_contract_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="must be one uint8 tensor 'images', found images:DataType.FLOAT"):
        open_backend(tmp_path, (1, 4, 16), input_dtype=TensorProto.FLOAT)


def test_wrong_input_shape_is_refused_before_any_copy(tmp_path: Path) -> None:
    backend, _ = open_backend(tmp_path, (1, 4, 16))
    with pytest.raises(ContractError, match=r"expected uint8 images \[N, 16, 16, 3\], got uint8 \[2, 9, 9, 3\]"):
        backend.run(np.zeros((2, 9, 9, 3), np.uint8))
    backend.close()


def test_auto_choice_opens_the_engine_when_everything_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = FakeCudaRuntime()
    trt = FakeTensorRT(cuda, VERSION)
    monkeypatch.setattr(cuda_driver, "probe_gpu", lambda: H200)
    monkeypatch.setattr(tensorrt_engine, "import_cudart", lambda: cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    choice = choose_backend(load_model_file(write_engine(tmp_path, (1, 8, 32))), options=BackendOptions())
    assert choice.summary == "backend: tensorrt"
    batch = images(20)
    assert_matches_reference(choice.backend.run(batch), batch)
    assert trt.executed == [8, 8, 4]
    choice.backend.close()


@pytest.mark.parametrize("version", ["12.0.0.1", "9.3.0.1"])
def test_tensorrt_of_a_major_the_code_was_not_written_for_is_refused(version: str, monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT(FakeCudaRuntime(), version))
    monkeypatch.setattr(cuda_driver, "probe_gpu", lambda: H200)
    reason = (f"TensorRT {version} is not supported (nima-rt is written for TensorRT 10.x and 11.x): "
              "pip install 'nima-rt[gpu]'")
    with pytest.raises(BackendUnavailable) as caught:
        tensorrt_engine.import_tensorrt()
    assert str(caught.value) == reason
    assert tensorrt_engine.availability(load_model_file(write_engine(tmp_path, (1, 8, 32)))) == reason


# -- on a real GPU --------------------------------------------------------------------------------


@pytest.mark.gpu
def test_real_engine_matches_onnxruntime_cpu(tmp_path: Path) -> None:
    reason = tensorrt_engine.runtime_unavailable()
    if reason:
        pytest.skip(f"needs an NVIDIA GPU and TensorRT: {reason}")
    from helpers.gpu_helpers import build_engine
    from helpers.tiny_models import write_tiny_model

    onnx_path = write_tiny_model(tmp_path / "tiny.onnx", name="tiny", size=32)
    engine = build_engine(onnx_path, tmp_path / "tiny.engine", "fp32", (1, 8, 64))
    backend = choose_backend(load_model_file(engine), "cuda").backend
    cpu = choose_backend(load_model_file(onnx_path), "cpu").backend
    batch = np.random.default_rng(3).integers(0, 256, (70, 32, 32, 3), dtype=np.uint8)
    got, want = backend.run(batch), cpu.run(batch)
    np.testing.assert_allclose(got.mean, want.mean, atol=1e-4)
    np.testing.assert_allclose(got.dist, want.dist, atol=1e-5)
    backend.close()
    cpu.close()
