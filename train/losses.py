"""The Earth Mover's Distance loss of the NIMA paper (Talebi & Milanfar 2017, eq. 1)."""

from __future__ import annotations

import torch


def emd_per_sample(pred: torch.Tensor, target: torch.Tensor, r: int = 2) -> torch.Tensor:
    """``(mean_k |CDF_pred(k) - CDF_target(k)|^r)^(1/r)`` for each row of ``[N, 10]`` distributions."""
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(f"pred and target must both be [N, bins], got {list(pred.shape)} and {list(target.shape)}")
    diff = torch.cumsum(pred, dim=1) - torch.cumsum(target, dim=1)
    # A tiny floor keeps the gradient of the root finite when a prediction is exact.
    return (diff.abs().pow(r).mean(dim=1) + 1e-12).pow(1.0 / r)


def emd_loss(pred: torch.Tensor, target: torch.Tensor, r: int = 2) -> torch.Tensor:
    """Batch mean of :func:`emd_per_sample` (r = 2 as in the paper and the seed)."""
    return emd_per_sample(pred, target, r).mean()
