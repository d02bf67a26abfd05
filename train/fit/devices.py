"""Where training runs: the torch device and the number of data-loading workers."""

from __future__ import annotations

import os

import torch

from nima_rt.train.fit.config import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here")
    return device


def resolve_workers(requested: int, device: torch.device) -> int:
    if requested >= 0:
        return requested
    cpus = os.cpu_count() or 1
    if device.type == "cuda":
        return min(8, cpus)
    return 0 if cpus <= 2 else min(4, cpus // 2)
