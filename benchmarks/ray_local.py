"""Ray Data engine in local mode against the in-process runner, on the same photos and model.

    python benchmarks/ray_local.py [--files 400] [--model FILE.onnx] [--cpus 2]

Measures, on one machine:
  decode     nima-rt's decoder alone (JPEG draft + resize), 1 thread and --cpus threads
  local      the in-process Scorer end to end (thread-pool decode + batched inference)
  ray        `score_with_ray` with a local Ray of --cpus CPUs: decode tasks -> actor pool -> Parquet
             shards (wall time of the run incl. actor start-up, and the steady rate between the first
             and the last shard written; ray.init is reported separately)
Model: a 224 px tiny contract model (inference nearly free, so the figures are the pipeline's own
cost: decode + Ray's transport), or --model for a real one. Photos: 1-3 MP JPEGs cut from the
scikit-image sample photographs (no download) by benchmarks/cpu_throughput.py's make_corpus.
Prints a table and the load average (the host is shared: a busy neighbour halves a 2-core figure).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from cpu_throughput import decode_rate, make_corpus  # noqa: E402

from nima_rt import Scorer, ScorerConfig  # noqa: E402


def sample_photos(folder: Path) -> list[Path]:
    """Real photographs shipped inside scikit-image (no network)."""
    import skimage.data as data

    paths = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "motorcycle"):
        loader = getattr(data, name, None) or (lambda: data.stereo_motorcycle()[0])
        path = folder / f"{name}.png"
        Image.fromarray(loader()).save(path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--model", default=None, help="contract model (default: a 224 px tiny model)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--shard-size", type=int, default=100)
    args = parser.parse_args()

    import ray

    from nima_rt.apps.distributed import RayScoreConfig, score_with_ray

    work = Path(tempfile.mkdtemp(prefix="nima-ray-bench-"))
    try:
        model = args.model
        if model is None:
            from helpers.tiny_models import write_tiny_model

            model = str(write_tiny_model(work / "tiny224.onnx", name="tiny", size=224))
        (work / "sources").mkdir()
        files = make_corpus(sample_photos(work / "sources"), work / "photos", args.files)
        megabytes = sum(f.stat().st_size for f in files) / 1e6
        pixels = sum(Image.open(f).size[0] * Image.open(f).size[1] for f in files)
        print(f"corpus: {len(files)} JPEGs, {pixels / len(files) / 1e6:.2f} MP and "
              f"{megabytes * 8e6 / pixels:.2f} bits/pixel on average; load average {os.getloadavg()[0]:.2f}")
        rows = []
        rows.append(("decode, 1 thread", decode_rate(files, model, 1)))
        rows.append((f"decode, {args.cpus} threads", decode_rate(files, model, args.cpus)))
        start = time.perf_counter()
        with Scorer([model], ScorerConfig(workers=args.cpus, threads=args.cpus)) as scorer:
            count = sum(1 for _ in scorer.score_paths([work / "photos"]))
        rows.append(("local engine (in-process Scorer)", count / (time.perf_counter() - start)))
        start = time.perf_counter()
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, logging_level=logging.WARNING)
        init_s = time.perf_counter() - start
        try:
            config = RayScoreConfig(output=str(work / "out"), models=(model,), shard_size=args.shard_size)
            stamps: list[tuple[float, int]] = []
            summary = score_with_ray([str(work / "photos")], config,
                                     on_shard=lambda done: stamps.append((time.perf_counter(), done.rows)))
        finally:
            ray.shutdown()
        rows.append((f"ray engine, local mode ({summary.plan.describe() if summary.plan else '-'})",
                     summary.rows / summary.elapsed_s))
        if len(stamps) > 2:  # steady state: from the first shard written to the last, start-up excluded
            steady = sum(n for _, n in stamps[1:]) / (stamps[-1][0] - stamps[0][0])
            rows.append(("ray engine, local mode, steady state (first shard to last)", steady))
        print(f"ray.init: {init_s:.1f} s; ray run wall time {summary.elapsed_s:.1f} s for {summary.rows} rows")
        operator = ""
        for line in summary.stats.splitlines():  # Ray's own per-task rates: remote wall time, no scheduling
            if line.startswith("Operator"):
                operator = line.split(":")[0]
            elif "Estimated single task throughput" in line and "MapBatches" in operator:
                print(f"{operator}: {line.strip()[2:]}")
        print(f"{'stage':<100} images/s")
        for name, rate in rows:
            print(f"{name:<100} {rate:8.1f}")
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
