"""Which CPU schedule and batch `nima-rt score` should default to: every candidate on one folder, interleaved.

    python benchmarks/cpu_schedule.py [--files 400] [--repeats 3] [--sources PHOTOS] [--workdir DIR]

Each candidate is a set of `nima-rt score` options (batch size, streams, threads, decode workers);
each repeat runs all of them in a rotated order over the same corpus as benchmarks/cpu_throughput.py.
Per candidate: steady-state images/s (the CLI's summary line), whole-process images/s, peak RSS (the
child's VmHWM) and CPU milliseconds per image (the child's user + system time: on a shared machine the
one figure the neighbours barely move). The defaults in nima_rt/runtime/scorer.py and nima_rt/runtime/cpu_plan.py come
from this table (docs/reference/benchmarks.md).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from cpu_throughput import (
    children_cpu_s,
    cli_rate,
    cpu_model,
    load_average,
    make_corpus,
    quick_corpus,
    run_cli,
    source_photos,
)

from nima_rt.io.model_file import ModelNotFound
from nima_rt.io.variants import int8_variant

CANDIDATES = {
    "1 stream x 2 threads, batch 16 (before)": ["--streams", "1", "-b", "16"],
    "1 stream x 2 threads, batch 8": ["--streams", "1", "-b", "8"],
    "1 stream x 2 threads, batch 4": ["--streams", "1", "-b", "4"],
    "2 streams x 1 thread, batch 16": ["-b", "16"],
    "2 streams x 1 thread, batch 8": ["-b", "8"],
    "2 streams x 1 thread, batch 4": ["-b", "4"],
    "2 streams x 1 thread, batch 4, 1 decoder": ["-b", "4", "-w", "1"],
    "1 stream x 1 thread, batch 4": ["--threads", "1", "-b", "4"],
}
INT8_CANDIDATE = ("int8 (--precision int8), 2 streams x 1 thread, batch 4", ["--precision", "int8", "-b", "4"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None)
    parser.add_argument("--sources", type=Path, default=None, help="folder of real photos to cut the corpus from")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="generated photos, 16 files, 1 repeat")
    parser.add_argument("--only", nargs="*", default=None,
                        help="run only the candidates whose name starts with one of these (e.g. '2 streams')")
    args = parser.parse_args(argv)
    candidates = dict(CANDIDATES)
    try:
        int8_variant(args.model)
        candidates[INT8_CANDIDATE[0]] = INT8_CANDIDATE[1]
    except ModelNotFound:  # no INT8 copy of this model: no INT8 row
        pass
    if args.only is not None:
        candidates = {n: c for n, c in candidates.items() if any(n.startswith(prefix) for prefix in args.only)}
    if args.quick:
        args.files, args.repeats = 16, 1
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="nima-sched-"))
    corpus = workdir / ("quick" if args.quick else "corpus")
    files = sorted(corpus.glob("*.jpg")) if corpus.is_dir() else []
    if len(files) != args.files:
        for old in files:
            old.unlink()
        files = (quick_corpus(corpus, args.files) if args.quick
                 else make_corpus(source_photos(args.sources, workdir / "references"), corpus, args.files))
    print(f"CPU: {cpu_model()}; load average {load_average()} at the start; {len(files)} files", flush=True)
    model_args = ["--model", args.model] if args.model else []
    figures: dict[str, dict[str, list[float]]] = {name: {"rate": [], "wall": [], "rss": [], "cpu_ms": []}
                                                  for name in candidates}
    names = list(candidates)
    for repeat in range(args.repeats):
        for index in range(len(names)):
            name = names[(index + repeat) % len(names)]
            before = children_cpu_s()
            wall, rss, stderr = run_cli(["score", str(corpus), *model_args, *candidates[name],
                                         "-o", str(workdir / "scores.csv"), "--overwrite"])
            figures[name]["cpu_ms"].append((children_cpu_s() - before) * 1000 / len(files))
            figures[name]["rate"].append(cli_rate(stderr))
            figures[name]["wall"].append(len(files) / wall)
            figures[name]["rss"].append(rss)
    print(f"load average {load_average()} at the end")
    print()
    print(f"| schedule ({args.repeats} interleaved repeats, median) | images/s steady | whole process | "
          "CPU ms / image | peak RSS MB |")
    print("|---|---|---|---|---|")
    for name, values in figures.items():
        print(f"| {name} | {statistics.median(values['rate']):.1f} | {statistics.median(values['wall']):.1f} | "
              f"{statistics.median(values['cpu_ms']):.2f} | {max(values['rss']):.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
