"""Wrap a trained network in the model contract: uint8 NHWC in; dist, mean, std out.

Export traces this module, so the normalisation a backbone was trained with travels inside the
ONNX graph and the runtime never repeats (or gets wrong) it. Training evaluation can call it too.
"""

from __future__ import annotations

import torch
from torch import nn

from nima_rt.contract.spec import NUM_BINS, Normalization


class ContractModule(nn.Module):
    """``images`` uint8 [N, S, S, 3] RGB -> (``dist`` [N, 10], ``mean`` [N], ``std`` [N]).

    ``network`` takes normalised float NCHW input and returns the 10-bin distribution (softmax).
    """

    def __init__(self, network: nn.Module, normalization: Normalization = Normalization()) -> None:
        super().__init__()
        self.network = network
        mean = torch.tensor(normalization.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(normalization.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)
        self.register_buffer("scores", torch.arange(1, NUM_BINS + 1, dtype=torch.float32), persistent=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).to(self.pixel_mean.dtype)
        x = (x - self.pixel_mean) / self.pixel_std
        dist = self.network(x).float()
        mean = dist @ self.scores
        var = dist @ (self.scores * self.scores) - mean * mean
        std = torch.sqrt(torch.clamp(var, min=0.0))
        return dist, mean, std
