"""Small models for the export tests (CPU and GPU): a tiny checkpoint and a brightness network."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from nima_rt.contract.spec import ModelMetadata
from nima_rt.export.onnx_export import finish_model, save_model, trace_to_onnx
from nima_rt.train.model.checkpoint import save_checkpoint
from nima_rt.train.model.contract_module import ContractModule
from nima_rt.train.model.network import ModelConfig
from nima_rt.train.model.pretrained import build_network

TINY_SIZE = 64


def tiny_checkpoint(path: Path) -> Path:
    """Random-init ``mobilenetv3_small_050`` at 64 px, head scaled so scores spread over ~1 point."""
    torch.manual_seed(0)
    config = ModelConfig(backbone="mobilenetv3_small_050", image_size=TINY_SIZE, dropout=0.0)
    network = build_network(config, None)
    with torch.no_grad():
        network.head.linear.weight.mul_(1000.0)  # random features barely move the scores otherwise
    metadata = ModelMetadata(name="tiny-export", kind="technical", trained_on="nothing (test checkpoint)",
                             metrics={"srcc": 0.5})
    return save_checkpoint(path, network, config, metadata, epoch=3)


class Brightness(nn.Module):
    """Two convolutions, average, linear, softmax: brighter (and redder) images score higher.

    ``outlier`` adds a constant channel of that size between the convolutions; the scores ignore
    it, but INT8's one per-tensor scale for the second convolution's input must span it, which
    leaves the brightness channels a few quantisation steps (the classic activation-outlier failure).
    """

    def __init__(self, outlier: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 5, 3, stride=2)
        self.conv2 = nn.Conv2d(5, 4, 1)
        self.linear = nn.Linear(4, 10)
        signs = torch.tensor([1.0, 0.5, -0.5, -1.0])
        with torch.no_grad():
            self.conv1.weight.zero_()
            self.conv1.weight[:4] = signs.view(4, 1, 1, 1).expand(4, 3, 3, 3) / 27
            self.conv1.weight[:4, 0] *= 2
            self.conv1.bias.copy_(torch.tensor([0.5, 0.5, 0.5, 0.5, outlier]))
            self.conv2.weight.copy_(torch.eye(5)[:4].view(4, 5, 1, 1))
            self.conv2.bias.zero_()
            self.linear.weight.copy_(torch.linspace(-2, 2, 10)[:, None] * signs[None])
            self.linear.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv2(torch.relu(self.conv1(x))).mean(dim=(2, 3))
        return torch.softmax(self.linear(features), dim=1)


def brightness_onnx_file(path: Path, outlier: float) -> Path:
    module = ContractModule(Brightness(outlier)).eval()
    metadata = ModelMetadata(name="brightness", kind="technical", input_size=32, backbone="conv-brightness")
    model, _ = finish_model(trace_to_onnx(module, 32), metadata, str(path))
    save_model(model, path)
    return path


