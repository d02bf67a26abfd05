"""The training stages: their epoch ranges, what each one trains, and its optimizer and schedule."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from nima_rt.train.fit.config import ConfigError, StageConfig, TrainConfig, frozen_blocks
from nima_rt.train.model.network import NimaNetwork


@dataclass
class StagePlan:
    name: str  # "head" or "full"
    config: StageConfig
    first_epoch: int
    last_epoch: int


def stage_plan(config: TrainConfig) -> list[StagePlan]:
    plans, epoch = [], 0
    for name, stage in (("head", config.head), ("full", config.full)):
        if stage.epochs:
            plans.append(StagePlan(name, stage, epoch + 1, epoch + stage.epochs))
            epoch += stage.epochs
    return plans


def apply_freeze(network: NimaNetwork, frozen: str) -> list[nn.Module]:
    """Set ``requires_grad`` for a stage; return the modules to keep in eval mode (frozen BN)."""
    network.requires_grad_(True)
    count = frozen_blocks(frozen)
    if count is None:
        return []
    if count == -1:
        modules: list[nn.Module] = [network.backbone]
    else:
        blocks = getattr(network.backbone, "blocks", None)
        if blocks is None:
            raise ConfigError(f"frozen 'blocks:N' needs a backbone with .blocks ({network.config.backbone} has none)")
        modules = []
        for name, child in network.backbone.named_children():
            if name == "blocks":
                break
            modules.append(child)
        modules.extend(list(blocks)[:count])
    for module in modules:
        module.requires_grad_(False)
    return modules


def set_train_mode(network: nn.Module, frozen_modules: list[nn.Module]) -> None:
    network.train()
    for module in frozen_modules:
        module.eval()


def make_optimizer(stage: StageConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ConfigError("the stage has no trainable parameters")
    if stage.optimizer == "adam":
        return torch.optim.Adam(params, lr=stage.lr, weight_decay=stage.weight_decay)
    if stage.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)
    return torch.optim.SGD(params, lr=stage.lr, momentum=stage.momentum, weight_decay=stage.weight_decay)


class InverseTimeDecay:
    """Keras' ``decay``: factor ``1 / (1 + decay * step)`` (a picklable LambdaLR function)."""

    def __init__(self, decay: float) -> None:
        self.decay = decay

    def __call__(self, step: int) -> float:
        return 1.0 / (1.0 + self.decay * step)
