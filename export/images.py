"""Images for verification and INT8 calibration, decoded exactly as the runtime decodes them.

Every image goes through :func:`nima_rt.io.decode.decode_file` with the model's
:class:`~nima_rt.io.decode.Preprocess`, so PyTorch, ONNX Runtime and TensorRT see the same uint8
input the scorer would. Without a folder, photo-like images are generated (deterministic, written
as JPEGs and decoded like any file). Calibration and evaluation sets are always disjoint.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from nima_rt.contract.spec import ModelMetadata
from nima_rt.io.decode import DecodeError, Preprocess, decode_file, is_image_path

# Every EVAL_STRIDE-th file of a shared folder evaluates; the others calibrate (half and half: the INT8 gate
# needs verify.INT8_MIN_IMAGES held-out images, calibration ranges settle on fewer).
EVAL_STRIDE = 2
GENERATED_EVAL_SEED = 100_000  # generated evaluation images use seeds from here, calibration from 0


class ImageSetError(ValueError):
    """No usable images where some were expected; ``str()`` names the folder."""


@dataclass
class ImageSet:
    """Decoded model input ``[N, S, S, 3]`` uint8 and where it came from."""

    images: np.ndarray
    paths: list[str]
    skipped: list[str]  # one-line reasons for files that did not decode
    source: str  # "DIR (n files)" or "generated"


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); :class:`ImageSetError` if none."""
    if not folder.is_dir():
        raise ImageSetError(f"{folder}: not a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_path(p))
    if not files:
        raise ImageSetError(f"{folder}: no image files found (looked for .jpg, .png, .webp, .tif, ...)")
    return files


def decode_paths(paths: list[Path], metadata: ModelMetadata, source: str) -> ImageSet:
    """Decode ``paths`` for ``metadata``'s input; files that fail are skipped and listed."""
    spec = Preprocess.for_model(metadata)
    arrays, used, skipped = [], [], []
    for path in paths:
        try:
            arrays.append(decode_file(path, [spec])[0])
            used.append(str(path))
        except DecodeError as exc:
            skipped.append(str(exc))
    if not arrays:
        raise ImageSetError(f"{source}: none of {len(paths)} image files could be decoded ({skipped[0]})")
    return ImageSet(np.stack(arrays), used, skipped, source)


def photo_like(seed: int, width: int, height: int) -> np.ndarray:
    """A deterministic RGB image with gradients, stripes, blobs, blur and exposure that vary by seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    freq = rng.uniform(0.02, 0.3, size=3)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    angle = rng.uniform(0, np.pi, size=3)
    channels = []
    for c in range(3):
        t = xx * np.cos(angle[c]) + yy * np.sin(angle[c])
        channels.append(np.sin(t * freq[c] + phase[c]))
    image = np.stack(channels, axis=-1) * rng.uniform(20, 110) + rng.uniform(40, 215, size=3)
    for _ in range(int(rng.integers(1, 5))):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.05, 0.4) * min(width, height)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
        image += blob[..., None] * rng.uniform(-120, 120, size=3)
    image += rng.normal(0, rng.uniform(0, 25), image.shape)
    result = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.5:
        from PIL import ImageFilter

        result = result.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3.0)))
    return np.asarray(result)


def generated_set(count: int, metadata: ModelMetadata, first_seed: int = 0) -> ImageSet:
    """``count`` generated images written as JPEGs (sizes around 1.5x the input) and decoded."""
    size = metadata.input_size
    with tempfile.TemporaryDirectory(prefix="nima-rt-export-") as folder:
        paths = []
        for index in range(count):
            seed = first_seed + index
            width = int(size * (1.2 + 0.6 * ((seed * 7919) % 10) / 10))
            height = int(size * (1.1 + 0.5 * ((seed * 104729) % 10) / 10))
            path = Path(folder) / f"generated_{seed:06d}.jpg"
            Image.fromarray(photo_like(seed, width, height)).save(path, quality=90)
            paths.append(path)
        found = decode_paths(paths, metadata, "generated images")
    found.source = f"{count} generated images"
    return found


@dataclass
class SplitPlan:
    """Which files calibrate and which evaluate (disjoint), or generated images for either."""

    calibration: list[Path] | None
    evaluation: list[Path] | None
    calibration_source: str
    evaluation_source: str


def plan_split(calibration_dir: Path | None, evaluation_dir: Path | None,
               calibration_count: int, evaluation_count: int) -> SplitPlan:
    """Disjoint calibration and evaluation files.

    - two folders: evaluation = the evaluation folder; calibration = the calibration folder without
      any file that is also an evaluation file;
    - one folder: every ``EVAL_STRIDE``-th (2nd) file evaluates, the others calibrate;
    - none: both generated, from disjoint seeds.
    Counts cap each list (evenly spaced picks, so a sorted folder's variety is kept).
    """
    if calibration_dir is not None and evaluation_dir is not None:
        evaluation = _spread(list_images(evaluation_dir), evaluation_count)
        held_out = {os.path.realpath(p) for p in evaluation}
        calibration = [p for p in list_images(calibration_dir) if os.path.realpath(p) not in held_out]
        if not calibration:
            raise ImageSetError(f"{calibration_dir}: every image is also an evaluation image; calibration needs others")
        return SplitPlan(_spread(calibration, calibration_count), evaluation, str(calibration_dir),
                         str(evaluation_dir))
    folder = calibration_dir or evaluation_dir
    if folder is not None:
        files = list_images(folder)
        if len(files) < 2:
            raise ImageSetError(f"{folder}: needs at least 2 images to split into calibration and evaluation")
        evaluation = files[::EVAL_STRIDE]
        calibration = [p for i, p in enumerate(files) if i % EVAL_STRIDE]
        return SplitPlan(_spread(calibration, calibration_count), _spread(evaluation, evaluation_count),
                         f"{folder} (files not held out)", f"{folder} (every other file)")
    return SplitPlan(None, None, "generated", "generated")


def _spread(paths: list[Path], count: int) -> list[Path]:
    if count <= 0 or len(paths) <= count:
        return paths
    picks = np.linspace(0, len(paths) - 1, count).round().astype(int)
    return [paths[i] for i in sorted(set(picks.tolist()))]


def evaluation_set(plan: SplitPlan, metadata: ModelMetadata, count: int) -> ImageSet:
    if plan.evaluation is None:
        return generated_set(count, metadata, first_seed=GENERATED_EVAL_SEED)
    return decode_paths(plan.evaluation, metadata, plan.evaluation_source)


def calibration_set(plan: SplitPlan, metadata: ModelMetadata, count: int) -> ImageSet:
    if plan.calibration is None:
        return generated_set(count, metadata, first_seed=0)
    return decode_paths(plan.calibration, metadata, plan.calibration_source)


def verification_set(folder: Path | None, metadata: ModelMetadata, count: int) -> ImageSet:
    """Images for a parity check: a folder's files (capped at ``count``) or generated ones."""
    if folder is None:
        return generated_set(count, metadata, first_seed=GENERATED_EVAL_SEED)
    return decode_paths(_spread(list_images(folder), count), metadata, str(folder))


def batches(images: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(images), size):
        yield np.ascontiguousarray(images[start : start + size])
