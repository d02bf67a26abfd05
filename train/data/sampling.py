"""Batches drawn by reference photo, so that every batch holds several versions of the same photo.

A within-reference ranking term (:func:`.losses.within_group_margin_loss`) needs pairs of the same
photo at different distortion levels in one batch; uniformly shuffled batches of 64 out of a few
thousand images hold almost none. :func:`grouped_order` makes an epoch order in which each batch
is ``batch_size // per_group`` runs of ``per_group`` images of one group, every image still
appearing exactly once per epoch (so every reference photo weighs the same as in plain shuffling).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import torch

from nima_rt.train.data.label_sets import LabelSet


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


def ranking_keys(labels: LabelSet) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Group and branch ids ``[N]`` for the ranking term of ``labels``' images.

    For a ``build-dataset`` split file (columns ``group``, ``view``, ``distortion``) a group is one
    view of one reference photo and a branch one distortion type (0 = the clean image), so the
    ranking term compares the levels of one type of one photo with each other and with the clean
    photo. For any other label file: the file's groups, no branches.
    """
    source = Path(labels.source)
    if source.suffix.lower() == ".csv" and source.is_file():
        with source.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames and {"path", "group", "view", "distortion"} <= set(reader.fieldnames):
                by_path = {str((source.parent / row["path"]).resolve()): row for row in reader}
                rows = [by_path.get(str(Path(p).resolve())) for p in labels.paths]
                if all(row is not None for row in rows):
                    types: dict[str, int] = {"clean": 0}
                    branches = [types.setdefault(r["distortion"], len(types)) for r in rows]
                    return (group_ids([f"{r['group']}/{r['view']}" for r in rows]),
                            torch.tensor(branches, dtype=torch.long))
    return group_ids(labels.groups), None
