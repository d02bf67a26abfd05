"""Would a JPEG draft keep idealo's aesthetic ranking? The aesthetic model on the exact path vs drafted decodes.

    python benchmarks/aesthetic_draft.py [--files 240] [--sources DIR] [--factors 2,3] [--repeats 3]

The bundled aesthetic model sees idealo's preprocessing: the full (exact) decode, then a NEAREST squash to
224. A faster decode lets libjpeg scale by 1/2, 1/4 or 1/8 in the DCT domain while both sides stay >=
``factor x 224``, then squashes the same way. For each factor the same 1-3 MP JPEGs (cpu_throughput.py's
corpus; ``--sources`` for photos of another source than the one a factor was chosen on) are scored both ways:
Spearman against the exact path over all photos and within listings (random groups of 8 photos, mean and
worst), the share of listings whose best photo stays the same, max and mean |Δ mean|, the share of photos
the draft applied to, and decode + resize rates (one thread, paired repeats, CPU model printed).

The bar (issue 24): Spearman >= 0.99 against the exact path, overall and within listings.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from cpu_throughput import cpu_model, load_average, make_corpus, source_photos
from PIL import Image

from nima_rt.contract.spec import resize_image
from nima_rt.io.decode import load_rgb
from nima_rt.io.decode_policy import jpeg_scale
from nima_rt.io.model_file import load_model_file
from nima_rt.runtime.backends import choose_backend
from nima_rt.runtime.metrics import spearman

LISTING = 8
BAR = 0.99


def decoded(files: list[Path], side: int | None, size: int, resize) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.stack([np.asarray(resize_image(load_rgb(p, draft_side=side), size, resize)) for p in files])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=240)
    parser.add_argument("--sources", type=Path, default=None)
    parser.add_argument("--factors", default="2,3")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="nima-aesthetic-draft-"))
    corpus = workdir / "corpus"
    files = sorted(corpus.glob("*.jpg")) if corpus.is_dir() else []
    if len(files) < args.files:
        files = make_corpus(source_photos(args.sources, workdir / "references"), corpus, args.files)
    files = files[: args.files]
    model = load_model_file("aesthetic")
    size, resize = model.metadata.input_size, model.metadata.resize
    backend = choose_backend(model, "cpu").backend
    factors = [int(f) for f in args.factors.split(",")]
    sides = {"exact": None, **{f"draft >= {f}x{size}": f * size for f in factors}}
    print(f"CPU: {cpu_model()}; load average {load_average()}; {len(files)} JPEGs; model aesthetic "
          f"({model.sha256[:12]}), {resize.interpolation} squash to {size}")
    means = {}
    for label, side in sides.items():
        arrays = decoded(files, side, size, resize)
        means[label] = np.concatenate([backend.run(arrays[i:i + 16]).mean for i in range(0, len(arrays), 16)])
    rates: dict[str, list[float]] = {label: [] for label in sides}
    for repeat in range(args.repeats):
        for label in list(sides)[repeat % len(sides):] + list(sides)[: repeat % len(sides)]:
            start = time.perf_counter()
            decoded(files, sides[label], size, resize)
            rates[label].append(len(files) / (time.perf_counter() - start))
    exact = means["exact"]
    order = list(range(len(files)))
    random.Random(0).shuffle(order)
    listings = [order[i:i + LISTING] for i in range(0, len(order) - LISTING + 1, LISTING)]
    print(f"\n| decode | applied to | Spearman, all | within listings: mean (worst) | same best photo | "
          f"max / mean abs d mean | images/s (1 thread, median of {args.repeats}) | passes the {BAR} bar |")
    print("|---|---|---|---|---|---|---|---|")
    for label, side in sides.items():
        ours = means[label]
        within = [spearman(ours[g], exact[g]) for g in listings]
        same = np.mean([np.argmax(ours[g]) == np.argmax(exact[g]) for g in listings])
        applied = np.mean([jpeg_scale(Image.open(p).size, side) > 1 for p in files])
        overall = spearman(ours, exact)
        delta = np.abs(ours - exact)
        passes = overall >= BAR and np.mean(within) >= BAR
        print(f"| {label} | {applied:.0%} | {overall:.4f} | {np.mean(within):.4f} ({np.min(within):.3f}) | "
              f"{same:.0%} | {delta.max():.3f} / {delta.mean():.4f} | {statistics.median(rates[label]):.1f} | "
              f"{'yes' if passes else 'no'} |")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
