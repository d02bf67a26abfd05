"""Peak memory and time of `nima-rt rank` on large grouped score files: bounded by the listings, not the rows.

    python benchmarks/rank_memory.py [--rows 1000000] [--per-listing 20] [--formats csv,parquet] [--keep DIR]

Writes synthetic score files (one model, `--per-listing` photos per listing folder, listings in order, as a
folder walk or a sorted manifest writes them; scores drawn at random) with nima-rt's own writers, then runs
`nima-rt rank FILE --group-by parent --top 3 -o OUT` in a fresh interpreter per case and reads that process's
peak RSS (VmHWM from /proc/self/status at exit) and wall time. Cases, each at --rows and at a tenth of it:

  grouped      rows arrive listing by listing: the rank step holds one listing at a time
  spread       the same rows with every listing split in two far-apart halves (the first half of each
               listing, then all the second halves): a listing is held from its first row to its last, so
               memory grows with the rows in between (the documented worst case of a spread manifest)
  sort         `--sort --top 3` without grouping (holds 3 rows) as a reference

Also the peak RSS of `nima-rt --version` (the interpreter and the CLI's imports). Prints a table, the CPU
model and the load average before and after: the machine is shared (2 vCPUs, other jobs running), so
times move with the load; memory does not.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from nima_rt.io.results import ScoreBatch, ScoreColumns  # noqa: E402
from nima_rt.io.scores.open_output import open_output  # noqa: E402

CHUNK = 20_000  # rows per written batch


def paths_in_order(rows: int, per_listing: int, spread: bool) -> list[int]:
    """Row numbers in written order: listing by listing, or (``spread``) every listing's first half, then every
    second half."""
    order = list(range(rows))
    if not spread:
        return order
    first = [i for i in order if (i % per_listing) < per_listing // 2]
    return first + [i for i in order if (i % per_listing) >= per_listing // 2]


def write_scores(path: Path, rows: int, per_listing: int, spread: bool) -> None:
    """A score file of ``rows`` rows of one model ``m``: photo i is listings/L<i // per_listing>/<i>.jpg."""
    rng = np.random.default_rng(23)
    fmt = path.suffix.lstrip(".")
    opened = open_output(fmt, str(path), ["m"], overwrite=True)
    order = paths_in_order(rows, per_listing, spread)
    for start in range(0, rows, CHUNK):
        chunk = order[start: start + CHUNK]
        count = len(chunk)
        dist = rng.dirichlet(np.ones(10), size=count).astype(np.float32)
        mean = (dist * np.arange(1, 11, dtype=np.float32)).sum(axis=1).astype(np.float32)
        std = np.full(count, 1.5, np.float32)
        paths = [f"listings/L{i // per_listing:07d}/{i:08d}.jpg" for i in chunk]
        errors = [None if i % 997 else f"listings/L{i // per_listing:07d}/{i:08d}.jpg: not an image file"
                  for i in chunk]
        opened.writer.write_batch(ScoreBatch(paths, errors, {"m": ScoreColumns(mean, std, dist)}))
    opened.close()


def measure(args: list[str]) -> tuple[int, float]:
    """(peak RSS in kB, wall seconds) of `nima-rt ARGS` in a fresh interpreter."""
    with tempfile.NamedTemporaryFile("r", suffix=".kb") as report:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--child", report.name, *args], capture_output=True,
                              text=True)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"nima-rt {' '.join(args)} failed: {done.stderr.strip()}")
        return int(Path(report.name).read_text()), elapsed


def child(report: str, args: list[str]) -> None:
    """Run the CLI in this process, then write this process's peak RSS (kB) to ``report``."""
    from nima_rt.cli import app

    try:
        app(args, standalone_mode=False)
    finally:
        status = Path("/proc/self/status").read_text()
        peak = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
        Path(report).write_text(peak)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--per-listing", type=int, default=20)
    parser.add_argument("--formats", default="csv,parquet")
    parser.add_argument("--keep", type=Path, default=None, help="write the score files here (default: a temp dir)")
    options = parser.parse_args()
    load_before = os.getloadavg()
    folder = options.keep or Path(tempfile.mkdtemp(prefix="nima-rank-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"cpu: {cpu_model()}, {os.cpu_count()} cores; load average before {load_before[0]:.1f}")
    base, _ = measure(["--version"])
    print(f"`nima-rt --version` peak RSS: {base / 1024:.0f} MiB")
    print(f"{'case':<34}{'rows':>10}{'file MB':>9}{'peak RSS MiB':>14}{'over --version':>16}{'seconds':>9}")
    for fmt in options.formats.split(","):
        for rows in (options.rows // 10, options.rows):
            for case in ("grouped", "spread", "sort"):
                source = folder / f"{case if case == 'spread' else 'grouped'}-{rows}.{fmt}"
                if not source.exists():
                    write_scores(source, rows, options.per_listing, spread=case == "spread")
                ranking = ["--top", "3"] if case == "sort" else ["--group-by", "parent", "--top", "3"]
                out = folder / f"ranked-{case}-{rows}.{fmt}"
                peak, seconds = measure(["rank", str(source), *ranking, "-o", str(out), "--overwrite", "-q"])
                size = source.stat().st_size / 1e6
                print(f"{fmt + ' ' + case:<34}{rows:>10,}{size:>9.0f}{peak / 1024:>14.0f}"
                      f"{(peak - base) / 1024:>16.0f}{seconds:>9.1f}", flush=True)
    print(f"load average after {os.getloadavg()[0]:.1f} (before {load_before[0]:.1f}); files in {folder}")


if __name__ == "__main__":
    main()
