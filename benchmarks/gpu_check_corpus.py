"""Inputs of ``gpu_check.py``'s decode and end-to-end steps: synthetic JPEG photos and CPU decoding."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from gpu_check_results import Check
from PIL import Image

from nima_rt.io.decode import Preprocess, decode_file


def synthetic_photo(seed: int, width: int, height: int) -> np.ndarray:
    """A photo-like image (smooth shapes, edges, texture, noise) so JPEG sizes and decode costs are real."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = []
    for c in range(3):
        fx, fy = rng.uniform(20, 200, 2)
        wave = 60 * np.sin(xx / fx + rng.uniform(0, 6)) + 60 * np.cos(yy / fy + rng.uniform(0, 6))
        ramp = 80 * (xx / width if c != 1 else yy / height)
        channels.append(110 + wave + ramp)
    image = np.stack(channels, axis=-1)
    for _ in range(6):  # hard-edged blocks
        x0, y0 = rng.integers(0, width - 8), rng.integers(0, height - 8)
        image[y0:y0 + rng.integers(8, height // 3), x0:x0 + rng.integers(8, width // 3)] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 6, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_corpus(check: Check) -> list[str]:
    if check.args.images:
        from nima_rt.io.inputs import iter_inputs

        return [item.path for item in iter_inputs([check.args.images]) if item.error is None]
    count, sizes = (32, [(320, 240), (400, 300)]) if check.args.dry_run else (2048, [(1024, 768), (1600, 1200)])
    folder = check.out / "corpus"
    folder.mkdir(parents=True, exist_ok=True)

    def write(index: int) -> str:
        width, height = sizes[index % len(sizes)]
        path = folder / f"photo_{index:05d}.jpg"
        Image.fromarray(synthetic_photo(index, width, height)).save(path, quality=85 + index % 6)
        return str(path)

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return list(pool.map(write, range(count)))


def decode_all(paths: list[str], spec: Preprocess) -> list[list[np.ndarray] | None]:
    """CPU-decoded arrays per path; None for a file the CPU decoder refuses (a user's --images folder)."""
    from nima_rt.io.decode import DecodeError

    out: list[list[np.ndarray] | None] = []
    for path in paths:
        try:
            out.append(decode_file(path, [spec]))
        except DecodeError:
            out.append(None)
    return out


def decode_rate(decode: Callable[[list[str]], Any], paths: list[str]) -> float:
    started = time.perf_counter()
    decode(paths)
    return len(paths) / (time.perf_counter() - started)
