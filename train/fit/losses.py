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


def within_group_margin_loss(pred_mean: torch.Tensor, target_mean: torch.Tensor, groups: torch.Tensor,
                             margin: float = 0.25, branches: torch.Tensor | None = None,
                             min_gap: float = 0.0, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Pairwise ranking term inside each group (the same reference photo at different levels).

    For every pair ``(i, j)`` of the batch with ``groups[i] == groups[j]`` and a higher label for
    ``i`` (``target_mean[i] > target_mean[j]``), the loss is ``max(0, margin - (pred_mean[i] -
    pred_mean[j]))``: the better image must score at least ``margin`` higher. Returns the mean over
    such pairs, or 0 when the batch has none. Photos are never compared with each other, so the
    term asks for the right order of a photo's versions whatever the photo shows.

    ``branches`` (optional, ``[N]`` integers) limits the pairs further to the same branch or a
    branch-0 image: with branch = distortion type and 0 for the clean photo, only the levels of one
    type are compared with each other and with the clean photo (labels of different types come
    from different human studies and are not on one scale). ``min_gap``: only pairs whose labels
    differ by more than this (with all images in one group: "a clearly better image of any photo
    must score higher than a clearly worse image of any other"). ``weights`` (optional, ``[N]``): a pair
    weighs the larger of its two images' weights and the mean is weighted (per-type emphasis).
    """
    if not (pred_mean.shape == target_mean.shape == groups.shape) or pred_mean.ndim != 1:
        raise ValueError(f"pred_mean, target_mean and groups must be [N], got {list(pred_mean.shape)}, "
                         f"{list(target_mean.shape)} and {list(groups.shape)}")
    same = groups.unsqueeze(1) == groups.unsqueeze(0)
    better = target_mean.unsqueeze(1) > target_mean.unsqueeze(0) + max(min_gap, 1e-6)
    pairs = same & better
    if branches is not None:
        if branches.shape != groups.shape:
            raise ValueError(f"branches must be [N] like groups, got {list(branches.shape)}")
        root = branches == 0
        pairs &= (branches.unsqueeze(1) == branches.unsqueeze(0)) | root.unsqueeze(1) | root.unsqueeze(0)
    if not bool(pairs.any()):
        return pred_mean.sum() * 0.0
    gaps = pred_mean.unsqueeze(1) - pred_mean.unsqueeze(0)
    hinge = torch.relu(margin - gaps[pairs])
    if weights is None:
        return hinge.mean()
    pair_weights = torch.maximum(weights.unsqueeze(1), weights.unsqueeze(0))[pairs]
    total = pair_weights.sum()
    return (hinge * pair_weights).sum() / total if bool(total > 0) else pred_mean.sum() * 0.0


def nima_loss(dist: torch.Tensor, target: torch.Tensor, groups: torch.Tensor | None = None,
              rank_weight: float = 0.0, rank_margin: float = 0.25,
              branches: torch.Tensor | None = None, cross_weight: float = 0.0,
              cross_gap: float = 2.0, weights: torch.Tensor | None = None) -> torch.Tensor:
    """EMD, plus ``rank_weight`` times the within-group ranking term of the predicted mean scores,
    plus ``cross_weight`` times the same term over every pair of the batch whose labels differ by
    more than ``cross_gap`` (across photos: content must not outweigh a large quality difference).
    ``weights``: per-image weights of the within-group term's pairs
    (:func:`~nima_rt.train.data.sampling.ranking_weights`)."""
    loss = emd_loss(dist, target)
    scores = torch.arange(1, dist.shape[1] + 1, dtype=dist.dtype, device=dist.device)
    if rank_weight > 0 and groups is not None:
        loss = loss + rank_weight * within_group_margin_loss(dist @ scores, target @ scores, groups, rank_margin,
                                                             branches, weights=weights)
    if cross_weight > 0:
        pred_mean, target_mean = dist @ scores, target @ scores
        everyone = torch.zeros_like(pred_mean, dtype=torch.long)
        loss = loss + cross_weight * within_group_margin_loss(pred_mean, target_mean, everyone, rank_margin,
                                                              min_gap=cross_gap)
    return loss
