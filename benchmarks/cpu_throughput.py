"""CPU throughput of `nima-rt score` against the peers' loops and against a measured ceiling, in one run.

    python benchmarks/cpu_throughput.py [--model technical] [--files 400] [--repeats 3] [--rss-files 4000]
    python benchmarks/cpu_throughput.py --quick   # seconds; what CI runs (tests/benchmarks/test_cpu_benchmark.py)

Every variant scores the same photo folder; the variants are interleaved (each repeat runs all of them,
in a rotated order) so that a shared machine's load moves them together and the ratios hold:

  eager        the peers' loop (pyiqa / nima.pytorch style): Pillow open, torchvision Resize/CenterCrop/
               ToTensor/Normalize, eager PyTorch, one image at a time, same backbone (random weights), torch's
               default threads (one per core); eager-1thread: the same with one torch thread, which is the
               faster of the two on a busy machine (OpenMP threads waiting for each other). Ratios are taken
               against the faster eager row, so they never flatter nima-rt
  dataloader   the same transforms in a torch DataLoader (one worker per core, batch 16), eager PyTorch
  naive-ort    full Pillow decode + resize, one image per call of an ONNX Runtime session with default options
  nima-rt      `python -m nima_rt score DIR` in a fresh process (fp32, and `--precision int8` when the
               bundled model has an INT8 copy): steady-state images/s from its summary line, and the whole
               process (start-up included) from the wall clock

The ceiling is measured, not modelled: the CPU time one image costs (process CPU time over all threads)
for nima-rt's decode (JPEG draft + resize, a thread per core) and for inference (a 1-thread ONNX
Runtime session run from one thread per core at nima-rt's batch size, all at once: the cheapest shape,
with every core busy). With every core busy on exactly that work and nothing else, a machine with C cores scores
C / (cpu_s_decode + cpu_s_infer) images per second.

Also: peak RSS (the child's VmHWM) of the main run and of a run over --rss-files files (hard links to
the corpus; flat memory means the two agree), the wall time of a 1-image folder (first row), the CPU
model and the load average before and after. Targets are printed and judged, never asserted.

Photos: 1-3 MP JPEGs at quality 80-95 cut from real photographs (Debian wallpaper packages, fetched
offline by nima_rt.train.datasets.references) or from any folder via --sources; --quick generates small ones.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from nima_rt.contract.spec import INPUT_NAME, OUTPUT_NAMES, Preprocess
from nima_rt.io.decode import decode_file
from nima_rt.io.model_file import ModelFile, load_model_file
from nima_rt.io.variants import int8_variant
from nima_rt.runtime.backends.onnxruntime_backend import session_options
from nima_rt.runtime.scorer import DEFAULT_BATCH_SIZE

SIZES_MP = (1.0, 1.5, 2.0, 3.0)
TARGETS = {"vs_eager": 7.0, "of_ceiling": 0.9, "peak_rss_mb": 300.0, "first_row_s": 0.6}


@dataclass
class Row:
    """One variant over the repeats: images/s per repeat (and notes)."""

    name: str
    rates: list[float] = field(default_factory=list)
    wall_rates: list[float] = field(default_factory=list)  # nima-rt: whole process incl. start-up
    peak_rss_mb: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # nima-rt: the child's CPU ms per image (user + system)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


# -- machine ----------------------------------------------------------------------------------------

def cpu_model() -> str:
    """The CPU's model name and the vector extensions that matter for ONNX Runtime's kernels."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                "unknown CPU")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return f"{name} ({', '.join(wanted) or 'no AVX2'})"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


# -- corpus -----------------------------------------------------------------------------------------

def source_photos(sources: Path | None, cache: Path) -> list[Path]:
    """Real photographs of at least 2 MP to cut the corpus from (crops of them are not upscaled)."""
    if sources is None:
        from nima_rt.train.datasets.references import fetch_references  # Debian wallpapers via apt-get download

        sources = fetch_references(cache).parent / "photos"
    photos = []
    for path in sorted(sources.rglob("*")):
        if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
            with Image.open(path) as image:
                if image.size[0] * image.size[1] >= 2e6:
                    photos.append(path)
    if not photos:
        raise SystemExit(f"error: {sources}: no .jpg/.jpeg/.png photos of 2 MP or more found")
    return photos


