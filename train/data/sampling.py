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


def _dataset_rows(labels: LabelSet) -> list[dict[str, str]] | None:
    """The ``build-dataset`` rows (``group``, ``view``, ``distortion``) of ``labels``' images, in order, or None
    when the label file is not a build-dataset split file."""
    source = Path(labels.source)
    if source.suffix.lower() != ".csv" or not source.is_file():
        return None
    with source.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"path", "group", "view", "distortion"} <= set(reader.fieldnames):
            return None
        by_path = {str((source.parent / row["path"]).resolve()): row for row in reader}
    rows = [by_path.get(str(Path(p).resolve())) for p in labels.paths]
    return rows if all(row is not None for row in rows) else None  # type: ignore[return-value]


def ranking_weights(labels: LabelSet, weights: dict[str, float]) -> torch.Tensor | None:
    """Per-image weights ``[N]`` of the ranking term's pairs by distortion type (``{"underexposure": 20}``).

    A pair weighs the larger of its two images' weights: a type's pairs (with each other and with the clean
    image, whose weight is 0) weigh that type's weight; types not named weigh 1. None when ``weights`` is
    empty; a ValueError naming the types when the label file has no such distortion column or types.
    """
    if not weights:
        return None
    rows = _dataset_rows(labels)
    if rows is None:
        raise ValueError(f"{labels.source}: ranking weights by type need a build-dataset split file "
                         "(columns path, group, view, distortion)")
    unknown = sorted(set(weights) - {row["distortion"] for row in rows})
    if unknown:
        raise ValueError(f"{labels.source}: no images of distortion type(s) {', '.join(unknown)} "
                         "named in rank_type_weights")
    return torch.tensor([0.0 if row["distortion"] == "clean" else float(weights.get(row["distortion"], 1.0))
                         for row in rows], dtype=torch.float32)


def ranking_keys(labels: LabelSet) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Group and branch ids ``[N]`` for the ranking term of ``labels``' images.

    For a ``build-dataset`` split file (columns ``group``, ``view``, ``distortion``) a group is one
    view of one reference photo and a branch one distortion type (0 = the clean image), so the
    ranking term compares the levels of one type of one photo with each other and with the clean
    photo. For any other label file: the file's groups, no branches.
    """
    rows = _dataset_rows(labels)
    if rows is None:
        return group_ids(labels.groups), None
    types: dict[str, int] = {"clean": 0}
    branches = [types.setdefault(r["distortion"], len(types)) for r in rows]
    return group_ids([f"{r['group']}/{r['view']}" for r in rows]), torch.tensor(branches, dtype=torch.long)
