"""Generated photo-like images: deterministic structure (gradients and blobs) rather than flat noise."""

from __future__ import annotations

import numpy as np


def photo_like(seed: int, width: int = 96, height: int = 64) -> np.ndarray:
    """A deterministic image with structure (gradients + blobs) rather than flat noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(xx / (7 + seed % 5)),
            128 + 100 * np.cos(yy / (5 + seed % 7)),
            (xx + yy) * 255 / (width + height),
        ],
        axis=-1,
    )
    base += rng.normal(0, 10, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)