def make_corpus(sources: list[Path], out: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` JPEGs of 1-3 MP at quality 80-95, each a random crop of a real photo."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    opened = [Image.open(p).convert("RGB") for p in sources]
    files = []
    for index in range(count):
        image = opened[index % len(opened)]
        megapixels = rng.choice(SIZES_MP)
        aspect = rng.choice((4 / 3, 3 / 2, 16 / 9))
        height = int((megapixels * 1e6 / aspect) ** 0.5)
        width = int(height * aspect)
        scale = max(width / image.width, height / image.height, 1.0)
        source = image if scale == 1.0 else image.resize((int(image.width * scale) + 1, int(image.height * scale) + 1))
        left = rng.randint(0, source.width - width)
        top = rng.randint(0, source.height - height)
        path = out / f"photo_{index:05d}.jpg"
        source.crop((left, top, left + width, top + height)).save(path, quality=rng.randint(80, 95))
        files.append(path)
    return files


def quick_corpus(out: Path, count: int) -> list[Path]:
    """Small generated photo-like JPEGs (--quick: no package download, seconds to score)."""
    from nima_rt.export.images import photo_like

    out.mkdir(parents=True, exist_ok=True)
    files = []
    for index in range(count):
        path = out / f"photo_{index:05d}.jpg"
        Image.fromarray(photo_like(index, 480, 360)).save(path, quality=90)
        files.append(path)
    return files


# -- the peers' loops ---------------------------------------------------------------------------------

def peer_network(model: ModelFile, backbone: str | None):
    """The model's backbone in eager PyTorch with the transforms the peers use; None without torch."""
    try:
        import torch
        from torchvision import transforms
    except ImportError:
        return None
    from nima_rt.train.model.network import ModelConfig, normalization_for
    from nima_rt.train.model.pretrained import build_network

    size = model.metadata.input_size
    config = ModelConfig(backbone=backbone or model.metadata.backbone or "mobilenet_v2", image_size=size)
    network = build_network(config, "none").eval()
    norm = normalization_for(config)
    transform = transforms.Compose([
        transforms.Resize(round(size * 256 / 224)), transforms.CenterCrop(size), transforms.ToTensor(),
        transforms.Normalize(norm.mean, norm.std),
    ])
    return torch, network, transform


class _PeerDataset:
    def __init__(self, files: list[Path], transform) -> None:
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        with Image.open(self.files[index]) as image:
            return self.transform(image.convert("RGB"))


def eager_loop(peer, files: list[Path], cores: int) -> float:
    torch, network, transform = peer
    torch.set_num_threads(cores)
    with torch.no_grad(), Image.open(files[0]) as first:  # warm-up: the first call allocates
        network(transform(first.convert("RGB"))[None])
    start = time.perf_counter()
    with torch.no_grad():
        for path in files:
            with Image.open(path) as image:
                network(transform(image.convert("RGB"))[None])
    return len(files) / (time.perf_counter() - start)


def dataloader_loop(peer, files: list[Path], cores: int) -> float:
    torch, network, transform = peer
    torch.set_num_threads(cores)
    loader = torch.utils.data.DataLoader(_PeerDataset(files, transform), batch_size=16, num_workers=cores)
    with torch.no_grad(), Image.open(files[0]) as first:  # warm-up, as the eager loop
        network(transform(first.convert("RGB"))[None])
    start = time.perf_counter()  # worker start-up counts: a peer's run pays it too
    with torch.no_grad():
        for batch in loader:
            network(batch)
    return len(files) / (time.perf_counter() - start)


def naive_ort_loop(model: ModelFile, files: list[Path]) -> float:
    """Full decode, resize, one image per call of a default-options session, one file after another."""
    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    size = model.metadata.input_size
    start = time.perf_counter()
    for path in files:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.asarray(rgb, dtype=np.uint8)[None]})
    return len(files) / (time.perf_counter() - start)


# -- nima-rt ----------------------------------------------------------------------------------------

def run_cli(args: list[str]) -> tuple[float, float, str]:
    """Run `python -m nima_rt ...`; return (wall seconds, peak RSS MB, stderr).

    Peak RSS is the child's VmHWM polled from /proc (reset at exec), not wait4's ru_maxrss, which
    also counts the pages the child shared with this (large) benchmark process between fork and exec.
    """
    with tempfile.TemporaryFile(mode="w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "nima_rt", *args], stdout=subprocess.DEVNULL, stderr=err)
        peak_kb = 0
        while process.poll() is None:
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
                peak_kb = max(peak_kb, int(status.split("VmHWM:")[1].split()[0]))
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.02)
        wall = time.perf_counter() - start
        err.seek(0)
        stderr = err.read()
    if process.returncode != 0:
        raise SystemExit(f"error: nima-rt {' '.join(args)} failed:\n{stderr}")
    return wall, peak_kb / 1024, stderr


def children_cpu_s() -> float:
    """User + system seconds of the waited-for children so far (a delta around one run is that run's)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli_rate(stderr: str) -> float:
    """images/s from the CLI's summary line ("scored N, failed M in T s (R images/s)")."""
    for line in reversed(stderr.splitlines()):
        if line.startswith("scored ") and "images/s" in line:
            return float(line.rsplit("(", 1)[1].split()[0])
    raise SystemExit(f"error: no summary line in nima-rt output:\n{stderr}")


# -- the ceiling --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ceiling:
    cpu_ms_decode: float  # CPU milliseconds per image, all threads
    cpu_ms_infer: float
    cores: int

    @property
    def images_per_s(self) -> float:
        return self.cores * 1000 / (self.cpu_ms_decode + self.cpu_ms_infer)


def decode_cpu_ms(files: list[Path], spec: Preprocess, workers: int) -> float:
    start = time.process_time()
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(lambda p: decode_file(p, [spec]), files):
            pass
    return (time.process_time() - start) * 1000 / len(files)


def infer_cpu_ms(path: Path, batch: np.ndarray, runs: int, cores: int) -> float:
    """CPU ms per image of inference with every core busy: one 1-thread session (no spinning) run from one
    thread per core, batches of this size at the same time, as nima-rt runs it (with both cores busy an
    image costs 5-15% more CPU than beside an idle core, measured; the ceiling must include that)."""
    session = ort.InferenceSession(str(path), session_options(1, memory_pattern=False),
                                   providers=["CPUExecutionProvider"])
    session.run(None, {INPUT_NAME: batch})  # warm-up
    start = time.process_time()
    with ThreadPoolExecutor(cores) as pool:
        list(pool.map(lambda _: session.run(None, {INPUT_NAME: batch}), range(runs * cores)))
    return (time.process_time() - start) * 1000 / (runs * cores * len(batch))


# -- main -----------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="technical", help="model name or file (default: the bundled technical)")
    parser.add_argument("--files", type=int, default=400, help="photos in the corpus (nima-rt scores them all)")
    parser.add_argument("--peer-files", type=int, default=100, help="photos the eager/DataLoader/naive loops score")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every variant")
    parser.add_argument("--rss-files", type=int, default=4000, help="files for the peak-RSS run (0: skip)")
    parser.add_argument("--batch-size", type=int, default=None, help="nima-rt's --batch-size (default: its own)")
    parser.add_argument("--peer-backbone", default=None,
                        help="timm backbone of the peers' loops (default: the model's)")
    parser.add_argument("--sources", type=Path, default=None, help="folder of real photos to cut the corpus from")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the corpus here (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    parser.add_argument("--quick", action="store_true",
                        help="generated 480x360 photos, 24 files, 8 per peer loop, 1 repeat, no RSS run "
                        "(CI smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.files, args.peer_files, args.repeats, args.rss_files = 24, 8, 1, 0

    cores = os.cpu_count() or 1
    load_before = load_average()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="nima-bench-"))
    corpus_dir = workdir / ("quick" if args.quick else "corpus")
    files = sorted(corpus_dir.glob("*.jpg")) if corpus_dir.is_dir() else []
    if len(files) < args.files:
        shutil.rmtree(corpus_dir, ignore_errors=True)
        files = (quick_corpus(corpus_dir, args.files) if args.quick
                 else make_corpus(source_photos(args.sources, workdir / "references"), corpus_dir, args.files))
    files = files[: args.files]
    if len(list(corpus_dir.iterdir())) != len(files):  # nima-rt scores the folder: exactly these files
        for extra in sorted(corpus_dir.iterdir())[len(files):]:
            extra.unlink()
    megapixels = np.mean([Image.open(p).size[0] * Image.open(p).size[1] for p in files[:50]]) / 1e6
    model = load_model_file(args.model)
    spec = Preprocess.for_model(model.metadata)
    try:
        int8 = load_model_file(int8_variant(args.model))
    except Exception as exc:  # no INT8 copy (or a model file given): that row is skipped, saying why
        int8, int8_reason = None, " ".join(str(exc).split())
    batch = args.batch_size or DEFAULT_BATCH_SIZE["cpu"]
    print(f"CPU: {cpu_model()}, {cores} cores; load average {load_before} at the start", flush=True)
    print(f"model {model.name} ({model.metadata.backbone}, {model.metadata.input_size} px, {model.path.name}); "
          f"{len(files)} JPEGs of {megapixels:.1f} MP on average; nima-rt batch {batch}", flush=True)

    # the ceiling: CPU cost per image of the cheapest decode and inference
    decode_ms = decode_cpu_ms(files[: min(len(files), 200)], spec, cores)
    decoded = [decode_file(p, [spec])[0] for p in files[:batch]]
    sample = np.stack(decoded * (batch // min(batch, len(files)) + 1))[:batch]
    runs = max(2, 128 // batch) if not args.quick else 2
    ceilings = {"fp32": Ceiling(decode_ms, infer_cpu_ms(model.path, sample, runs, cores), cores)}
    if int8 is not None:
        ceilings["int8"] = Ceiling(decode_ms, infer_cpu_ms(int8.path, sample, runs, cores), cores)

    peer = peer_network(model, args.peer_backbone)
    peer_files = files[: args.peer_files]
    model_args = ["--model", args.model] if args.model else []
    batch_args = ["--batch-size", str(args.batch_size)] if args.batch_size else []
    rows: dict[str, Row] = {}

    def nima(precision: str) -> Callable[[], None]:
        def run() -> None:
            extra = ["--precision", "int8"] if precision == "int8" else []
            before = children_cpu_s()
            wall, rss, stderr = run_cli(["score", str(corpus_dir), *model_args, *extra, *batch_args,
                                         "-o", str(workdir / f"scores-{precision}.csv"), "--overwrite"])
            row = rows.setdefault(f"nima-rt {precision}", Row(f"nima-rt {precision}"))
            row.cpu_ms.append((children_cpu_s() - before) * 1000 / len(files))
            row.rates.append(cli_rate(stderr))
            row.wall_rates.append(len(files) / wall)
            row.peak_rss_mb.append(rss)
        return run

    def simple(name: str, measure: Callable[[], float]) -> Callable[[], None]:
        def run() -> None:
            rows.setdefault(name, Row(name)).rates.append(measure())
        return run

    variants: list[Callable[[], None]] = []
    if peer is not None:
        variants += [simple("eager", lambda: eager_loop(peer, peer_files, cores)),
                     simple("eager-1thread", lambda: eager_loop(peer, peer_files, 1)),
                     simple("dataloader", lambda: dataloader_loop(peer, peer_files, cores))]
    variants += [simple("naive-ort", lambda: naive_ort_loop(model, peer_files)), nima("fp32")]
    if int8 is not None:
        variants.append(nima("int8"))
    for repeat in range(args.repeats):
        for index in range(len(variants)):
            variants[(index + repeat) % len(variants)]()
        print(f"repeat {repeat + 1}/{args.repeats} done (load {load_average()})", file=sys.stderr, flush=True)

    one_dir = workdir / "one"
    one_dir.mkdir(exist_ok=True)
    shutil.copy(files[0], one_dir / "only.jpg")
    first_rows = {}
    for precision in ceilings:
        extra = ["--precision", "int8"] if precision == "int8" else []
        one_run = ["score", str(one_dir), *model_args, *extra, "-o", str(workdir / "one.csv"), "--overwrite", "--quiet"]
        walls = [run_cli(one_run)[0] for _ in range(max(1, args.repeats))]
        first_rows[precision] = statistics.median(walls)

    rss_runs = {}
    if args.rss_files:
        many = workdir / "many"
        if not many.is_dir() or len(list(many.iterdir())) != args.rss_files:
            shutil.rmtree(many, ignore_errors=True)
            many.mkdir()
            for index in range(args.rss_files):
                os.link(files[index % len(files)], many / f"f{index:06d}.jpg")
        for precision in ceilings:
            extra = ["--precision", "int8"] if precision == "int8" else []
            wall, rss, _ = run_cli(["score", str(many), *model_args, *extra, *batch_args,
                                    "-o", str(workdir / "many.csv"), "--overwrite", "--quiet"])
            rss_runs[precision] = (rss, args.rss_files / wall)
    load_after = load_average()

    # -- report -------------------------------------------------------------------------------------
    eager = max((rows[n].median for n in ("eager", "eager-1thread") if n in rows), default=None)
    print()
    print(f"| measurement ({args.repeats} interleaved repeats, median) | images/s | vs the faster eager loop | note |")
    print("|---|---|---|---|")
    labels = {"eager": f"peers' eager loop: torchvision transforms + eager PyTorch, batch 1, {cores} torch threads",
              "eager-1thread": "the same eager loop with 1 torch thread",
              "dataloader": f"peers' DataLoader loop: {cores} workers, batch 16, eager PyTorch",
              "naive-ort": "naive ONNX Runtime loop: full decode, batch 1, default session"}
    for name, row in rows.items():
        ratio = f"{row.median / eager:.2f}x" if eager else "n/a"
        note = f"repeats {', '.join(f'{r:.1f}' for r in row.rates)}"
        label = labels[name] if name in labels else f"`nima-rt score` {name.split()[-1]} (steady state)"
        if row.wall_rates:
            note += (f"; whole process {statistics.median(row.wall_rates):.1f}/s; "
                     f"peak RSS {max(row.peak_rss_mb):.0f} MB; {statistics.median(row.cpu_ms):.2f} CPU ms/image")
        print(f"| {label} | {row.median:.1f} | {ratio} | {note} |")
    for precision, ceiling in ceilings.items():
        print(f"| ceiling {precision}: {cores} / ({ceiling.cpu_ms_decode:.2f} + {ceiling.cpu_ms_infer:.2f} CPU ms "
              f"per image, decode + inference) | {ceiling.images_per_s:.1f} | | measured CPU cost |")
    print()
    summary: dict[str, object] = {"cpu": cpu_model(), "cores": cores, "load_before": load_before,
                                  "load_after": load_after, "files": len(files), "megapixels": round(megapixels, 2),
                                  "batch": batch, "rows": {n: asdict(r) for n, r in rows.items()},
                                  "ceilings": {p: {**asdict(c), "images_per_s": c.images_per_s}
                                               for p, c in ceilings.items()},
                                  "first_row_s": first_rows,
                                  "rss_runs": {p: {"peak_rss_mb": r, "images_per_s": s}
                                               for p, (r, s) in rss_runs.items()}}
    if int8 is None:
        summary["int8_skipped"] = int8_reason
        print(f"INT8 rows skipped: {int8_reason}")
    for precision in ceilings:
        row = rows[f"nima-rt {precision}"]
        of_ceiling = row.median / ceilings[precision].images_per_s
        verdicts = [f"{of_ceiling:.2f} of its ceiling (target >= {TARGETS['of_ceiling']})"]
        if eager:
            verdicts.insert(0, f"{row.median / eager:.2f}x the eager loop (target >= {TARGETS['vs_eager']:g})")
        rss_text = f"peak RSS {max(row.peak_rss_mb):.0f} MB over {len(files)} files"
        if precision in rss_runs:
            rss_text += f", {rss_runs[precision][0]:.0f} MB over {args.rss_files}"
        verdicts.append(f"{rss_text} (target < {TARGETS['peak_rss_mb']:.0f} MB, flat)")
        verdicts.append(f"first row of a 1-image folder {first_rows[precision]:.2f} s (whole process; target < "
                        f"{TARGETS['first_row_s']} s)")
        print(f"nima-rt {precision}: " + "; ".join(verdicts))
        # where the time goes: CPU beyond decode + inference, and cores left idle
        ceiling = ceilings[precision]
        spent, needed = statistics.median(row.cpu_ms), ceiling.cpu_ms_decode + ceiling.cpu_ms_infer
        busy = statistics.median(row.wall_rates) * spent / 1000
        print(f"  where the time goes: the whole process spends {spent:.2f} CPU ms per image against "
              f"{needed:.2f} for decode + inference alone ({spent - needed:+.2f} ms: start-up, model load, "
              f"Python, output); {busy:.2f} of {cores} cores busy on average over the whole process")
    if "nima-rt int8" in rows:
        print(f"int8 / fp32 end to end: {rows['nima-rt int8'].median / rows['nima-rt fp32'].median:.2f}x")
    print(f"load average {load_before} at the start, {load_after} at the end")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
