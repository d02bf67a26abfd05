"""Cheap head experiments on cached frozen-backbone features, judged on validation photos.

With a frozen backbone the head only ever sees backbone features, so the features of K augmented
views of every training image and of the validation images (eval view, what the runtime sees) are
computed once (:func:`cache_features`, the same code path as ``nima-rt train``'s feature cache) and
saved; every head variant (:class:`HeadOption`: learning rate, weight decay, epochs, the ranking
term, grouped batches) then trains in seconds with the trainer's own cached-feature epoch, and is
judged on the validation split *by photo*: validation EMD, and the graded-distortion figures of
``train/evaluation/graded_eval.py`` on the whole validation photos (mean Spearman over types, clean-vs-level
2-4 pair accuracy of the main types, share of score variance explained by photo identity).

The test split is never touched here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nima_rt.contract.messages import one_line
from nima_rt.io.files import RefusedFile, atomic_path, open_regular
from nima_rt.runtime.metrics import compute_metrics
from nima_rt.train.data.image_data import ImageDataset
from nima_rt.train.data.labels import SCORES
from nima_rt.train.data.sampling import ranking_keys, ranking_weights
from nima_rt.train.evaluation.cross_source import photo_variance_share
from nima_rt.train.evaluation.graded_eval import PRIMARY_TYPES, graded_report, read_rows
from nima_rt.train.fit.config import TrainConfig
from nima_rt.train.fit.devices import resolve_device
from nima_rt.train.fit.runs import create_run
from nima_rt.train.fit.stages import InverseTimeDecay, make_optimizer
from nima_rt.train.fit.train_run import load_data
from nima_rt.train.fit.trainer import CACHE_KEY_BASE, Trainer
from nima_rt.train.model.network import NimaHead
from nima_rt.train.model.pretrained import build_network


@dataclass(frozen=True)
class HeadOption:
    """One head variant; the stage settings not named here come from the training config."""

    name: str
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 1.0
    dropout: float = 0.75
    rank_weight: float = 0.0
    rank_margin: float = 0.25
    per_group: int = 0
    cross_weight: float = 0.0
    cross_gap: float = 2.0
    rank_type_weights: dict[str, float] = dataclasses.field(default_factory=dict)
    select: str = "best"  # "best": the epoch of the lowest validation EMD; "last": the last epoch


def _trainer(config: TrainConfig, out: Path) -> Trainer:
    run = create_run(dataclasses.replace(config, out=str(out)), echo=False)
    trainer = Trainer(config, run, resolve_device(config.device), progress=False)
    trainer.failures = set()
    return trainer


def cache_features(config: TrainConfig, path: Path, views: int = 2) -> Path:
    """Backbone features of ``views`` augmented views of the training images and of the validation
    images (eval view), saved with ``torch.save`` at ``path``."""
    if config.threads:
        torch.set_num_threads(config.threads)
    train_set, val_set = load_data(config, lambda _message: None)
    torch.manual_seed(config.seed)
    network = build_network(config.model, pretrained=config.pretrained)
    trainer = _trainer(config, path.parent / "runs")
    try:
        preprocess = trainer.preprocess()
        train_images = ImageDataset(train_set, preprocess, train=True, seed=config.seed)
        val_images = ImageDataset(val_set, preprocess, train=False, seed=config.seed)
        cached = [trainer.features(network, train_images, CACHE_KEY_BASE + v) for v in range(views)]
        val, val_ok = trainer.features(network, val_images, 0)
    finally:
        trainer.run.close()
    ok = cached[0][1]
    for _feats, mask in cached[1:]:
        ok &= mask
    with atomic_path(path) as temporary:
        torch.save({"train": torch.stack([c[0] for c in cached]), "train_ok": ok, "val": val, "val_ok": val_ok,
                    "train_paths": [str(p) for p in train_set.paths], "val_paths": [str(p) for p in val_set.paths]},
                   temporary)
    return path


def load_cache(path: Path) -> dict[str, Any]:
    """A feature cache written by :func:`cache_features`, loaded with ``weights_only=True``: tensors, lists
    and strings only, so a cache file from elsewhere cannot run code when it is read (a pickle names any
    callable). Raises ValueError (one line, naming the file) for anything else."""
    try:
        with open_regular(path, str(path), "a feature cache (torch.save)") as handle:
            cache = torch.load(handle, map_location="cpu", weights_only=True)
    except RefusedFile as exc:
        raise ValueError(str(exc)) from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise ValueError(f"{path}: not a feature cache of cache_features ({one_line(exc, 300)})") from None
    keys = set(cache) if isinstance(cache, dict) else set()
    missing = {"train", "train_ok", "val", "val_ok", "train_paths", "val_paths"} - keys
    if missing:
        raise ValueError(f"{path}: not a feature cache of cache_features (missing {', '.join(sorted(missing))})")
    return cache


def _val_rows(config: TrainConfig, val_paths: list[str]) -> list[dict[str, str]]:
    csv_path = Path(config.data.val_labels)
    rows = read_rows(csv_path)
    by_path = {str((csv_path.parent / r["path"]).resolve()): r for r in rows}
    return [by_path[str(Path(p).resolve())] for p in val_paths]


def fit_option(config: TrainConfig, cache: dict[str, Any], option: HeadOption, out: Path) -> dict[str, Any]:
    """Train one head variant on the cache; the epoch with the lowest val EMD (``select = "best"``) or the last
    epoch (``"last"``) is judged."""
    if option.select not in ("best", "last"):
        raise ValueError(f"head option {option.name!r}: select must be 'best' or 'last', got {option.select!r}")
    train_set, val_set = load_data(config, lambda _message: None)
    stage = dataclasses.replace(config.head, epochs=option.epochs, lr=option.lr, weight_decay=option.weight_decay,
                                rank_weight=option.rank_weight, rank_margin=option.rank_margin,
                                per_group=option.per_group, cross_weight=option.cross_weight,
                                cross_gap=option.cross_gap, rank_type_weights=dict(option.rank_type_weights))
    torch.manual_seed(config.seed)
    head = NimaHead(cache["train"].shape[2], option.dropout, standardize=config.model.head == "multilevel")
    holder = torch.nn.Module()
    holder.head = head
    trainer = _trainer(config, out)
    targets = torch.from_numpy(train_set.dists.astype(np.float32))
    groups, branches = ranking_keys(train_set)
    weights = ranking_weights(train_set, stage.rank_type_weights)
    optimizer = make_optimizer(stage, head.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, InverseTimeDecay(stage.decay))
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    val_ok = cache["val_ok"]
    best: dict[str, Any] = {"val_emd": math.inf}
    try:
        for epoch in range(1, option.epochs + 1):
            trainer.train_epoch_cached(holder, cache["train"], cache["train_ok"], targets, epoch, optimizer,
                                       scheduler, scaler, stage, groups, branches, weights)
            head.eval()
            with torch.inference_mode():
                pred = head(cache["val"][val_ok]).numpy()
            metrics = compute_metrics(val_set.dists[val_ok.numpy()], pred)
            if metrics["emd"] < best["val_emd"] or (option.select == "last" and epoch == option.epochs):
                best = {"val_emd": metrics["emd"], "epoch": epoch, "pred": pred}
    finally:
        trainer.run.close()
    return {"option": dataclasses.asdict(option), **judge(config, cache, best["pred"]),
            "val_emd": best["val_emd"], "epoch": best["epoch"]}


def judge(config: TrainConfig, cache: dict[str, Any], pred: np.ndarray) -> dict[str, Any]:
    """Graded figures of validation predictions (whole photos only)."""
    kept = [p for p, ok in zip(cache["val_paths"], cache["val_ok"].tolist(), strict=True) if ok]
    rows = _val_rows(config, kept)
    means = pred @ SCORES
    full = [i for i, r in enumerate(rows) if r["view"] == "full"]
    rows_full, means_full = [rows[i] for i in full], means[full]
    report = graded_report(rows_full, means_full)
    spearmans = {t: round(r.spearman_mean, 4) for t, r in report.types.items()}
    primary = [spearmans[t] for t in PRIMARY_TYPES if t in spearmans]
    return {"val_spearman_mean_all": round(float(np.mean(list(spearmans.values()))), 4),
            "val_spearman_mean_primary": round(float(np.mean(primary)), 4),
            "val_pair_accuracy_primary": round(report.primary_pair_accuracy(), 4),
            "val_photo_variance": round(photo_variance_share([r["group"] for r in rows_full], means_full), 4),
            "val_spearman": spearmans}


def run_sweep(config: TrainConfig, cache_path: Path, options: list[HeadOption], out: Path) -> list[dict[str, Any]]:
    """Fit every option; write ``out/sweep.jsonl`` (one line per option) and return the records."""
    if config.threads:
        torch.set_num_threads(config.threads)
    cache = load_cache(cache_path)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    with (out / "sweep.jsonl").open("a", encoding="utf-8") as handle:
        for option in options:
            record = fit_option(config, cache, option, out / "runs")
            records.append(record)
            handle.write(json.dumps(record) + "\n")
            handle.flush()
    return records
