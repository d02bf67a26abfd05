"""Metrics of predicted vs true distributions, and evaluation of a checkpoint on a labelled set.

Metrics (the same in ``metrics.jsonl`` during training and in ``nima-rt evaluate``):

- ``emd``: mean EMD (r = 2) between predicted and true distributions;
- ``lcc`` / ``srcc``: Pearson and Spearman correlation of predicted and true mean scores;
- ``accuracy``: share of images put on the same side of 5.0 (mean score < 5 vs >= 5), the
  paper's two-class AVA accuracy;
- ``pred_mean_mean`` / ``pred_mean_std`` / ``true_mean_mean`` / ``true_mean_std``: the mean and
  standard deviation over images of the predicted and the true mean scores (a collapsed model
  shows a tiny ``pred_mean_std``);
- ``count``: images evaluated.

Evaluation runs the checkpoint through the model contract exactly as the runtime does: the file is
decoded and resized by ``nima_rt.io.decode.decode_file`` with the metadata's input size and resize,
and the uint8 batch goes through ``ContractModule``.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nima_rt.contract.spec import NUM_BINS, score_moments
from nima_rt.runtime.metrics import compute_metrics


@dataclass
class EvalResult:
    """Predictions and metrics of one evaluation."""

    paths: list[str]
    true_dist: np.ndarray  # [N, 10]
    pred_dist: np.ndarray  # [N, 10]
    metrics: dict[str, float]
    failed: list[str] = field(default_factory=list)  # one-line reasons for images that did not decode
    source: str = ""


def predict_label_set(contract_module: Any, labels: Any, preprocess: Any, batch_size: int = 32,
                      device: str = "cpu", workers: int = 0) -> tuple[np.ndarray, list[int], list[str]]:
    """Run a ContractModule over a LabelSet's images, resized as ``preprocess`` (the contract's
    ``Preprocess.for_model``) says; -> (dist, kept indices, failures)."""
    import torch
    from torch.utils.data import DataLoader

    from nima_rt.train.data.image_data import ImageDataset, collate_samples

    dataset = ImageDataset(labels, preprocess, train=False)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate_samples)
    contract_module = contract_module.to(device).eval()
    dists: list[np.ndarray] = []
    kept: list[int] = []
    failed: list[str] = []
    with torch.inference_mode():
        for batch in loader:
            failed.extend(batch.failed)
            if batch.indices.numel() == 0:
                continue
            dist, _mean, _std = contract_module(batch.images.to(device))
            dists.append(dist.float().cpu().numpy())
            kept.extend(int(i) for i in batch.indices)
    pred = np.concatenate(dists) if dists else np.zeros((0, NUM_BINS), dtype=np.float32)
    return pred, kept, failed


def evaluate_checkpoint(checkpoint: Any, dataset: Any, batch_size: int = 32, device: str = "cpu",
                        workers: int = 0) -> EvalResult:
    """Score ``dataset`` (a :class:`~.datasets.LabelSet`) with ``checkpoint`` (a loaded Checkpoint)."""
    from nima_rt.contract.spec import Preprocess

    pred, kept, failed = predict_label_set(checkpoint.contract_module(), dataset,
                                           Preprocess.for_model(checkpoint.metadata), batch_size, device, workers)
    if not kept:
        raise ValueError(f"{dataset.source}: none of the {len(dataset)} images could be decoded")
    true = dataset.dists[kept].astype(np.float64)
    return EvalResult(
        paths=[str(dataset.paths[i]) for i in kept],
        true_dist=true,
        pred_dist=pred.astype(np.float64),
        metrics=compute_metrics(true, pred),
        failed=failed,
        source=dataset.source,
    )


def write_predictions_csv(result: EvalResult, path: Path) -> None:
    """``path, true_mean, pred_mean, true_std, pred_std, true_p1..p10, pred_p1..p10`` per image."""
    true_mean, true_std = score_moments(result.true_dist)
    pred_mean, pred_std = score_moments(result.pred_dist)
    header = ["path", "true_mean", "pred_mean", "true_std", "pred_std"]
    header += [f"true_p{k}" for k in range(1, 11)] + [f"pred_p{k}" for k in range(1, 11)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for i, image in enumerate(result.paths):
            writer.writerow([image, f"{true_mean[i]:.5f}", f"{pred_mean[i]:.5f}", f"{true_std[i]:.5f}",
                             f"{pred_std[i]:.5f}", *(f"{v:.6f}" for v in result.true_dist[i]),
                             *(f"{v:.6f}" for v in result.pred_dist[i])])


def write_evaluation(result: EvalResult, out_dir: str | os.PathLike[str], title: str,
                     checkpoint_info: dict[str, Any] | None = None) -> list[Path]:
    """Write ``metrics.json``, ``predictions.csv`` (and plots, when available) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.json"
    document = {"source": result.source, "metrics": result.metrics, "failed": len(result.failed),
                "failed_examples": result.failed[:10], **(checkpoint_info or {})}
    metrics_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    predictions_path = out / "predictions.csv"
    write_predictions_csv(result, predictions_path)
    written = [metrics_path, predictions_path]
    written += _write_plots(result, out, title)
    return written


def _write_plots(result: EvalResult, out: Path, title: str) -> list[Path]:
    """The one place evaluation plots are made (train/evaluation/plots.py; matplotlib is in the train extra)."""
    from nima_rt.train.evaluation.plots import write_evaluation_plots

    return list(write_evaluation_plots(result.true_dist, result.pred_dist, out, title, result.metrics))


def format_metrics(metrics: dict[str, float]) -> str:
    """One line for people: ``emd 0.0812  lcc 0.612  srcc 0.598  acc 0.781 ...``."""
    names = ("emd", "lcc", "srcc", "accuracy", "pred_mean_mean", "pred_mean_std", "true_mean_mean", "true_mean_std")
    return "  ".join(f"{name} {metrics[name]:.4f}" for name in names if name in metrics) + f"  n {metrics.get('count')}"
