"""CPU throughput of `nima-rt score` against a naive loop and against its own bound.

    python benchmarks/cpu_throughput.py [--model technical] [--files 300] [--rss-files 10000]

One run measures, on the same photo folder and model:
  naive      full Pillow decode + resize + one image per ONNX Runtime call, one file after another
             (the peers' way of scoring a folder, with the model runtime kept equal so only the pipeline differs)
  peers      the peer projects' loop itself: torchvision transforms + eager PyTorch, one image at a time
             (same backbone; only when torch is installed)
  decode     nima-rt's decoder alone (JPEG draft + resize) on a thread pool over all cores
  model      the model alone on random uint8 batches (ONNX Runtime, all cores), best of several batch sizes
  end-to-end `python -m nima_rt score DIR` as a user runs it (a fresh process, wall time incl. start-up)
  bound      1 / (1/decode + 1/model): decode and inference sharing the same cores
It also measures peak RSS of a run over --rss-files files (hard links to the corpus) and the time to the
first row of a 1-image folder. Prints a table; targets are checked and reported, not asserted.

Photos: 1-3 MP JPEGs at quality 80-95 cut from real photographs (Debian wallpaper packages, fetched
offline by nima_rt.train.references), or any folder of photos via --sources.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from nima_rt.backends import BackendOptions, choose_backend
from nima_rt.decode import Preprocess, decode_file
from nima_rt.model_file import load_model_file

SIZES_MP = (1.0, 1.5, 2.0, 3.0)


@dataclass
class Figure:
    name: str
    images_per_s: float
    note: str = ""


def source_photos(sources: Path | None, cache: Path) -> list[Path]:
    """Real photographs of at least 2 MP to cut the corpus from (crops of them are not upscaled)."""
    if sources is None:
        from nima_rt.train.references import fetch_references  # Debian wallpapers via apt-get download

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


def naive_loop(files: list[Path], model_spec: str | None) -> float:
    """Full decode, resize, one image per inference call, strictly one after another."""
    model = load_model_file(model_spec)
    backend = choose_backend(model, "cpu").backend
    size = model.metadata.input_size
    start = time.perf_counter()
    for path in files:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        backend.run(np.asarray(rgb, dtype=np.uint8)[None])
    elapsed = time.perf_counter() - start
    backend.close()
    return len(files) / elapsed


def peers_loop(files: list[Path], model_spec: str | None) -> float | None:
    """The peer projects' loop: Pillow open, torchvision Resize/CenterCrop/ToTensor/Normalize, eager
    PyTorch one image at a time, same backbone (random weights: speed does not depend on them).
    None when torch (the train extra) is not installed."""
    try:
        import torch
        from torchvision import transforms
    except ImportError:
        return None
    from nima_rt.train.model import ModelConfig, build_network, normalization_for

    model = load_model_file(model_spec)
    config = ModelConfig(backbone=model.metadata.backbone or "mobilenet_v2", image_size=model.metadata.input_size)
    network = build_network(config, "none").eval()
    norm = normalization_for(config)
    size = model.metadata.input_size
    transform = transforms.Compose([
        transforms.Resize(round(size * 256 / 224)), transforms.CenterCrop(size), transforms.ToTensor(),
        transforms.Normalize(norm.mean, norm.std),
    ])
    torch.set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    with torch.no_grad():
        for path in files:
            with Image.open(path) as image:
                network(transform(image.convert("RGB"))[None])
    return len(files) / (time.perf_counter() - start)


def decode_rate(files: list[Path], model_spec: str | None, workers: int) -> float:
    model = load_model_file(model_spec)
    specs = [Preprocess(model.metadata.input_size, model.metadata.resize)]
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(lambda p: decode_file(p, specs), files):
            pass
    return len(files) / (time.perf_counter() - start)


def model_rates(model_spec: str | None, batches: tuple[int, ...], images: int) -> dict[int, float]:
    model = load_model_file(model_spec)
    backend = choose_backend(model, "cpu", options=BackendOptions()).backend
    size = model.metadata.input_size
    rng = np.random.default_rng(0)
    rates = {}
    for batch in batches:
        data = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        backend.run(data)  # warm-up
        runs = max(1, images // batch)
        start = time.perf_counter()
        for _ in range(runs):
            backend.run(data)
        rates[batch] = runs * batch / (time.perf_counter() - start)
    backend.close()
    return rates


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
            time.sleep(0.05)
        wall = time.perf_counter() - start
        err.seek(0)
        stderr = err.read()
    if process.returncode != 0:
        raise SystemExit(f"error: nima-rt {' '.join(args)} failed:\n{stderr}")
    return wall, peak_kb / 1024, stderr


def cli_rate(stderr: str) -> float:
    """images/s from the CLI's summary line ("scored N, failed M in T s (R images/s)")."""
    for line in reversed(stderr.splitlines()):
        if line.startswith("scored ") and "images/s" in line:
            return float(line.rsplit("(", 1)[1].split()[0])
    raise SystemExit(f"error: no summary line in nima-rt output:\n{stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model name or file (default: the bundled default)")
    parser.add_argument("--files", type=int, default=600, help="photos in the corpus")
    parser.add_argument("--naive-files", type=int, default=100, help="photos the naive loop scores")
    parser.add_argument("--rss-files", type=int, default=10000, help="files for the peak-RSS run (0: skip)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: nima-rt's own choice")
    parser.add_argument("--sources", type=Path, default=None, help="folder of real photos to cut the corpus from")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the corpus here (default: a temp dir)")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="nima-bench-"))
    corpus_dir = workdir / "corpus"
    files = sorted(corpus_dir.glob("*.jpg")) if corpus_dir.is_dir() else []
    if len(files) < args.files:
        shutil.rmtree(corpus_dir, ignore_errors=True)
        files = make_corpus(source_photos(args.sources, workdir / "references"), corpus_dir, args.files)
    files = files[: args.files]
    megapixels = np.mean([Image.open(p).size[0] * Image.open(p).size[1] for p in files[:50]]) / 1e6
    model_spec = args.model
    model = load_model_file(model_spec)
    print(f"model {model.name} ({model.metadata.backbone}, {model.metadata.input_size}px), {len(files)} JPEGs "
          f"of {megapixels:.1f} MP on average, {cores} cores", flush=True)

    figures: list[Figure] = []
    naive = naive_loop(files[: args.naive_files], model_spec)
    figures.append(Figure("naive loop (full decode, batch 1, ONNX Runtime)", naive))
    peers = peers_loop(files[: args.naive_files], model_spec)
    if peers is not None:
        figures.append(Figure("peers' loop (torchvision transforms, eager PyTorch, batch 1)", peers))
    decode = decode_rate(files, model_spec, cores)
    figures.append(Figure(f"decode only ({cores} threads, draft)", decode))
    rates = model_rates(model_spec, (1, 8, 32, 64), images=256)
    best_batch = max(rates, key=rates.get)
    figures.append(Figure(f"model only (batch {best_batch})", rates[best_batch],
                          "batch " + ", ".join(f"{b}: {r:.0f}/s" for b, r in rates.items())))
    bound = 1 / (1 / decode + 1 / rates[best_batch])
    figures.append(Figure("bound: decode + model sharing cores", bound))

    out = workdir / "scores.csv"
    model_args = ["--model", model_spec] if model_spec else []
    batch_args = ["--batch-size", str(args.batch_size)] if args.batch_size else []
    wall, rss, stderr = run_cli(["score", str(corpus_dir), *model_args, "-o", str(out), *batch_args])
    end_to_end = cli_rate(stderr)
    figures.append(Figure(f"nima-rt score end to end (batch {args.batch_size or 'default'})", end_to_end,
                          f"steady state; {len(files) / wall:.1f}/s over {wall:.1f} s wall incl. start-up, "
                          f"peak RSS {rss:.0f} MB"))

    one_dir = workdir / "one"
    one_dir.mkdir(exist_ok=True)
    shutil.copy(files[0], one_dir / "only.jpg")
    first_row_wall, _, _ = run_cli(["score", str(one_dir), *model_args, "-o", str(workdir / "one.csv"), "--quiet"])

    rss_line = "skipped"
    if args.rss_files:
        many = workdir / "many"
        if not many.is_dir() or len(list(many.iterdir())) != args.rss_files:
            shutil.rmtree(many, ignore_errors=True)
            many.mkdir()
            for index in range(args.rss_files):
                os.link(files[index % len(files)], many / f"f{index:06d}.jpg")
        many_wall, many_rss, _ = run_cli(["score", str(many), *model_args, "-o", str(workdir / "many.csv"),
                                          "--quiet", *batch_args])
        rss_line = f"{many_rss:.0f} MB over {args.rss_files} files ({args.rss_files / many_wall:.0f} images/s)"

    print()
    print("| measurement | images/s | note |")
    print("|---|---|---|")
    for figure in figures:
        print(f"| {figure.name} | {figure.images_per_s:.1f} | {figure.note} |")
    print()
    print(f"end-to-end / naive: {end_to_end / naive:.2f}x (target >= 3)")
    if peers is not None:
        print(f"end-to-end / peers' loop: {end_to_end / peers:.2f}x")
    print(f"end-to-end / bound: {end_to_end / bound:.2f} (target >= 0.85)")
    print(f"peak RSS: {rss_line} (target < 400 MB for 10,000 files)")
    print(f"first row of a 1-image folder: {first_row_wall:.2f} s (whole process; target < 1.5 s)")


if __name__ == "__main__":
    main()
