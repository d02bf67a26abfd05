"""Compare a candidate model's scores with a reference on the same decoded images.

The reference is the checkpoint's PyTorch :class:`ContractModule` (or, when exporting from an ONNX
file, the float32 ONNX graph); candidates are the exported ONNX (fp32/fp16/INT8) or a TensorRT
engine. Both see the same uint8 batches, so every difference is the model's, not the decoder's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nima_rt.contract.spec import ContractError
from nima_rt.export.images import ImageSet, batches
from nima_rt.runtime.metrics import spearman

# Largest |Δ mean score| over the verification images a precision may show against float32 PyTorch.
TOLERANCES = {"fp32": 1e-4, "fp16": 0.02}
# INT8 is judged by ranking: the Spearman correlation of its mean scores with float32's, on at least
# INT8_MIN_IMAGES held-out images. On 12 images a Spearman of 0.993 was measured for a file whose Spearman
# on all 88 photos of the set was 0.982: at that size a few swapped pairs decide the verdict.
INT8_MIN_SPEARMAN = 0.99
INT8_MIN_IMAGES = 50
VERIFY_BATCH = 16

ScoreFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


class VerificationFailed(ContractError):
    """A candidate's scores drifted beyond the tolerance for its precision."""


@dataclass(frozen=True)
class Drift:
    """How far a candidate's scores are from the reference's on ``count`` images."""

    count: int
    max_abs_mean: float  # max |Δ mean score|
    mean_abs_mean: float  # mean |Δ mean score|
    max_abs_std: float
    max_abs_dist: float  # max |Δ probability| over all bins
    spearman: float  # rank correlation of the mean scores (nan when either side is constant)
    reference_spread: float  # max - min of the reference mean scores (how much there is to rank)

    def line(self, label: str) -> str:
        spearman = "n/a (constant scores)" if np.isnan(self.spearman) else f"{self.spearman:.4f}"
        return (
            f"{label}: {self.count} images, max |Δ mean| {self.max_abs_mean:.2e}, mean |Δ mean| "
            f"{self.mean_abs_mean:.2e}, max |Δ std| {self.max_abs_std:.2e}, max |Δ dist| {self.max_abs_dist:.2e}, "
            f"Spearman {spearman} (reference scores span {self.reference_spread:.3f})"
        )


def score_all(fn: ScoreFn, images: np.ndarray, batch: int = VERIFY_BATCH) -> tuple[np.ndarray, ...]:
    """Run ``fn`` over ``images`` in batches and concatenate (dist, mean, std)."""
    parts = [fn(chunk) for chunk in batches(images, batch)]
    return tuple(np.concatenate([np.asarray(p[i], dtype=np.float64) for p in parts]) for i in range(3))


def measure(reference: ScoreFn, candidate: ScoreFn, images: ImageSet, batch: int = VERIFY_BATCH) -> Drift:
    """Score ``images`` with both and summarise the differences."""
    ref_dist, ref_mean, ref_std = score_all(reference, images.images, batch)
    dist, mean, std = score_all(candidate, images.images, batch)
    delta = np.abs(mean - ref_mean)
    return Drift(
        count=len(ref_mean),
        max_abs_mean=float(delta.max()),
        mean_abs_mean=float(delta.mean()),
        max_abs_std=float(np.abs(std - ref_std).max()),
        max_abs_dist=float(np.abs(dist - ref_dist).max()),
        spearman=spearman(ref_mean, mean),
        reference_spread=float(np.ptp(ref_mean)),
    )


def check_tolerance(drift: Drift, precision: str, label: str, force: bool = False) -> str | None:
    """Raise :class:`VerificationFailed` when ``drift`` exceeds the tolerance of ``precision``.

    ``force`` lets fp16 (and INT8) through, returning the failure as a warning; float32 beyond 1e-4
    means a broken export and is never forced.
    """
    if precision == "int8":
        return check_int8(drift, label, force)
    tolerance = TOLERANCES[precision]
    if drift.max_abs_mean <= tolerance:  # nan fails too
        return None
    reason = (f"{label}: {precision} scores differ from the reference by up to {drift.max_abs_mean:.3g} "
              f"(tolerance {tolerance:g}) on {drift.count} images")
    if force and precision == "fp16":
        return f"{reason}; written anyway (--force)"
    raise VerificationFailed(reason)


def int8_too_few(count: int, label: str) -> str | None:
    """Why ``count`` held-out images are too few for the INT8 gate to be trusted, or None."""
    if count >= INT8_MIN_IMAGES:
        return None
    return (f"{label}: INT8 would be judged on {count} held-out images, fewer than the {INT8_MIN_IMAGES} its "
            f"Spearman bar needs to be trusted; give more photos (--verify-images DIR, or one folder of at least "
            f"{2 * INT8_MIN_IMAGES} files: every 2nd file evaluates) or leave both folders out for generated images")


def int8_refusal(drift: Drift, label: str) -> str | None:
    """Why an INT8 model fails the gate (too few images, or a ranking below the bar), or None."""
    measured = "undefined (constant scores)" if np.isnan(drift.spearman) else f"{drift.spearman:.4f}"
    too_few = int8_too_few(drift.count, label)
    if too_few is not None:
        return f"{too_few} (Spearman {measured} on those)"
    if drift.spearman >= INT8_MIN_SPEARMAN:
        return None
    return (
        f"{label}: INT8 Spearman {measured} against float32 on {drift.count} held-out images is below "
        f"{INT8_MIN_SPEARMAN} (mean |Δ mean| {drift.mean_abs_mean:.3g}); calibrate with more representative "
        "images (--calibration-images) or use fp16"
    )


def check_int8(drift: Drift, label: str, force: bool) -> str | None:
    """Raise unless INT8 meets the gate; with ``force`` return the refusal as a warning instead."""
    reason = int8_refusal(drift, label)
    if reason is None:
        return None
    if not force:
        raise VerificationFailed(f"{reason}; not written (--force writes it anyway)")
    return f"{reason}; written anyway (--force)"


def torch_scores(module: object) -> ScoreFn:
    """A ScoreFn running a PyTorch ContractModule on CPU."""
    import torch

    def run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.no_grad():
            dist, mean, std = module(torch.from_numpy(np.ascontiguousarray(images)))
        return dist.numpy(), mean.numpy(), std.numpy()

    return run


def onnx_scores(path: Path, threads: int | None = None) -> tuple[ScoreFn, Callable[[], None]]:
    """A ScoreFn running a contract ONNX file through the runtime's own ONNX Runtime backend.

    Loading it this way also proves the runtime accepts the file (metadata, input and outputs).
    Returns the function and a ``close``.
    """
    from nima_rt.io.model_file import load_model_file
    from nima_rt.runtime.backends.base import BackendOptions
    from nima_rt.runtime.backends.onnxruntime_backend import create

    backend = create(load_model_file(path), BackendOptions(threads=threads))

    def run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = backend.run(images)
        return out.dist, out.mean, out.std

    return run, backend.close
