"""Peak memory of `nima-rt score` with default settings on the inputs issue 25 named, and how soon a run
of failing files writes its first rows.

    python benchmarks/memory_bound.py [--failing 200000] [--fuzzed 400] [--only failing,blp] [--keep DIR]

Each case is a fresh `nima-rt score FOLDER -o OUT.csv -q` process with the bundled model and default
settings. Its peak RSS comes from the kernel when it exits (wait4's ru_maxrss); its output is polled every
10 ms for the first row and for the rows written so far at the half-way time. Cases:

  failing   N three-byte .jpg files: every decode fails (issue 25 item 7: nothing reached the disk until
            the run ended, and the rows were held in memory)
  fuzzed    N small files of many formats damaged at random, and size-declaring bombs
            (tests/helpers/hostile_files.py: fuzzed_corpus)
  tall      a 173 KB PNG of 1 x 89,000,000 grey pixels (item 5: 3.27 GB before)
  rgba      a 9400 x 9400 RGBA PNG (item 5: 1.81 GB)
  float     a 9400 x 9400 float TIFF (item 5: 1.64 GB)
  grey16    a 9400 x 9400 16-bit PNG (item 5: 1.05 GB)
  blp       two 284-byte BLP2 textures declaring 1 x 84,000,000 pixels (item 6: 834 MB)
  photos    40 ordinary 1600 x 1200 JPEGs (the baseline: the model, the batches, the decode threads)

Prints a table, the CPU model and the load average before and after: the machine is shared (2 vCPUs,
other jobs running), so times move with the load; peak memory does not.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

from cpu_throughput import cpu_model  # noqa: E402
from helpers.hostile_files import blp2_declaring, flat_png, flat_tiff, fuzzed_corpus  # noqa: E402
from helpers.photos import photo_like  # noqa: E402
from PIL import Image  # noqa: E402

CASES = ("failing", "fuzzed", "tall", "rgba", "float", "grey16", "blp", "photos")


def make(case: str, folder: Path, args: argparse.Namespace) -> int:
    """Write the case's inputs into ``folder``; the number of files."""
    folder.mkdir(parents=True)
    files: dict[str, bytes] = {}
    if case == "failing":
        for index in range(args.failing):
            (folder / f"{index:07d}.jpg").write_bytes(b"\xff\xd8\xff")
        return args.failing
    if case == "fuzzed":
        files = fuzzed_corpus(args.fuzzed)
    elif case == "tall":
        files = {"tall.png": flat_png(1, 89_000_000, color_type=0)}
    elif case == "rgba":
        files = {"rgba.png": flat_png(9400, 9400, color_type=6)}
    elif case == "float":
        files = {"float.tif": flat_tiff(9400, 9400)}
    elif case == "grey16":
        files = {"grey16.png": flat_png(9400, 9400, color_type=0, bit_depth=16)}
    elif case == "blp":
        files = {f"fuzzed_{index}.blp": blp2_declaring(1, 84_000_000) for index in range(2)}
    elif case == "photos":
        for index in range(40):
            Image.fromarray(photo_like(index, 1600, 1200)).save(folder / f"{index:02d}.jpg", quality=90)
        return 40
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return len(files)


def rows_in(path: Path) -> int:
    try:
        return max(0, path.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def run(folder: Path, out: Path) -> dict[str, float]:
    """Score ``folder`` in a fresh process: its peak RSS, wall time, when its first row reached the disk and
    how many rows were there half way through."""
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "nima_rt", "score", str(folder), "-o", str(out), "-q"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=HERE.parent)
    first = None
    samples: list[tuple[float, int]] = []
    while True:
        finished, status, usage = os.wait4(process.pid, os.WNOHANG)
        now = time.monotonic() - started
        rows = rows_in(out)
        samples.append((now, rows))
        if first is None and rows:
            first = now
        if finished:
            break
        time.sleep(0.01)
    wall = time.monotonic() - started
    half = max((rows for at, rows in samples if at <= wall / 2), default=0)
    return {"peak_mb": usage.ru_maxrss / 1024, "wall_s": wall, "first_row_s": first or float("nan"),
            "rows_half_way": half, "rows": rows_in(out), "exit": os.waitstatus_to_exitcode(status)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--failing", type=int, default=200_000)
    parser.add_argument("--fuzzed", type=int, default=400)
    parser.add_argument("--only", default=",".join(CASES))
    parser.add_argument("--keep", type=Path, help="make the inputs here (kept) instead of a temporary folder")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    if args.keep is not None:
        measure(args, args.keep)
        return
    with tempfile.TemporaryDirectory(prefix="nima-rt-memory-") as root:
        measure(args, Path(root))


def measure(args: argparse.Namespace, root: Path) -> None:
    print("| case | files | exit | peak RSS (MB) | first row on disk (s) | rows half way | rows | wall (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for case in args.only.split(","):
        folder = root / case
        files = make(case, folder, args) if not folder.exists() else sum(1 for _ in folder.iterdir())
        out = root / f"{case}.csv"
        out.unlink(missing_ok=True)
        result = run(folder, out)
        print(f"| {case} | {files} | {result['exit']} | {result['peak_mb']:.0f} | {result['first_row_s']:.1f} | "
              f"{result['rows_half_way']} | {result['rows']} | {result['wall_s']:.1f} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
