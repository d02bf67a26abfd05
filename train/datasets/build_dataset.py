"""Build a TID/KADID-style technical-quality dataset from clean reference photos.

For every reference photo: decode it (EXIF orientation, colour rule of ``nima_rt.io.decode``),
downscale it so its shorter side is ``short_side`` (384 by default, KADID-10k's size: the photos
are JPEG-compressed originals, and a 2-6x reduction makes them near-clean references), then write
the clean image and every distortion of ``train/datasets/distortions.py`` at levels 1..5, each as the whole
photo (view ``full``) and as ``crops`` square crops at fixed random positions (the same positions
for the clean and distorted versions). Labels come from ``train/datasets/kadid.py`` (human scores of
KADID-10k / TID2013 mapped to 1..10).

Output folder::

    images/<reference>/<view>/<distortion>_<level>.png    (clean images: clean_0.png)
    labels.csv          every row: path, mean, std, group (the reference), split, view, distortion, level, ...
    train.csv, val.csv, test.csv    the same rows by split (split by reference photo)
    dataset.json        the configuration, the label table and each reference's licence

``labels.csv`` and the split files are the generic CSV (``path, mean, std`` + extra columns) that
``nima-rt train`` reads, with paths relative to the output folder. Splits are by reference photo,
so no scene of the test split is ever seen in training.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from nima_rt.io.decode import DecodeError, is_image_path, load_rgb
from nima_rt.train.datasets.distortions import DISTORTIONS, NUM_LEVELS, apply
from nima_rt.train.datasets.kadid import Label, label_table
from nima_rt.train.datasets.reference_catalog import SPLITS
from nima_rt.train.datasets.references import read_manifest

CSV_COLUMNS = ("path", "mean", "std", "group", "split", "view", "distortion", "level", "source_score",
               "label_source")


class BuildError(RuntimeError):
    """The dataset cannot be built (no photos, unreadable photo, bad option)."""


@dataclass
class BuildConfig:
    """How the dataset is made; written into ``dataset.json``."""

    short_side: int = 384
    crops: dict[str, int] = field(default_factory=lambda: {"train": 1, "val": 1, "test": 0})
    crop_fraction: float = 0.75  # crop side as a share of the shorter side
    distortions: tuple[str, ...] = tuple(DISTORTIONS)
    levels: tuple[int, ...] = tuple(range(1, NUM_LEVELS + 1))
    seed: int = 0
    val_share: float = 0.15  # used only when no manifest gives the splits
    test_share: float = 0.15
    png_compress_level: int = 1

    def __post_init__(self) -> None:
        if not 32 <= self.short_side <= 4096:
            raise BuildError(f"short_side must be in 32..4096, got {self.short_side}")
        unknown = [name for name in self.distortions if name not in DISTORTIONS]
        if unknown:
            raise BuildError(f"unknown distortion(s) {', '.join(unknown)}: use {', '.join(DISTORTIONS)}")
        bad_levels = [lv for lv in self.levels if not 1 <= lv <= NUM_LEVELS]
        if bad_levels:
            raise BuildError(f"levels must be in 1..{NUM_LEVELS}, got {bad_levels}")
        if not 0.2 <= self.crop_fraction <= 1.0:
            raise BuildError(f"crop_fraction must be in 0.2..1, got {self.crop_fraction}")
        if any(n < 0 for n in self.crops.values()) or set(self.crops) - set(SPLITS):
            raise BuildError(f"crops must map splits ({', '.join(SPLITS)}) to counts >= 0, got {self.crops}")
        if self.val_share < 0 or self.test_share < 0 or self.val_share + self.test_share >= 1:
            raise BuildError("val_share and test_share must be >= 0 and leave photos for training")


@dataclass(frozen=True)
class Reference:
    """One input photo: its file, the id used in paths, its split and free-form provenance."""

    path: Path
    id: str
    split: str
    info: dict[str, object] = field(default_factory=dict)


@dataclass
class BuildResult:
    out: Path
    rows: int
    references: dict[str, int]  # split -> reference count
    images: dict[str, int]  # split -> image count


def _safe_id(stem: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem) or "photo"


def assign_splits(paths: list[Path], val_share: float, test_share: float, seed: int) -> dict[Path, str]:
    """A reproducible split by photo: a seeded order of the names, test first, then val."""
    ordered = sorted(paths, key=lambda p: hashlib.sha256(f"{seed}:{p.name}".encode()).hexdigest())
    n = len(ordered)
    n_test = int(round(n * test_share)) if n >= 3 else 0
    n_val = int(round(n * val_share)) if n >= 3 else 0
    splits = {}
    for index, path in enumerate(ordered):
        splits[path] = "test" if index < n_test else "val" if index < n_test + n_val else "train"
    return splits


def find_references(folder: str | Path, manifest: str | Path | None, config: BuildConfig) -> list[Reference]:
    """The photos of ``folder`` (not recursive) with their splits (from ``manifest`` or seeded)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BuildError(f"{folder}: not a folder of reference photos")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and is_image_path(p))
    if not paths:
        raise BuildError(f"{folder}: no image files (.jpg, .png, ...) found")
    if manifest is not None:
        entries = read_manifest(manifest)
        missing = [p.name for p in paths if p.name not in entries]
        if missing:
            raise BuildError(f"{manifest}: no entry for {len(missing)} photo(s) in {folder}, e.g. {missing[0]}")
        return [Reference(p, _safe_id(str(entries[p.name].get("id", p.stem))), str(entries[p.name]["split"]),
                          entries[p.name]) for p in paths]
    splits = assign_splits(paths, config.val_share, config.test_share, config.seed)
    ids = [_safe_id(p.stem) for p in paths]
    if len(set(ids)) != len(ids):
        raise BuildError(f"{folder}: two photos share a name stem; rename them so each stem is unique")
    return [Reference(p, i, splits[p]) for p, i in zip(paths, ids, strict=True)]


