"""The TensorRT export flow on CPU, against a fake of the TensorRT 10 builder API.

What the fake shows: the builder is configured as documented (profile, precision flags, TF32 off
for fp32, calibration profile and calibrator, timing cache in and out), the calibrator feeds every
full batch and keeps its cache, the provisional engine + sidecar are loaded through the runtime's
model-file reader and checked against the float32 ONNX, then renamed, or deleted when INT8 misses
the bar. The "engine" computes the float32 ONNX's scores (optionally with a scramble), so parity and
refusal are real measurements of what the backend returned.

What it cannot show: that real TensorRT builds and runs these graphs; tests/export/test_export_tensorrt.py
does that on a GPU.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from helpers.export_models import brightness_onnx_file  # noqa: E402

from nima_rt.export import tensorrt_build  # noqa: E402
from nima_rt.export.api import ExportRequest, run_export  # noqa: E402
from nima_rt.export.tensorrt_build import TensorRTSettings  # noqa: E402
from nima_rt.export.verify import VerificationFailed  # noqa: E402
from nima_rt.io.files import file_sha256  # noqa: E402
from nima_rt.runtime.backends import cuda_driver, tensorrt_engine  # noqa: E402
from nima_rt.runtime.backends.base import BackendOutput  # noqa: E402

H200 = cuda_driver.GpuInfo(name="NVIDIA H200", compute_capability="9.0", driver_version="12.8", device_count=1)
PLAN = b"fake serialized engine"


class FakeCudart:
    """cuda-python's cudaMalloc / cudaMemcpy / cudaFree on host memory."""

    class cudaMemcpyKind:  # noqa: N801 - mirrors cuda-python
        cudaMemcpyHostToDevice = "H2D"

    def __init__(self) -> None:
        self.memory: dict[int, ctypes.Array] = {}
        self.freed: list[int] = []

    def cudaMalloc(self, nbytes: int):  # noqa: N802
        buffer = ctypes.create_string_buffer(nbytes)
        self.memory[ctypes.addressof(buffer)] = buffer
        return 0, ctypes.addressof(buffer)

    def cudaMemcpy(self, dst: int, src: int, nbytes: int, kind: str):  # noqa: N802
        assert kind == "H2D" and dst in self.memory and len(self.memory[dst]) >= nbytes
        ctypes.memmove(dst, src, nbytes)
        return (0,)

    def cudaFree(self, pointer: int):  # noqa: N802
        self.freed.append(pointer)
        del self.memory[pointer]
        return (0,)


class FakeTensorRT(types.ModuleType):
    """The builder half of the TensorRT 10 Python API, recording what export asks of it."""

    __version__ = "10.3.0"

    def __init__(self, cudart: FakeCudart) -> None:
        super().__init__("tensorrt")
        self.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
        self.cudart = cudart
        self.flags: set[str] = {"TF32"}  # TensorRT's default
        self.profiles: list[dict] = []
        self.calibration_profile: dict | None = None
        self.calibrated: list[np.ndarray] = []
        self.timing_in: bytes | None = None
        self.calibrator = None
        fake = self

        class Severity:
            INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        class ILogger:
            def __init__(self) -> None:
                pass

        ILogger.Severity = Severity

        class IInt8EntropyCalibrator2:
            def __init__(self) -> None:
                pass

        class BuilderFlag:
            FP16, INT8, TF32 = "FP16", "INT8", "TF32"

        class MemoryPoolType:
            WORKSPACE = "WORKSPACE"

        class Profile(dict):
            def set_shape(self, name, low, opt, high):
                self[name] = (tuple(low), tuple(opt), tuple(high))

        class TimingCache:
            def __init__(self, data: bytes) -> None:
                self.data = data

            def serialize(self) -> bytes:
                return self.data + b"+timings"

        class Config:
            def set_memory_pool_limit(self, pool, size):
                fake.workspace = size

            def add_optimization_profile(self, profile):
                fake.profiles.append(dict(profile))

            def set_flag(self, flag):
                fake.flags.add(flag)

            def clear_flag(self, flag):
                fake.flags.discard(flag)

            def set_calibration_profile(self, profile):
                fake.calibration_profile = dict(profile)

            @property
            def int8_calibrator(self):
                return fake.calibrator

            @int8_calibrator.setter
            def int8_calibrator(self, calibrator):
                fake.calibrator = calibrator

            def create_timing_cache(self, data: bytes):
                fake.timing_in = bytes(data)
                return TimingCache(bytes(data))

            def set_timing_cache(self, cache, ignore_mismatch):
                self.timing = cache
                return True

            def get_timing_cache(self):
                return self.timing

        class Input:
            name = "images"

        class Network:
            num_inputs = 1

            def get_input(self, index):
                return Input()

        class Builder:
            def __init__(self, logger) -> None:
                self.logger = logger

            def create_network(self, flags):
                assert flags == 0
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                calibrator = fake.calibrator
                if calibrator is not None and calibrator.read_calibration_cache() is None:
                    shape = fake.calibration_profile["images"][1]
                    while (pointers := calibrator.get_batch(["images"])) is not None:
                        nbytes = int(np.prod(shape))
                        raw = ctypes.string_at(pointers[0], nbytes)
                        fake.calibrated.append(np.frombuffer(raw, np.uint8).reshape(shape))
                    calibrator.write_calibration_cache(b"calibration table")
                return PLAN

        class OnnxParser:
            def __init__(self, network, logger) -> None:
                pass

            def parse_from_file(self, path: str) -> bool:
                fake.parsed = path
                return True

        self.ILogger, self.IInt8EntropyCalibrator2 = ILogger, IInt8EntropyCalibrator2
        self.BuilderFlag, self.MemoryPoolType = BuilderFlag, MemoryPoolType
        self.Builder, self.OnnxParser = Builder, OnnxParser


