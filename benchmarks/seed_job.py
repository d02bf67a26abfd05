"""The seed's job, timed: nima-rt's default two-model run against idealo's own Keras predict path.

    python benchmarks/seed_job.py [--files 300] [--repeats 3] [--sources DIR] [--weights idealo.hdf5]

The same 1-3 MP JPEGs (cpu_throughput.py's corpus: crops of real photos at quality 80-95) are scored by:

  keras-2      idealo's predict path (``load_img(target_size=(224, 224))``, ``mobilenet.preprocess_input``,
               ``model.predict``, batches of 64) running two MobileNet NIMA models one after the other, each
               loading the images as idealo's predict code does (the aesthetic weights twice: the second
               model's cost is the same whatever its weights); tensorflow-cpu's default threads
  keras-1      the same with one model (the aesthetic one)
  nima-rt      ``python -m nima_rt score DIR`` in a fresh process: the default job (``aesthetic`` and
               ``technical``, no --model); ``nima-rt aesthetic`` and ``nima-rt technical``: one model each

Variants are interleaved (each repeat runs all of them, in a rotated order) so a shared machine's load moves
them together; ratios are taken per repeat (paired) and their median printed. Rates: images/s of the scoring
itself (nima-rt: its summary line; Keras: from the first image load to the last prediction, model
construction excluded); nima-rt's whole process (start-up included) is printed beside it. The CPU model and
the load average before and after are printed; targets are printed and judged, never asserted.

Also checked on the corpus: the default job's aesthetic scores equal ``--model aesthetic`` alone bit for bit
(a model's scores never depend on the other models), and both equal Keras within 1e-3 (the exact path).
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # helpers.keras_nima: idealo's Keras model and predict preprocessing
sys.path.insert(0, str(ROOT / "tools"))  # ship_aesthetic: idealo's weights, fetched and checked

from cpu_throughput import cli_rate, cpu_model, load_average, make_corpus, run_cli, source_photos  # noqa: E402

TARGET_VS_KERAS = 4.0
KERAS_BATCH = 64
VARIANTS = ("keras-2", "keras-1", "nima-rt", "nima-rt aesthetic", "nima-rt technical")
CLI_MODELS = {"nima-rt": [], "nima-rt aesthetic": ["--model", "aesthetic"],
              "nima-rt technical": ["--model", "technical"]}


def keras_run(model, files: list[Path], copies: int) -> float:  # type: ignore[no-untyped-def]
    """images/s of idealo's predict path with ``copies`` models, each loading the images itself."""
    from helpers.keras_nima import keras_inputs

    start = time.perf_counter()
    for _ in range(copies):
        for i in range(0, len(files), KERAS_BATCH):
            model.predict(keras_inputs(files[i:i + KERAS_BATCH]), verbose=0)
    return len(files) / (time.perf_counter() - start)


def cli_scores(folder: Path, models: list[str]) -> dict[str, dict[str, float]]:
    out = subprocess.run([sys.executable, "-m", "nima_rt", "score", str(folder), *models, "-q"], capture_output=True,
                         text=True, check=True)
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    columns = [c.removesuffix("_mean") for c in rows[0] if c.endswith("_mean")]
    return {c: {row["path"]: float(row[f"{c}_mean"]) for row in rows} for c in columns}


