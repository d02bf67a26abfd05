"""Two-stage NIMA training: the head alone on a frozen backbone, then (some or) all layers.

Epochs are numbered across stages (head epochs 1..H, then full epochs H+1..H+F). After every
epoch the run folder gets a ``metrics.jsonl`` record and ``last.pt`` (weights, optimizer,
scheduler, grad scaler and RNG state); ``best.pt`` is rewritten when the validation EMD improves.
``--resume`` restarts after the last finished epoch and reaches the same weights as an
uninterrupted run: shuffling and augmentation are seeded from (seed, epoch, index), and the global
torch RNG (dropout) is saved and restored.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from nima_rt.contract.spec import ModelMetadata, Preprocess, ResizeSpec
from nima_rt.runtime.metrics import compute_metrics
from nima_rt.train.data.image_data import ImageDataset, collate_samples
from nima_rt.train.data.label_sets import LabelSet
from nima_rt.train.data.sampling import grouped_order, ranking_keys, ranking_weights
from nima_rt.train.evaluation.evaluate import format_metrics
from nima_rt.train.fit.config import StageConfig, TrainConfig
from nima_rt.train.fit.devices import resolve_workers
from nima_rt.train.fit.losses import nima_loss
from nima_rt.train.fit.progress import EpochProgress
from nima_rt.train.fit.runs import Run
from nima_rt.train.fit.stages import InverseTimeDecay, apply_freeze, make_optimizer, set_train_mode, stage_plan
from nima_rt.train.model.checkpoint import save_checkpoint
from nima_rt.train.model.network import NimaNetwork, normalization_for

CACHE_KEY_BASE = 1_000_000  # augmentation keys of cached views, apart from epoch numbers


class Normalize(nn.Module):
    """uint8 NHWC -> normalised float NCHW (the same arithmetic as ContractModule)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float()
        return (x - self.mean) / self.std


# --- the trainer -----------------------------------------------------------------------------------