class FakeEngineBackend:
    """Stands in for the runtime's TensorRT backend: the float32 ONNX's scores, optionally scrambled."""

    name = "tensorrt"

    def __init__(self, model, onnx_path: Path, scramble: bool) -> None:
        from nima_rt.export.verify import onnx_scores

        self.model = model
        self.run_onnx, self._close = onnx_scores(onnx_path)
        self.scramble = scramble

    def run(self, images: np.ndarray) -> BackendOutput:
        dist, mean, std = self.run_onnx(images)
        if self.scramble:  # scores unrelated to the image: what a broken INT8 engine looks like
            order = np.random.default_rng(len(images)).permutation(len(images))
            dist, mean, std = dist[order], mean[order], std[order]
        return BackendOutput(dist, mean, std)

    def close(self) -> None:
        self._close()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    cudart = FakeCudart()
    trt = FakeTensorRT(cudart)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(tensorrt_build, "tensorrt_installed", lambda: True)
    monkeypatch.setattr(cuda_driver, "probe_gpu", lambda: H200)
    monkeypatch.setattr(tensorrt_engine, "import_cudart", lambda: cudart)
    trt.opened: list[Path] = []
    trt.scramble = False

    def create(model, options):
        trt.opened.append(model.path)
        assert model.engine.gpu_name == "NVIDIA H200" and model.path.read_bytes() == PLAN
        return FakeEngineBackend(model, Path(trt.parsed), trt.scramble)

    monkeypatch.setattr(tensorrt_engine, "create", create)
    return trt


