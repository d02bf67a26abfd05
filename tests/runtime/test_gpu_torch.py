"""The PyTorch CUDA backend: its conversion and batching run on CPU here (``device="cpu"``: no
pinned memory, no CUDA graphs); the test marked ``gpu`` runs the real thing against the CPU backend.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from helpers.tiny_models import BIAS, WEIGHTS, reference_scores

from nima_rt.contract.spec import Normalization
from nima_rt.io.model_file import load_model_file
from nima_rt.runtime.backends import BackendOptions, BackendUnavailable, choose_backend, torch_cuda
from nima_rt.train import load_contract_module

torch = pytest.importorskip("torch")
contract_module = pytest.importorskip("nima_rt.train.model.contract_module")


class ChannelMeanNet(torch.nn.Module):
    """The tiny ONNX model's network in torch: channel means -> linear -> softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 10)
        with torch.no_grad():
            self.linear.weight.copy_(torch.from_numpy(WEIGHTS.T))
            self.linear.bias.copy_(torch.from_numpy(BIAS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(x.mean(dim=(2, 3))), dim=1)


def tiny_contract():
    # mean 0, std 1: the network sees pixels / 255, as the tiny ONNX model does
    return contract_module.ContractModule(ChannelMeanNet(), Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))


def images(count: int, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def test_fp32_on_cpu_equals_the_reference_and_splits_large_batches() -> None:
    backend = torch_cuda.TorchCudaBackend(tiny_contract(), 16, "fp32", max_batch=4, device="cpu")
    batch = images(10)
    out = backend.run(batch)
    dist, mean, std = reference_scores(batch)
    np.testing.assert_allclose(out.dist, dist, atol=1e-6)
    np.testing.assert_allclose(out.mean, mean, atol=1e-5)
    np.testing.assert_allclose(out.std, std, atol=1e-5)
    assert out.dist.dtype == out.mean.dtype == np.float32
    backend.close()


def test_fp16_network_keeps_float32_contract_maths() -> None:
    backend = torch_cuda.TorchCudaBackend(tiny_contract(), 16, "fp16", max_batch=8, device="cpu")
    assert next(backend.module.network.parameters()).dtype == torch.float16
    assert backend.module.pixel_std.dtype == torch.float32
    batch = images(8, seed=1)
    out = backend.run(batch)
    _, mean, _ = reference_scores(batch)
    assert out.mean.dtype == np.float32
    assert np.max(np.abs(out.mean - mean)) < 0.02  # fp16 weights and activations, float32 mean/std
    backend.close()


def test_bad_precision_and_bad_shape_are_refused() -> None:
    with pytest.raises(Exception, match="precision 'int8' is not one of fp16, fp32"):
        torch_cuda.TorchCudaBackend(tiny_contract(), 16, "int8", device="cpu")
    backend = torch_cuda.TorchCudaBackend(tiny_contract(), 16, "fp32", device="cpu", source="m.pt")
    with pytest.raises(Exception, match=r"m.pt: expected uint8 images \[N, 16, 16, 3\], got float32 \[1, 16, 16, 3\]"):
        backend.run(np.zeros((1, 16, 16, 3), np.float32))


@pytest.fixture(scope="module")
def model_pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight MobileNetV2 checkpoint and its ONNX export side by side (32 px)."""
    pytest.importorskip("nima_rt.train.model.checkpoint")
    pytest.importorskip("nima_rt.export.onnx_export")
    from helpers.gpu_helpers import build_model_pair

    return build_model_pair(tmp_path_factory.mktemp("pair"), "mobilenet_v2", 32)


def test_create_loads_the_checkpoint_beside_the_onnx(model_pair: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the GPU is simulated away: availability is granted and the backend opens on the CPU.
    monkeypatch.setattr(torch_cuda, "availability", lambda model: None)
    monkeypatch.setattr(torch_cuda, "TorchCudaBackend",
                        functools.partial(torch_cuda.TorchCudaBackend, device="cpu", graphs=False))
    model = load_model_file(model_pair)
    with pytest.raises(BackendUnavailable, match="^no checkpoint loader given"):
        torch_cuda.create(model, BackendOptions(precision="fp32", max_batch=8))
    backend = torch_cuda.create(model, BackendOptions(precision="fp32", max_batch=8,
                                                      checkpoint_loader=load_contract_module))
    assert backend.source == str(model_pair.with_suffix(".pt"))
    cpu = choose_backend(model, "cpu").backend
    batch = images(12, size=32, seed=2)
    got, want = backend.run(batch), cpu.run(batch)
    np.testing.assert_allclose(got.mean, want.mean, atol=1e-4)
    np.testing.assert_allclose(got.dist, want.dist, atol=1e-5)
    backend.close()
    cpu.close()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs torch with a usable CUDA GPU")
def test_torch_cuda_fp16_graphs_match_the_cpu_backend(model_pair: Path) -> None:
    model = load_model_file(model_pair)
    choice = choose_backend(model, "cuda", "torch-cuda", BackendOptions(max_batch=16))
    cpu = choose_backend(model, "cpu").backend
    for count in (16, 16, 16, 5):  # eager, captured, replayed, then an eager tail
        batch = images(count, size=32, seed=count)
        got, want = choice.backend.run(batch), cpu.run(batch)
        assert np.max(np.abs(got.mean - want.mean)) < 0.02
    assert list(choice.backend._graphs) == [16]
    choice.backend.close()
    cpu.close()