class Trainer:
    """Runs a :class:`TrainConfig` into a run folder (``train()`` below is the entry point)."""

    def __init__(self, config: TrainConfig, run: Run, device: torch.device, progress: bool | None = None) -> None:
        self.config = config
        self.run = run
        self.device = device
        self.progress = progress
        self.workers = resolve_workers(config.data.workers, device)
        self.amp = bool(config.amp and device.type == "cuda")
        self.normalization = normalization_for(config.model)
        self.normalize = Normalize(self.normalization.mean, self.normalization.std).to(device)
        self.history: list[dict[str, Any]] = []
        self.best_val_emd = math.inf
        self.stop_after: int | None = None

    # data ------------------------------------------------------------------------------------------

    def loader(self, dataset: ImageDataset, shuffle: bool, epoch_seed: int) -> DataLoader:
        generator = torch.Generator()
        generator.manual_seed(epoch_seed)
        drop_last = shuffle and len(dataset) % self.config.batch_size == 1 and len(dataset) > 1
        return DataLoader(dataset, batch_size=self.config.batch_size, shuffle=shuffle, generator=generator,
                          num_workers=self.workers, collate_fn=collate_samples, drop_last=drop_last,
                          pin_memory=self.device.type == "cuda")

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalize(images.to(self.device, non_blocking=True))
        return x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x

    def autocast(self) -> Any:
        return torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.amp)

    # building blocks -------------------------------------------------------------------------------

    def _inference(self, network: NimaNetwork, dataset: ImageDataset,
                   forward: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(indices, forward(images))`` for every batch of decodable images, eval mode, no gradients."""
        network.eval()
        with torch.inference_mode():
            for batch in self.loader(dataset, shuffle=False, epoch_seed=0):
                self.report_failures(batch.failed)
                if batch.indices.numel() == 0:
                    continue
                with self.autocast():
                    yield batch.indices, forward(self.to_input(batch.images)).float().cpu()

    def features(self, network: NimaNetwork, dataset: ImageDataset, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone features (eval mode) of every image -> (``[N, F]`` float32 on CPU, ok mask)."""
        dataset.set_augmentation_key(key)
        out = torch.zeros((len(dataset), network.feature_dim), dtype=torch.float32)
        ok = torch.zeros(len(dataset), dtype=torch.bool)
        for indices, feats in self._inference(network, dataset, network.features):
            out[indices] = feats
            ok[indices] = True
        return out, ok

    def report_failures(self, failed: list[str]) -> None:
        for reason in failed:
            if reason not in self.failures:
                self.failures.add(reason)
                self.run.log(f"skipped unreadable image: {reason}")

    def predict(self, network: NimaNetwork, dataset: ImageDataset) -> tuple[np.ndarray, list[int]]:
        """Distributions for every decodable image of an (eval) dataset."""
        preds: list[np.ndarray] = []
        kept: list[int] = []
        for indices, dist in self._inference(network, dataset, network):
            preds.append(dist.numpy())
            kept.extend(int(i) for i in indices)
        return (np.concatenate(preds) if preds else np.zeros((0, 10), np.float32)), kept

    def step(self, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any, dist: torch.Tensor,
             target: torch.Tensor, preds: list[np.ndarray], trues: list[np.ndarray],
             stage: StageConfig | None = None, groups: torch.Tensor | None = None,
             branches: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> float:
        """One optimisation step on the loss of ``dist`` against ``target``; records both; returns the loss.

        The loss is the EMD, plus the stage's within-group ranking term when ``rank_weight`` > 0.
        """
        rank_weight = stage.rank_weight if stage is not None else 0.0
        margin = stage.rank_margin if stage is not None else 0.0
        cross_weight = stage.cross_weight if stage is not None else 0.0
        cross_gap = stage.cross_gap if stage is not None else 0.0
        loss = nima_loss(dist.float(), target, groups, rank_weight, margin, branches, cross_weight, cross_gap,
                         weights)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        preds.append(dist.detach().float().cpu().numpy())
        trues.append(target.cpu().numpy())
        return float(loss.detach())

    # epochs ----------------------------------------------------------------------------------------

    def train_epoch_images(self, network: NimaNetwork, dataset: ImageDataset, targets: torch.Tensor,
                           frozen: list[nn.Module], head_only: bool, epoch: int, optimizer: Any, scheduler: Any,
                           scaler: Any, stage: StageConfig | None = None,
                           groups: torch.Tensor | None = None, branches: torch.Tensor | None = None,
                           weights: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        dataset.set_augmentation_key(epoch)
        set_train_mode(network, frozen)
        loader = self.loader(dataset, shuffle=True, epoch_seed=self.config.seed * 100_003 + epoch)
        bar = EpochProgress(f"epoch {epoch}", len(loader), self.progress)
        preds, trues, skipped = [], [], 0
        for done, batch in enumerate(loader, start=1):
            skipped += len(batch.failed)
            self.report_failures(batch.failed)
            if batch.indices.numel() == 0:
                continue
            target = targets[batch.indices].to(self.device)
            with self.autocast():
                x = self.to_input(batch.images)
                if head_only:
                    with torch.no_grad():
                        feats = network.features(x)
                    dist = network.head(feats.float())
                else:
                    dist = network(x)
            batch_groups = groups[batch.indices].to(self.device) if groups is not None else None
            batch_branches = branches[batch.indices].to(self.device) if branches is not None else None
            batch_weights = weights[batch.indices].to(self.device) if weights is not None else None
            bar.update(done, self.step(optimizer, scheduler, scaler, dist, target, preds, trues, stage, batch_groups,
                                       batch_branches, batch_weights))
        bar.close()
        if not preds:
            raise ValueError(f"{dataset.labels.source}: none of the {len(dataset)} training images could be decoded")
        return np.concatenate(preds), np.concatenate(trues), skipped

    def train_epoch_cached(self, network: NimaNetwork, cache: torch.Tensor, ok: torch.Tensor,
                           targets: torch.Tensor, epoch: int, optimizer: Any, scheduler: Any,
                           scaler: Any, stage: StageConfig | None = None,
                           groups: torch.Tensor | None = None, branches: torch.Tensor | None = None,
                           weights: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        views, count = cache.shape[0], cache.shape[1]
        generator = torch.Generator()
        generator.manual_seed(self.config.seed * 100_003 + epoch)
        if stage is not None and stage.per_group and groups is not None:
            order = grouped_order(groups, stage.per_group, generator)
        else:
            order = torch.randperm(count, generator=generator)
        view_of = torch.randint(views, (count,), generator=generator)
        order = order[ok[order]]
        network.head.train()
        batch_size = self.config.batch_size
        if order.numel() % batch_size == 1 and order.numel() > 1:
            order = order[:-1]
        batches = max(1, math.ceil(order.numel() / batch_size))
        bar = EpochProgress(f"epoch {epoch} (cached)", batches, self.progress)
        preds, trues = [], []
        for done, start in enumerate(range(0, order.numel(), batch_size), start=1):
            idx = order[start:start + batch_size]
            feats = cache[view_of[idx], idx].to(self.device)
            target = targets[idx].to(self.device)
            with self.autocast():
                dist = network.head(feats)
            batch_groups = groups[idx].to(self.device) if groups is not None else None
            batch_branches = branches[idx].to(self.device) if branches is not None else None
            batch_weights = weights[idx].to(self.device) if weights is not None else None
            bar.update(done, self.step(optimizer, scheduler, scaler, dist, target, preds, trues, stage, batch_groups,
                                       batch_branches, batch_weights))
        bar.close()
        if not preds:
            raise ValueError("none of the training images could be decoded (feature cache is empty)")
        return np.concatenate(preds), np.concatenate(trues), int((~ok).sum())

    # checkpoints -----------------------------------------------------------------------------------

    def metadata(self, val_metrics: dict[str, float], epoch: int) -> ModelMetadata:
        trained_on = self.config.trained_on or Path(self.config.data.labels).name
        metrics = {f"val_{k}": float(v) for k, v in val_metrics.items()
                   if isinstance(v, (int, float)) and math.isfinite(float(v))}
        metrics["epoch"] = float(epoch)
        parent = self.config.parent
        inherited: dict[str, Any] = {}
        notes = f"run {self.run.path.name}, epoch {epoch}"
        if parent:  # a fine-tuned model keeps its parent's preprocessing and licences, and names it
            inherited = {"resize": ResizeSpec(**parent["resize"]), "licenses": list(parent.get("licenses", [])),
                         "parent": {"name": parent["name"], "sha256": parent["sha256"],
                                    "description": parent.get("description", "")}}
            notes += f"; fine-tuned from {parent['name']} (sha256 {parent['sha256'][:12]})"
        return ModelMetadata(
            name=self.config.name, kind=self.config.kind, input_size=self.config.model.image_size,
            backbone=self.config.model.backbone, trained_on=trained_on, metrics=metrics,
            created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            notes=notes, **inherited,
        )

    def preprocess(self) -> Preprocess:
        """The input geometry of the model this run saves, from the contract's one resolver."""
        return Preprocess.for_model(self.metadata({}, 0))

    def save_last(self, network: NimaNetwork, metadata: ModelMetadata, epoch: int, stage: str,
                  optimizer: Any, scheduler: Any, scaler: Any) -> None:
        save_checkpoint(
            self.run.last, network, self.config.model, metadata,
            epoch=epoch, stage=stage, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
            scaler=scaler.state_dict(), best_val_emd=self.best_val_emd,
            rng_torch=torch.get_rng_state(),
            rng_cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        )

    # the whole run ---------------------------------------------------------------------------------

    def baseline(self, network: NimaNetwork, val_images: ImageDataset) -> None:
        """Epoch 0: validation metrics of the untrained head (the starting point of the curves)."""
        t0 = time.perf_counter()
        val_pred, val_kept = self.predict(network, val_images)
        if not val_kept:
            raise ValueError(f"{val_images.labels.source}: none of the {len(val_images)} validation images "
                             "could be decoded")
        val_metrics = compute_metrics(val_images.labels.dists[val_kept], val_pred)
        record: dict[str, Any] = {"epoch": 0, "stage": "init", "seconds": round(time.perf_counter() - t0, 3),
                                  **{f"val_{k}": v for k, v in val_metrics.items()}}
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self.history.append(record)
        self.run.append_metrics(record)
        self.run.log(f"epoch 0 (before training) | val {format_metrics(val_metrics)}")

    def fit(self, network: NimaNetwork, train_set: LabelSet, val_set: LabelSet,
            resume_state: dict[str, Any] | None = None) -> None:
        config = self.config
        self.failures: set[str] = set()
        network.to(self.device)
        if config.channels_last:
            network.to(memory_format=torch.channels_last)
        preprocess = self.preprocess()
        train_images = ImageDataset(train_set, preprocess, train=True, seed=config.seed)
        val_images = ImageDataset(val_set, preprocess, train=False, seed=config.seed)
        targets = torch.from_numpy(train_set.dists.astype(np.float32))
        groups, branches = ranking_keys(train_set)
        start_epoch = int(resume_state["epoch"]) + 1 if resume_state else 1
        if resume_state:
            self.best_val_emd = float(resume_state.get("best_val_emd", math.inf))

        if start_epoch == 1:
            self.baseline(network, val_images)
        for plan in stage_plan(config):
            if plan.last_epoch < start_epoch:
                continue
            stage = plan.config
            weights = ranking_weights(train_set, stage.rank_type_weights)
            frozen = apply_freeze(network, stage.frozen)
            optimizer = make_optimizer(stage, network.parameters())
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, InverseTimeDecay(stage.decay))
            scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
            if resume_state and resume_state.get("stage") == plan.name and start_epoch > plan.first_epoch:
                optimizer.load_state_dict(resume_state["optimizer"])
                scheduler.load_state_dict(resume_state["scheduler"])
                scaler.load_state_dict(resume_state["scaler"])
            cached = None
            if stage.cache_views:
                self.run.log(f"stage {plan.name}: caching backbone features of {stage.cache_views} augmented "
                             f"view(s) of {len(train_set)} training images")
                t0 = time.perf_counter()
                views = [self.features(network, train_images, CACHE_KEY_BASE + v) for v in range(stage.cache_views)]
                cache = torch.stack([v[0] for v in views])
                ok = views[0][1]
                for _feats, mask in views[1:]:
                    ok &= mask
                val_feats, val_ok = self.features(network, val_images, 0)
                cached = (cache, ok, val_feats, val_ok)
                self.run.log(f"feature cache ready: {tuple(cache.shape)} in {time.perf_counter() - t0:.1f} s")
            if resume_state is not None:
                # Restore the global RNG (dropout) exactly where the interrupted run left it.
                torch.set_rng_state(resume_state["rng_torch"])
                if torch.cuda.is_available() and resume_state.get("rng_cuda"):
                    torch.cuda.set_rng_state_all(resume_state["rng_cuda"])
                resume_state = None
            for epoch in range(max(plan.first_epoch, start_epoch), plan.last_epoch + 1):
                t0 = time.perf_counter()
                if cached is not None:
                    cache, ok, val_feats, val_ok = cached
                    pred, true, skipped = self.train_epoch_cached(network, cache, ok, targets, epoch,
                                                                  optimizer, scheduler, scaler, stage, groups,
                                                                  branches, weights)
                    network.eval()
                    with torch.inference_mode():
                        val_pred = network.head(val_feats[val_ok].to(self.device)).float().cpu().numpy()
                    val_kept = torch.nonzero(val_ok).flatten().tolist()
                else:
                    pred, true, skipped = self.train_epoch_images(network, train_images, targets, frozen,
                                                                  plan.name == "head" and stage.frozen == "backbone",
                                                                  epoch, optimizer, scheduler, scaler, stage, groups,
                                                                  branches, weights)
                    val_pred, val_kept = self.predict(network, val_images)
                train_metrics = compute_metrics(true, pred)
                val_metrics = compute_metrics(val_set.dists[val_kept], val_pred)
                record: dict[str, Any] = {
                    "epoch": epoch, "stage": plan.name, "lr": optimizer.param_groups[0]["lr"],
                    "seconds": round(time.perf_counter() - t0, 3), "skipped_images": skipped,
                    **{f"train_{k}": v for k, v in train_metrics.items()},
                    **{f"val_{k}": v for k, v in val_metrics.items()},
                }
                record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
                self.history.append(record)
                self.run.append_metrics(record)
                self.run.log(f"epoch {epoch}/{stage_plan(config)[-1].last_epoch} [{plan.name}] "
                             f"train emd {train_metrics['emd']:.4f} | val {format_metrics(val_metrics)} "
                             f"({record['seconds']:.1f} s)")
                metadata = self.metadata(val_metrics, epoch)
                if val_metrics["emd"] < self.best_val_emd:
                    self.best_val_emd = val_metrics["emd"]
                    save_checkpoint(self.run.best, network, config.model, metadata, epoch=epoch)
                    self.run.log(f"new best val emd {self.best_val_emd:.4f}: {self.run.best}")
                self.save_last(network, metadata, epoch, plan.name, optimizer, scheduler, scaler)
                if self.stop_after is not None and epoch >= self.stop_after:
                    self.run.log(f"stopping after epoch {epoch} as asked; continue with --resume {self.run.path}")
                    return
