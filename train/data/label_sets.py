"""Labelled images on disk: a :class:`LabelTable`'s names resolved under an images folder.

:func:`attach_images` resolves every name under an images folder into a :class:`LabelSet`; names
with no file are counted in ``missing`` and skipped. Unreadable files are found when decoded
(``train/data/image_data.py`` reports them per batch; the trainer logs and skips them).
:func:`load_label_set` does both steps; :func:`split_by_group` splits by group (e.g. reference photo).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nima_rt.io.decode import is_image_path
from nima_rt.train.data.label_files import LabelError, LabelTable, read_labels
from nima_rt.train.data.labels import Scale


@dataclass
class LabelSet:
    """Labelled images that exist on disk; what datasets and evaluation consume."""

    source: str
    paths: list[Path]
    dists: np.ndarray  # [N, 10] float32
    groups: list[str]
    invalid: int = 0
    missing: int = 0
    missing_examples: list[str] = field(default_factory=list)
    invalid_reasons: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: np.ndarray | list[int], source: str | None = None) -> LabelSet:
        idx = [int(i) for i in indices]
        return LabelSet(
            source=source or self.source,
            paths=[self.paths[i] for i in idx],
            dists=self.dists[idx],
            groups=[self.groups[i] for i in idx],
        )

    def summary(self) -> str:
        """One line: how many labelled images are usable, missing and invalid."""
        parts = [f"{self.source}: {len(self)} labelled images found"]
        if self.missing:
            example = f" (e.g. {', '.join(self.missing_examples)})" if self.missing_examples else ""
            parts.append(f"{self.missing} missing image file(s) skipped{example}")
        if self.invalid:
            reasons = f" ({'; '.join(self.invalid_reasons)})" if self.invalid_reasons else ""
            parts.append(f"{self.invalid} invalid label row(s) skipped{reasons}")
        return ", ".join(parts)


# --- format detection ------------------------------------------------------------------------------


class ImageResolver:
    """Finds an image under ``root`` by relative path, case-insensitively, extension optional."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._by_name: dict[str, Path] | None = None
        self._by_stem: dict[str, Path] | None = None

    def _indexes(self) -> tuple[dict[str, Path], dict[str, Path]]:
        if self._by_name is not None and self._by_stem is not None:
            return self._by_name, self._by_stem
        self._by_name, self._by_stem = {}, {}
        for folder, _dirs, files in os.walk(self.root):
            for filename in sorted(files):
                full = Path(folder) / filename
                rel = full.relative_to(self.root).as_posix().lower()
                self._by_name.setdefault(rel, full)
                if is_image_path(filename):
                    self._by_stem.setdefault(os.path.splitext(rel)[0], full)
        return self._by_name, self._by_stem

    def resolve(self, name: str) -> Path | None:
        direct = Path(name) if os.path.isabs(name) else self.root / name
        if direct.is_file():
            return direct
        if os.path.isabs(name):
            return None
        by_name, by_stem = self._indexes()
        key = Path(name).as_posix().lower()
        return by_name.get(key) or by_stem.get(key) or by_stem.get(os.path.splitext(key)[0])


def attach_images(table: LabelTable, images: str | os.PathLike[str] | None = None) -> LabelSet:
    """Resolve the table's names under ``images`` (or the format's default folder)."""
    root = Path(images) if images is not None else table.root_hint
    if root is None or not root.is_dir():
        raise LabelError(f"{root}: images folder not found (pass --images)")
    resolver = ImageResolver(root)
    keep: list[int] = []
    paths: list[Path] = []
    missing_examples: list[str] = []
    for i, name in enumerate(table.names):
        found = resolver.resolve(name)
        if found is None:
            if len(missing_examples) < 3:
                missing_examples.append(name)
            continue
        keep.append(i)
        paths.append(found)
    missing = len(table.names) - len(keep)
    if not keep:
        raise LabelError(
            f"{table.source}: none of the {len(table.names)} labelled images is under {root} "
            f"(e.g. {', '.join(missing_examples)})"
        )
    return LabelSet(
        source=table.source,
        paths=paths,
        dists=table.dists[keep].astype(np.float32),
        groups=[table.groups[i] for i in keep],
        invalid=table.invalid,
        missing=missing,
        missing_examples=missing_examples,
        invalid_reasons=list(table.invalid_reasons),
    )


def load_label_set(labels: str | os.PathLike[str], images: str | os.PathLike[str] | None = None,
                   format: str | None = None, scale: Scale | None = None) -> LabelSet:
    """:func:`read_labels` then :func:`attach_images`."""
    return attach_images(read_labels(labels, format, scale), images)


def split_by_group(labels: LabelSet, val_fraction: float, seed: int) -> tuple[LabelSet, LabelSet]:
    """Random train/val split that keeps every group (e.g. a TID2013 reference scene) on one side."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    unique = sorted(set(labels.groups))
    if len(unique) < 2:
        raise LabelError(f"{labels.source}: cannot split {len(unique)} group(s) into train and validation")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(unique))
    n_val = min(len(unique) - 1, max(1, round(len(unique) * val_fraction)))
    val_groups = {unique[i] for i in order[:n_val]}
    val_idx = [i for i, g in enumerate(labels.groups) if g in val_groups]
    train_idx = [i for i, g in enumerate(labels.groups) if g not in val_groups]
    train = labels.subset(train_idx, f"{labels.source} (train split)")
    return train, labels.subset(val_idx, f"{labels.source} (val split)")


# --- torch datasets --------------------------------------------------------------------------------
