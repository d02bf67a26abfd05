"""Batches drawn by reference photo, so that every batch holds several versions of the same photo.

A within-reference ranking term (:func:`.losses.within_group_margin_loss`) needs pairs of the same
photo at different distortion levels in one batch; uniformly shuffled batches of 64 out of a few
thousand images hold almost none. :func:`grouped_order` makes an epoch order in which each batch
is ``batch_size // per_group`` runs of ``per_group`` images of one group, every image still
appearing exactly once per epoch (so every reference photo weighs the same as in plain shuffling).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def group_ids(groups: Sequence[str]) -> torch.Tensor:
    """Integer ids ``[N]`` for group names (in order of first appearance)."""
    index: dict[str, int] = {}
    return torch.tensor([index.setdefault(g, len(index)) for g in groups], dtype=torch.long)


def grouped_order(ids: torch.Tensor, per_group: int, generator: torch.Generator) -> torch.Tensor:
    """A permutation of ``range(len(ids))`` made of shuffled runs of ``per_group`` same-group items.

    Within a group the items are shuffled and cut into runs (the last run of a group may be
    shorter); the runs of all groups are then shuffled together. Deterministic for a generator state.
    """
    if per_group < 1:
        raise ValueError(f"per_group must be >= 1, got {per_group}")
    runs: list[torch.Tensor] = []
    for group in torch.unique(ids).tolist():
        members = torch.nonzero(ids == group).flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        runs.extend(members.split(per_group))
    order = torch.randperm(len(runs), generator=generator).tolist()
    return torch.cat([runs[i] for i in order]) if runs else torch.zeros(0, dtype=torch.long)
