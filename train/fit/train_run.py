"""A training run: start one from a config (or resume one from its folder), then fit it with the Trainer.

The entry point of ``nima-rt train`` and of the Python API (:func:`train`); the epochs themselves are
:class:`nima_rt.train.fit.trainer.Trainer`'s.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nima_rt.train.data.label_sets import LabelSet, load_label_set, split_by_group
from nima_rt.train.data.labels import parse_scale
from nima_rt.train.fit.config import ConfigError, TrainConfig
from nima_rt.train.fit.devices import resolve_device
from nima_rt.train.fit.runs import create_run, open_run
from nima_rt.train.fit.trainer import Trainer
from nima_rt.train.model.checkpoint import read_checkpoint_dict
from nima_rt.train.model.pretrained import build_network, load_pretrained


@dataclass
class TrainResult:
    run_dir: Path
    best: Path
    last: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_emd: float = math.inf


def load_data(config: TrainConfig, log: Any) -> tuple[LabelSet, LabelSet]:
    data = config.data
    scale = parse_scale(data.scale) if data.scale else None
    train = load_label_set(data.labels, data.images, data.format, scale)
    log(train.summary())
    if data.val_labels:
        val = load_label_set(data.val_labels, data.val_images or data.images, data.format, scale)
        log(val.summary())
    else:
        train, val = split_by_group(train, data.val_fraction, config.seed)
        log(f"validation: {len(val)} images split off by group ({data.val_fraction:.0%} of groups, "
            f"seed {config.seed}); training: {len(train)}")
    return train, val


def train(config: TrainConfig | None, resume: str | os.PathLike[str] | None = None, echo: bool = True,
          progress: bool | None = None, stop_after: int | None = None) -> TrainResult:
    """Train ``config`` into a new run folder, or continue the run ``resume`` (with its own config).

    ``stop_after``: end after this (global) epoch, leaving a resumable ``last.pt`` (time-boxed runs).
    """
    if resume is not None:
        run, config = open_run(resume, echo)
        try:
            state: dict[str, Any] | None = read_checkpoint_dict(run.last)
            missing = [k for k in ("epoch", "optimizer", "scheduler", "scaler", "rng_torch") if k not in state]
            if missing:
                raise ConfigError(f"{run.last}: cannot resume, training state missing ({', '.join(missing)})")
            run.truncate_metrics(int(state["epoch"]))
            run.log(f"resuming {run.path} after epoch {state['epoch']}")
            train_set, val_set = load_data(config, run.log)
            device = resolve_device(config.device)
        except Exception:
            run.close()
            raise
        network = build_network(config.model, pretrained=None)
        network.load_state_dict(state["network"], strict=True)
    else:
        if config is None:
            raise ConfigError("train() needs a config or a run to resume")
        config.validate()
        state = None
        # Everything that can fail on bad input happens before the run folder exists.
        device = resolve_device(config.device)
        messages: list[str] = []
        train_set, val_set = load_data(config, messages.append)
        torch.manual_seed(config.seed)
        network, parent = load_pretrained(config.model, config.pretrained)
        config.parent = parent.to_dict() if parent is not None else {}
        run = create_run(config, echo)
        run.log(f"run folder {run.path}")
        for message in messages:
            run.log(message)
        run.log(f"model {config.model.backbone} ({config.model.head} head, {network.feature_dim} features), "
                f"weights {config.pretrained}, device {device}")
        if parent is not None:
            run.log(f"fine-tuning {parent.name} ({parent.description}); its preprocessing is kept: "
                    f"{parent.resize['policy']} {parent.resize['interpolation']} to {parent.input_size}")
    previous_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        trainer = Trainer(config, run, device, progress)
        trainer.stop_after = stop_after
        if state is not None:
            trainer.history = run.read_metrics()
        trainer.fit(network, train_set, val_set, state)
        run.log(f"done: best val emd {trainer.best_val_emd:.4f} in {run.best}")
        return TrainResult(run.path, run.best, run.last, trainer.history, trainer.best_val_emd)
    finally:
        torch.set_num_threads(previous_threads)
        run.close()