def test_fp16_engine_is_checked_then_written_with_its_sidecar(fake, tmp_path: Path) -> None:
    source = brightness_onnx_file(tmp_path / "brightness.onnx", outlier=0.0)
    engine, timing = tmp_path / "brightness.engine", tmp_path / "timing.cache"
    timing.write_bytes(b"earlier")
    lines: list[str] = []
    settings = TensorRTSettings(min_batch=1, opt_batch=8, max_batch=32, timing_cache=timing, workspace_gib=0.5)
    result = run_export(ExportRequest(source, engine, format="tensorrt", precision="fp16", verify_count=12,
                                      tensorrt=settings), lines.append)
    assert fake.parsed == str(source)
    assert fake.profiles == [{"images": ((1, 32, 32, 3), (8, 32, 32, 3), (32, 32, 32, 3))}]
    assert fake.flags == {"TF32", "FP16"} and fake.calibrator is None and fake.workspace == 1 << 29
    assert fake.timing_in == b"earlier" and timing.read_bytes() == b"earlier+timings"
    assert fake.opened == [tmp_path / "brightness.unverified.engine"]
    assert engine.read_bytes() == PLAN
    sidecar = json.loads((tmp_path / "brightness.engine.json").read_text(encoding="utf-8"))
    info = sidecar["engine"]
    assert {k: info[k] for k in ("tensorrt_version", "gpu_name", "compute_capability", "precision", "min_batch",
                                 "opt_batch", "max_batch", "source_onnx_sha256")} == {
        "tensorrt_version": "10.3.0", "gpu_name": "NVIDIA H200", "compute_capability": "9.0", "precision": "fp16",
        "min_batch": 1, "opt_batch": 8, "max_batch": 32, "source_onnx_sha256": file_sha256(source)}
    assert sidecar["nima_rt"]["name"] == "brightness"
    assert result.drift.max_abs_mean == 0.0 and result.drift.count == 12
    assert lines[0] == "building fp16 engine for NVIDIA H200 (sm 9.0), TensorRT 10.3.0, batch 1/8/32"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["brightness.engine", "brightness.engine.json",
                                                         "brightness.onnx", "timing.cache"]


def test_fp32_engine_turns_tf32_off(fake, tmp_path: Path) -> None:
    source = brightness_onnx_file(tmp_path / "brightness.onnx", outlier=0.0)
    settings = TensorRTSettings(opt_batch=4, max_batch=8, timing_cache=tmp_path / "t.cache")
    run_export(ExportRequest(source, tmp_path / "m.engine", format="tensorrt", verify_count=4, tensorrt=settings))
    assert fake.flags == set()


def test_int8_calibrates_on_full_batches_keeps_the_cache_and_reuses_it(fake, tmp_path: Path) -> None:
    source = brightness_onnx_file(tmp_path / "brightness.onnx", outlier=0.0)
    engine = tmp_path / "brightness.int8.engine"
    settings = TensorRTSettings(opt_batch=8, max_batch=32, timing_cache=tmp_path / "t.cache")
    request = ExportRequest(source, engine, format="tensorrt", precision="int8", verify_count=50,
                            calibration_count=20, tensorrt=settings)
    lines: list[str] = []
    run_export(request, lines.append)
    assert fake.flags == {"TF32", "FP16", "INT8"}
    assert fake.calibration_profile == {"images": ((8, 32, 32, 3),) * 3}
    assert len(fake.calibrated) == 2  # 20 images -> two full batches of 8
    assert all(batch.std() > 0 for batch in fake.calibrated)  # real decoded pixels reached the "device"
    assert len(fake.cudart.freed) == 1 and not fake.cudart.memory
    cache = tmp_path / f"brightness.int8.int8-calibration-{file_sha256(source)[:12]}.cache"
    assert cache.read_bytes() == b"calibration table"
    assert "INT8: calibrating on 16 images, batch 8" in lines
    assert f"INT8: wrote calibration cache {cache}" in lines
    fake.calibrated.clear()
    lines.clear()
    run_export(request, lines.append)
    assert fake.calibrated == []
    assert f"INT8: reusing calibration cache {cache} (delete it to recalibrate)" in lines


def test_int8_engine_below_the_bar_is_deleted_unless_forced(fake, tmp_path: Path) -> None:
    source = brightness_onnx_file(tmp_path / "brightness.onnx", outlier=0.0)
    engine = tmp_path / "brightness.int8.engine"
    fake.scramble = True
    settings = TensorRTSettings(opt_batch=8, max_batch=32, timing_cache=tmp_path / "t.cache")
    request = ExportRequest(source, engine, format="tensorrt", precision="int8", verify_count=50,
                            calibration_count=16, tensorrt=settings)
    with pytest.raises(VerificationFailed, match=r"brightness\.int8\.engine: INT8 Spearman -?0\.\d{4} against float32 "
                                                 r"on 50 held-out images is below 0\.99"):
        run_export(request)
    assert not engine.exists() and not list(tmp_path.glob("*.engine*"))
    request.force = True
    result = run_export(request)
    assert engine.read_bytes() == PLAN and (tmp_path / "brightness.int8.engine.json").is_file()
    assert result.warnings[0].endswith("; written anyway (--force)")
    assert not list(tmp_path.glob("*.unverified.*"))