def load_reference(path: Path, short_side: int) -> np.ndarray:
    """Decode ``path`` to RGB uint8 and downscale so its shorter side is ``short_side`` (never up)."""
    try:
        rgb = load_rgb(path)  # the project's one opener: bomb policy, EXIF, RGB
    except DecodeError as exc:
        raise BuildError(f"cannot read reference photo: {exc}") from None
    width, height = rgb.size
    scale = short_side / min(width, height)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(rgb, dtype=np.uint8).copy()


def crop_boxes(height: int, width: int, count: int, fraction: float,
               rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """``count`` square crops ``(top, left, side)``, side = ``fraction`` of the shorter side."""
    side = max(16, int(round(min(height, width) * fraction)))
    return [(int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1)), side)
            for _ in range(count)]


def _reference_seed(seed: int, reference_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{reference_id}".encode()).digest()[:8], "little")


def _write_png(array: np.ndarray, path: Path, compress_level: int) -> None:
    tmp = path.with_name(path.stem + ".tmp.png")
    Image.fromarray(array, "RGB").save(tmp, "PNG", compress_level=compress_level)
    os.replace(tmp, path)


def build_reference(reference: Reference, out: Path, config: BuildConfig, labels: dict[tuple[str, int], Label]) \
        -> list[dict[str, object]]:
    """Write the clean and distorted images of one reference; return its CSV rows."""
    image = load_reference(reference.path, config.short_side)
    base = _reference_seed(config.seed, reference.id)
    boxes = crop_boxes(*image.shape[:2], config.crops.get(reference.split, 0), config.crop_fraction,
                       np.random.default_rng(base))
    views = ["full"] + [f"crop{i}" for i in range(len(boxes))]
    for view in views:
        (out / "images" / reference.id / view).mkdir(parents=True, exist_ok=True)
    conditions = [("clean", 0)] + [(d, lv) for d in config.distortions for lv in config.levels]
    rows: list[dict[str, object]] = []
    for type_index, (name, level) in enumerate(conditions):
        if name == "clean":
            distorted = image
        else:
            rng = np.random.default_rng([base, type_index, level])
            distorted = apply(image, name, level, rng)
        label = labels[(name, level)]
        for view, box in zip(views, [None, *boxes], strict=True):
            if box is None:
                view_image = distorted
            else:
                top, left, side = box
                view_image = np.ascontiguousarray(distorted[top:top + side, left:left + side])
            relative = Path("images") / reference.id / view / f"{name}_{level}.png"
            _write_png(view_image, out / relative, config.png_compress_level)
            rows.append({
                "path": relative.as_posix(), "mean": f"{label.mean:.4f}", "std": f"{label.std:.4f}",
                "group": reference.id, "split": reference.split, "view": view, "distortion": name,
                "level": level, "source_score": f"{label.source_mean:.4f}", "label_source": label.source,
            })
    return rows


def _write_csv(path: Path, rows: Iterable[dict[str, object]]) -> int:
    count = 0
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    os.replace(tmp, path)
    return count


def build_dataset(
    references: list[Reference],
    out: str | Path,
    config: BuildConfig | None = None,
    workers: int = 1,
    progress: Callable[[Reference], None] | None = None,
) -> BuildResult:
    """Build the dataset for ``references`` into ``out`` (see the module docstring)."""
    config = config or BuildConfig()
    if not references:
        raise BuildError("no reference photos to build a dataset from")
    ids = [r.id for r in references]
    if len(set(ids)) != len(ids):
        raise BuildError("reference ids must be unique")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = label_table()

    def one(reference: Reference) -> list[dict[str, object]]:
        rows = build_reference(reference, out, config, labels)
        if progress is not None:
            progress(reference)
        return rows

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        per_reference = list(pool.map(one, references))
    rows = [row for chunk in per_reference for row in chunk]
    total = _write_csv(out / "labels.csv", rows)
    images = {}
    for split in SPLITS:
        images[split] = _write_csv(out / f"{split}.csv", (r for r in rows if r["split"] == split))
    summary = {
        "config": {**asdict(config), "distortions": list(config.distortions), "levels": list(config.levels)},
        "labels": {f"{name}_{level}": asdict(label) for (name, level), label in labels.items()},
        "references": [
            {"id": r.id, "file": r.path.name, "split": r.split,
             **{k: v for k, v in r.info.items() if k in ("title", "author", "license", "source", "note")}}
            for r in references
        ],
    }
    (out / "dataset.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    counts = {split: sum(1 for r in references if r.split == split) for split in SPLITS}
    return BuildResult(out, total, counts, images)
