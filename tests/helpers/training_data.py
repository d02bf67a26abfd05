"""Small generated image sets with labels that depend on something visible (for training tests).

``write_blur_set``: random shapes on a random background, Gaussian-blurred by a radius drawn
uniformly from [0, max_radius]; the label is ``mean = 8.5 - 6 * radius / max_radius`` (sharp
images score high) with std 1.0, written as a generic CSV (``path,mean,std``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def blur_image(rng: np.random.Generator, size: int, radius: float) -> Image.Image:
    background = tuple(int(v) for v in rng.integers(0, 256, 3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = (int(v) for v in rng.integers(0, size, 2))
        w, h = (int(v) for v in rng.integers(size // 10, size // 2, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
        else:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
    return image.filter(ImageFilter.GaussianBlur(radius)) if radius > 0 else image


def write_blur_set(folder: Path, count: int, size: int = 80, max_radius: float = 3.0, seed: int = 0) -> Path:
    """Write ``count`` JPEGs and ``labels.csv`` into ``folder``; return the CSV path."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        radius = float(rng.uniform(0.0, max_radius))
        name = f"blur{i:03d}.jpg"
        blur_image(rng, size, radius).save(folder / name, quality=92)
        rows.append((name, round(8.5 - 6.0 * radius / max_radius, 4), 1.0))
    labels = folder / "labels.csv"
    with labels.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "mean", "std"])
        writer.writerows(rows)
    return labels
