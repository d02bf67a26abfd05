"""ONNX Runtime's GPU backends trust the providers a session actually got, not the ones asked for.

The real ``onnxruntime-gpu`` build lists ``TensorrtExecutionProvider`` and ``CUDAExecutionProvider`` as
available even on a machine where their libraries are missing, then creates the session on the CPU with
only a warning (``session.get_providers() == ['CPUExecutionProvider']``). Installing that 256 MB wheel in
CI is not reasonable, so the sessions here are fakes that report what the real build reports
(tests/helpers/gpu_fakes.py: ``FakeOnnxRuntimeGpu``, running the model on the CPU); docs/guide/gpu.md says
what was checked by hand against the real build. A GPU backend whose provider did not start is skipped
with one line and the next backend runs, never a CPU session under a GPU name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from helpers.gpu_fakes import FakeOnnxRuntimeGpu, fake_gpu_info
from helpers.tiny_models import reference_scores

from nima_rt.io.model_file import load_model_file
from nima_rt.runtime.backends import (
    BackendOptions,
    BackendUnavailable,
    choose_backend,
    cuda_driver,
    onnxruntime_backend,
    onnxruntime_gpu,
)

TRT, CUDA = "TensorrtExecutionProvider", "CUDAExecutionProvider"
HINT = "check that the CUDA, cuDNN and TensorRT libraries it needs are installed"
NOT_ENGINE = "tensorrt (needs a TensorRT .engine file, not an onnx model)"
NO_CHECKPOINT = "torch-cuda (needs the training checkpoint tiny.pt beside tiny.onnx, see docs/guide/gpu.md)"


def gpu_build(monkeypatch: pytest.MonkeyPatch, drops: set[str]) -> FakeOnnxRuntimeGpu:
    fake = FakeOnnxRuntimeGpu(onnxruntime, frozenset(drops))
    monkeypatch.setattr(cuda_driver, "probe_gpu", fake_gpu_info)
    monkeypatch.setattr(onnxruntime_backend, "ort", fake)
    monkeypatch.setattr(onnxruntime_gpu, "ort", fake)
    return fake


def test_gpu_build_running_on_the_cpu_is_skipped_with_one_line_per_backend(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu_build(monkeypatch, {TRT, CUDA})
    model = load_model_file(tiny_model)
    choice = choose_backend(model, options=BackendOptions(cache_dir=str(tmp_path)))
    assert choice.backend.name == "onnxruntime-cpu"
    assert choice.summary == (
        f"backend: onnxruntime-cpu; skipped {NOT_ENGINE}; "
        f"onnxruntime-tensorrt (onnxruntime did not start {TRT} (session runs on CPUExecutionProvider); {HINT}); "
        f"onnxruntime-cuda (onnxruntime did not start {CUDA} (session runs on CPUExecutionProvider); {HINT}); "
        f"{NO_CHECKPOINT}"
    )
    choice.backend.close()
    with pytest.raises(BackendUnavailable) as caught:
        choose_backend(model, "cuda", options=BackendOptions(cache_dir=str(tmp_path)))
    assert str(caught.value).startswith("no usable cuda backend for tiny.onnx: tensorrt: needs a TensorRT .engine")
    assert "\n" not in str(caught.value)


def test_tensorrt_provider_dropped_but_cuda_started_runs_onnxruntime_cuda(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu_build(monkeypatch, {TRT})
    choice = choose_backend(load_model_file(tiny_model), options=BackendOptions(cache_dir=str(tmp_path)))
    assert choice.backend.name == "onnxruntime-cuda"
    assert choice.backend.providers == [CUDA, "CPUExecutionProvider"]
    assert choice.summary == (
        f"backend: onnxruntime-cuda; skipped {NOT_ENGINE}; onnxruntime-tensorrt (onnxruntime did not start {TRT} "
        f"(session runs on {CUDA}, CPUExecutionProvider); {HINT})"
    )
    batch = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(choice.backend.run(batch).mean, reference_scores(batch)[1], rtol=1e-5)
    choice.backend.close()


def test_working_gpu_build_opens_onnxruntime_tensorrt_with_both_providers(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = gpu_build(monkeypatch, set())
    choice = choose_backend(load_model_file(tiny_model), options=BackendOptions(cache_dir=str(tmp_path)))
    assert choice.backend.name == "onnxruntime-tensorrt" and choice.backend.precision == "fp32"
    assert choice.backend.providers == [TRT, CUDA, "CPUExecutionProvider"]
    (session,) = fake.sessions
    assert [name for name, _ in session.asked] == [TRT, CUDA]
    assert session.asked[1][1] == onnxruntime_gpu.cuda_provider_options()
    choice.backend.close()
