"""Effect of JPEG DCT-domain downscaling (`Image.draft`) on a trained model's scores, and its speed-up.

    python benchmarks/draft_effect.py [--model technical] [--files 300] [--sources DIR]

Scores the same JPEG corpus (cpu_throughput.py's: 1-3 MP crops of real photos, quality 80-95) twice with
one model: decoded in full then resized, and decoded with the draft then resized. Prints the max and mean
|delta mean score|, the Spearman correlation of the two rankings, and both decode rates (one thread).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from cpu_throughput import make_corpus, source_photos

from nima_rt.io.decode import Preprocess, decode_file
from nima_rt.io.model_file import load_model_file
from nima_rt.runtime.backends import choose_backend
from nima_rt.runtime.metrics import spearman


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="technical")
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--sources", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="nima-draft-"))
    corpus = workdir / "corpus"
    files = sorted(corpus.glob("*.jpg")) if corpus.is_dir() else []
    if len(files) < args.files:
        files = make_corpus(source_photos(args.sources, workdir / "references"), corpus, args.files)
    files = files[: args.files]

    model = load_model_file(args.model)
    backend = choose_backend(model, "cpu").backend
    means = {}
    rates = {}
    for label, draft in (("full", False), ("draft", True)):
        spec = [Preprocess.for_model(model.metadata).with_draft(draft)]
        start = time.perf_counter()
        arrays = [decode_file(p, spec)[0] for p in files]
        rates[label] = len(files) / (time.perf_counter() - start)
        out = [backend.run(np.stack(arrays[i : i + 32])).mean for i in range(0, len(arrays), 32)]
        means[label] = np.concatenate(out)
    delta = np.abs(means["full"] - means["draft"])
    print(f"model {model.name} ({model.metadata.backbone}), {len(files)} JPEGs")
    print("| decode | images/s (1 thread) |")
    print("|---|---|")
    for label, rate in rates.items():
        print(f"| {label} | {rate:.1f} |")
    print(f"score range (full decode): {means['full'].min():.3f} .. {means['full'].max():.3f}, "
          f"std {means['full'].std():.3f}")
    print(f"|delta mean|: max {delta.max():.4f}, mean {delta.mean():.4f}; "
          f"Spearman(full, draft) = {spearman(means['full'], means['draft']):.4f}")


if __name__ == "__main__":
    main()