def checks(folder: Path, files: list[Path], model) -> None:  # type: ignore[no-untyped-def]
    from helpers.keras_nima import keras_inputs

    together = cli_scores(folder, [])
    alone = cli_scores(folder, ["--model", "aesthetic"])
    technical = cli_scores(folder, ["--model", "technical"])
    same = together["aesthetic"] == alone["aesthetic"] and together["technical"] == technical["technical"]
    dist = np.concatenate([model.predict(keras_inputs(files[i:i + KERAS_BATCH]), verbose=0)
                           for i in range(0, len(files), KERAS_BATCH)]).astype(np.float64)
    keras_mean = dist @ np.arange(1, 11)
    ours = np.array([together["aesthetic"][str(folder / p.name)] for p in files])  # the run scored the job folder
    print(f"default job vs each model alone, {len(files)} JPEGs: aesthetic and technical scores "
          f"{'identical (CSV, 6 decimals)' if same else 'DIFFER'}")
    print(f"default job's aesthetic vs Keras (exact path): max |d mean| {np.abs(ours - keras_mean).max():.2e}, "
          f"mean {np.abs(ours - keras_mean).mean():.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sources", type=Path, default=None, help="photos to cut the corpus from (default: Debian)")
    parser.add_argument("--weights", type=Path, default=None, help="idealo's aesthetic .hdf5 (default: fetched)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    from helpers.keras_nima import idealo_model
    from ship_aesthetic import fetch_idealo_weights

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="nima-seed-job-"))
    corpus = workdir / "corpus"
    files = sorted(corpus.glob("*.jpg")) if corpus.is_dir() else []
    if len(files) < args.files:
        files = make_corpus(source_photos(args.sources, workdir / "references"), corpus, args.files)
    files = files[: args.files]
    folder = workdir / "job"
    if not folder.is_dir():
        folder.mkdir()
        for path in files:
            (folder / path.name).hardlink_to(path)
    weights = args.weights or fetch_idealo_weights(workdir / "weights")
    model = idealo_model(weights)
    megapixels = statistics.mean(_megapixels(p) for p in files)
    print(f"CPU: {cpu_model()}; load average before: {load_average()}")
    print(f"corpus: {len(files)} JPEGs, {megapixels:.2f} MP on average; repeats: {args.repeats}")
    model.predict(np.zeros((2, 224, 224, 3), np.float32), verbose=0)  # warm up TensorFlow
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    walls: dict[str, list[float]] = {v: [] for v in CLI_MODELS}
    for repeat in range(args.repeats):
        order = VARIANTS[repeat % len(VARIANTS):] + VARIANTS[: repeat % len(VARIANTS)]
        for variant in order:
            if variant.startswith("keras"):
                rates[variant].append(keras_run(model, files, 2 if variant == "keras-2" else 1))
            else:
                out = workdir / f"scores-{variant.replace(' ', '-')}-{repeat}.csv"
                out.unlink(missing_ok=True)
                wall, _, stderr = run_cli(["score", str(folder), *CLI_MODELS[variant], "-o", str(out)])
                rates[variant].append(cli_rate(stderr))
                walls[variant].append(len(files) / wall)
        print(f"repeat {repeat + 1}: " + ", ".join(f"{v} {rates[v][-1]:.1f}" for v in VARIANTS), flush=True)
    print("\n| variant | images/s (median) | per repeat | whole process |\n|---|---|---|---|")
    for variant in VARIANTS:
        whole = f"{statistics.median(walls[variant]):.1f}" if variant in walls else "-"
        print(f"| {variant} | {statistics.median(rates[variant]):.1f} | "
              f"{' '.join(f'{r:.1f}' for r in rates[variant])} | {whole} |")
    pairs = {"default job (2 models) vs keras-2": ("nima-rt", "keras-2"),
             "nima-rt aesthetic vs keras-1": ("nima-rt aesthetic", "keras-1"),
             "nima-rt technical vs keras-1": ("nima-rt technical", "keras-1")}
    print("\n| ratio (paired, per repeat) | median | per repeat |\n|---|---|---|")
    for label, (ours, theirs) in pairs.items():
        ratios = [a / b for a, b in zip(rates[ours], rates[theirs], strict=True)]
        print(f"| {label} | {statistics.median(ratios):.2f}x | {' '.join(f'{r:.2f}' for r in ratios)} |")
    default_ratio = statistics.median(a / b for a, b in zip(rates["nima-rt"], rates["keras-2"], strict=True))
    verdict = "met" if default_ratio >= TARGET_VS_KERAS else "NOT met"
    print(f"\ntarget: default job >= {TARGET_VS_KERAS:g}x idealo's Keras predict with two models: {verdict} "
          f"({default_ratio:.2f}x)")
    print(f"load average after: {load_average()}")
    checks(folder, files, model)


def _megapixels(path: Path) -> float:
    from PIL import Image

    with Image.open(path) as image:
        return image.size[0] * image.size[1] / 1e6


if __name__ == "__main__":
    main()
