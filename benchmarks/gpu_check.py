"""Every GPU check in one short run: the tests marked ``gpu``, model-only throughput per backend and
precision, parity against the CPU backend, GPU-decode tolerance, and end-to-end folder throughput.

    python benchmarks/gpu_check.py [--out DIR] [--model MODEL.onnx] [--images DIR] [--budget 450]
    python benchmarks/gpu_check.py --dry-run          # the CPU-safe parts (CI): exits 0, GPU rows skipped

Works on a machine whose only GPU library is PyTorch (CUDA build) with onnx and the CPU build of
onnxruntime: whatever is missing (TensorRT, cuda-python, onnxruntime-gpu, a GPU at all) is skipped
with the reason. It never downloads anything.

Steps (each checks the time budget first; a step that does not fit is skipped with that reason):
  environment  GPU (CUDA driver), torch/torchvision/onnxruntime/TensorRT versions, providers
  tests        `pytest -m gpu` over the test files that have gpu tests (junit XML + log kept)
  model        --model, else a random-weight MobileNetV2 checkpoint + its ONNX export (224 px; 32 px
               in a dry run), so torch-cuda finds the checkpoint beside the ONNX as users would
  engines      TensorRT fp16 and fp32 engines, profile 1/64/256 (where TensorRT is installed)
  model-only   images/s at batch 1, 64, 256 for every backend x precision that opens here
               (onnxruntime-cpu at 1 and 64 as the reference)
  parity       each backend against onnxruntime-cpu on decoded synthetic photos: max/mean |d mean|,
               max |d dist|, Spearman of the means
  decode       nvJPEG (GPU decode) against the CPU decoder: pixel differences and score differences,
               with the CPU's JPEG draft on (its default) and off; decode-only images/s of both
  end-to-end   `Scorer` over a folder of synthetic JPEGs (1-2 MP) with CPU decode and with nvJPEG
Full results go to --out (results.json, summary.md, gpu-tests.log/xml); a short table prints last.
Exit code 1 when a test fails or a step crashes (the step's row says how), else 0.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # gpu_helpers (engine and model builders shared with the gpu tests)

from gpu_check_corpus import decode_all, decode_rate, make_corpus  # noqa: E402
from gpu_check_results import Check, one_line, table, write_results  # noqa: E402

from nima_rt.io.decode import Preprocess, decode_file  # noqa: E402
from nima_rt.io.model_file import ModelFile, load_model_file  # noqa: E402
from nima_rt.runtime.backends import (  # noqa: E402
    BackendOptions,
    BackendUnavailable,
    cuda_driver,
    onnxruntime_backend,
    onnxruntime_gpu,
    tensorrt_engine,
    torch_cuda,
)
from nima_rt.runtime.metrics import spearman  # noqa: E402
from nima_rt.train import load_contract_module  # noqa: E402

BATCHES = (1, 64, 256)
CPU_BATCHES = (1, 64)
ENGINE_PROFILE = (1, 64, 256)
TARGET_MODEL_ONLY = 20_000  # images/s at batch 256, fp16, best backend (data-centre GPU)
TIMED_SECONDS = 1.0  # per throughput figure, after warm-up


# -- environment ----------------------------------------------------------------------------------


def step_environment(check: Check) -> None:
    env: dict[str, Any] = {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "dry_run": check.args.dry_run,
    }
    try:
        gpu = cuda_driver.probe_gpu()
        env["gpu"] = {"name": gpu.name, "compute_capability": gpu.compute_capability,
                      "driver_cuda": gpu.driver_version, "count": gpu.device_count}
    except BackendUnavailable as exc:
        check.gpu_reason = str(exc)
        env["gpu"] = {"unavailable": str(exc)}
    try:
        import torch
        import torchvision

        env["torch"] = {"version": torch.__version__, "cuda": torch.version.cuda,
                        "cuda_available": torch.cuda.is_available(), "torchvision": torchvision.__version__}
        if not torch.cuda.is_available():
            check.torch_cuda_reason = (f"torch {torch.__version__} cannot use the GPU: "
                                       "torch.cuda.is_available() is False")
    except ImportError as exc:
        check.torch_cuda_reason = f"torch/torchvision not installed ({one_line(exc)})"
        env["torch"] = {"unavailable": check.torch_cuda_reason}
    import onnxruntime as ort

    env["onnxruntime"] = {"version": ort.__version__, "providers": ort.get_available_providers()}
    for name, probe in (("tensorrt", tensorrt_engine.tensorrt_version), ("cuda_python", tensorrt_engine.import_cudart)):
        try:
            value = probe()
            env[name] = value if isinstance(value, str) else "installed"
        except BackendUnavailable as exc:
            env[name] = f"unavailable: {exc}"
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                 "--format=csv,noheader"]
        done = subprocess.run(query, capture_output=True, text=True, timeout=30)
        env["nvidia_smi"] = done.stdout.strip() or done.stderr.strip()
    check.data["environment"] = env
    gpu_text = env["gpu"].get("name") or f"no GPU ({check.gpu_reason})"
    check.add("environment", "machine", "ok", f"{gpu_text}; torch {env['torch'].get('version', '-')}; "
              f"onnxruntime {ort.__version__}; tensorrt {env['tensorrt']}")


# -- tests ----------------------------------------------------------------------------------------


def step_tests(check: Check) -> bool:
    """Run the gpu-marked tests; False when one failed."""
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
                   if "mark.gpu" in p.read_text(encoding="utf-8"))
    if not files:
        check.skip("tests", "pytest -m gpu", "no test file has gpu-marked tests")
        return True
    if not check.fits("tests", "pytest -m gpu", 30):
        return True
    xml = check.out / "gpu-tests.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-rs", "-p", "no:cacheprovider",
               f"--junitxml={xml}", *files]
    try:
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="") if check.args.dry_run else None  # dry run: CPU only
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env,
                              timeout=min(300, check.left() - 20))
    except subprocess.TimeoutExpired:
        check.add("tests", "pytest -m gpu", "failed", "timed out")
        return False
    (check.out / "gpu-tests.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if xml.exists():
        suite = ElementTree.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in counts}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    skips = [line.split(": ", 1)[-1] for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    ok = done.returncode in (0, 5) and counts["failures"] == counts["errors"] == 0
    summary = f"{passed} passed, {counts['failures'] + counts['errors']} failed, {counts['skipped']} skipped"
    if skips:
        summary += f" ({'; '.join(sorted(set(skips)))})"
    check.add("tests", f"pytest -m gpu ({len(files)} files)", "ok" if ok else "failed", summary,
              returncode=done.returncode, **counts)
    return ok


# -- model and engines ----------------------------------------------------------------------------


def step_model(check: Check) -> ModelFile | None:
    if check.args.model:
        model = load_model_file(check.args.model)
        check.add("model", str(model.path.name), "ok", f"{model.metadata.backbone or '?'} "
                  f"{model.metadata.input_size} px (given; torch-cuda needs {model.path.with_suffix('.pt').name} "
                  "beside it)")
        return model
    size = 32 if check.args.dry_run else 224
    try:
        from helpers.gpu_helpers import build_model_pair

        started = time.perf_counter()
        onnx_path = build_model_pair(check.out / "model", "mobilenet_v2", size)
    except ImportError as exc:
        check.skip("model", "build mobilenet_v2", f"needs the train extra and nima_rt.export ({one_line(exc)})")
        return None
    model = load_model_file(onnx_path)
    check.add("model", model.path.name, "ok", f"random-weight MobileNetV2 {size} px, checkpoint beside "
              f"({time.perf_counter() - started:.1f} s to build and export)")
    return model


def step_engines(check: Check, model: ModelFile) -> dict[str, Path]:
    engines: dict[str, Path] = {}
    reason = tensorrt_engine.runtime_unavailable()
    for precision in ("fp16", "fp32"):
        item = f"tensorrt engine {precision}"
        if reason is not None:
            check.skip("engines", item, reason)
            continue
        if not check.fits("engines", item, 150):
            continue
        try:
            from helpers.gpu_helpers import build_engine

            started = time.perf_counter()
            path = build_engine(model.path, check.out / f"model-{precision}.engine", precision, ENGINE_PROFILE)
            engines[precision] = path
            check.add("engines", item, "ok", f"built in {time.perf_counter() - started:.0f} s, profile "
                      f"{'/'.join(map(str, ENGINE_PROFILE))}")
        except Exception as exc:
            check.add("engines", item, "failed", one_line(exc))
    return engines


# -- backends: throughput and parity --------------------------------------------------------------


@dataclass
class Candidate:
    name: str
    precision: str
    opener: Callable[[], Any] | None  # None: skipped, reason says why
    reason: str | None = None
    batches: tuple[int, ...] = BATCHES


def candidates(check: Check, model: ModelFile, engines: dict[str, Path]) -> list[Candidate]:
    out: list[Candidate] = []
    cache = str(check.out / "ort-tensorrt-cache")

    for precision in ("fp16", "fp32"):
        engine = engines.get(precision)
        reason = tensorrt_engine.runtime_unavailable() or (None if engine else "engine was not built (see engines)")
        opener = (lambda e=engine: tensorrt_engine.create(load_model_file(e), BackendOptions())) if engine else None
        out.append(Candidate("tensorrt", precision, opener if not reason else None, reason))
    for precision in ("fp16", "fp32"):
        reason = onnxruntime_gpu.tensorrt_availability(model)
        options = BackendOptions(precision=precision, max_batch=max(BATCHES), cache_dir=cache)
        out.append(Candidate("onnxruntime-tensorrt", precision,
                             (lambda o=options: onnxruntime_gpu.create_tensorrt(model, o)) if not reason else None,
                             reason))
    reason = onnxruntime_gpu.cuda_availability(model)
    out.append(Candidate("onnxruntime-cuda", "fp32",
                         (lambda: onnxruntime_gpu.create_cuda(model, BackendOptions(max_batch=max(BATCHES))))
                         if not reason else None, reason))
    for precision in ("fp16", "fp32"):
        reason = torch_cuda.availability(model)
        options = BackendOptions(precision=precision, max_batch=max(BATCHES), checkpoint_loader=load_contract_module)
        out.append(Candidate("torch-cuda", precision,
                             (lambda o=options: torch_cuda.create(model, o)) if not reason else None, reason))
    if check.args.dry_run:  # CPU-safe parts only: a GPU backend that could run here is not run
        for candidate in out:
            if candidate.opener is not None:
                candidate.opener, candidate.reason = None, "dry run: available here, not run"
    cpu_batches = (1, 8) if check.args.dry_run else CPU_BATCHES
    out.append(Candidate("onnxruntime-cpu", "fp32",
                         lambda: onnxruntime_backend.create(model, BackendOptions()), None, cpu_batches))
    return out


def images_per_second(backend: Any, batch: np.ndarray, seconds: float) -> tuple[float, float]:
    """(images/s, ms per batch) after three warm-up runs (CUDA graphs, engine builds, autotuning)."""
    for _ in range(3):
        backend.run(batch)
    runs, started = 0, time.perf_counter()
    while True:
        backend.run(batch)
        runs += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and runs >= 3:
            break
    return batch.shape[0] * runs / elapsed, 1000 * elapsed / runs


def parity(backend: Any, reference: Any, images: np.ndarray, batch: int = 64) -> dict[str, float]:
    got = [backend.run(images[i:i + batch]) for i in range(0, len(images), batch)]
    want = [reference.run(images[i:i + batch]) for i in range(0, len(images), batch)]
    mean_got = np.concatenate([g.mean for g in got])
    mean_want = np.concatenate([w.mean for w in want])
    dist_diff = max(float(np.abs(g.dist - w.dist).max()) for g, w in zip(got, want, strict=True))
    delta = np.abs(mean_got - mean_want)
    return {"images": len(images), "max_abs_d_mean": float(delta.max()), "mean_abs_d_mean": float(delta.mean()),
            "max_abs_d_dist": dist_diff, "spearman": spearman(mean_got, mean_want)}


def step_backends(check: Check, model: ModelFile, engines: dict[str, Path], evaluation: np.ndarray) -> None:
    size = model.metadata.input_size
    rng = np.random.default_rng(0)
    reference = onnxruntime_backend.create(model, BackendOptions())
    try:
        for candidate in candidates(check, model, engines):
            item = f"{candidate.name} {candidate.precision}"
            if candidate.opener is None:
                check.skip("model-only", item, candidate.reason or "unavailable")
                continue
            if not check.fits("model-only", item, 60 if candidate.name == "onnxruntime-tensorrt" else 25):
                continue
            try:
                backend = candidate.opener()
            except BackendUnavailable as exc:
                check.skip("model-only", item, str(exc))
                continue
            except Exception as exc:
                check.add("model-only", item, "failed", one_line(exc))
                continue
            try:
                figures: dict[str, Any] = {}
                for batch_size in candidate.batches:
                    batch = rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
                    rate, latency = images_per_second(backend, batch, TIMED_SECONDS)
                    figures[str(batch_size)] = {"images_per_s": rate, "ms_per_batch": latency}
                rates = " / ".join(f"b{b} {figures[str(b)]['images_per_s']:,.0f}" for b in candidate.batches)
                check.add("model-only", item, "ok", f"{rates} images/s", backend=candidate.name,
                          precision=candidate.precision, batches=figures)
                if candidate.name != "onnxruntime-cpu":
                    measured = parity(backend, reference, evaluation)
                    check.add("parity", f"{item} vs onnxruntime-cpu", "ok",
                              f"max|d mean| {measured['max_abs_d_mean']:.2g}, mean {measured['mean_abs_d_mean']:.2g}, "
                              f"spearman {measured['spearman']:.5f} ({measured['images']} images)", **measured)
            except Exception as exc:
                check.add("model-only", item, "failed", one_line(exc))
                (check.out / f"trace-{candidate.name}-{candidate.precision}.txt").write_text(traceback.format_exc())
            finally:
                backend.close()
    finally:
        reference.close()
    if check.args.dry_run:  # the torch path on the CPU still proves checkpoint -> contract -> parity
        dry_run_torch_parity(check, model, reference_model=model, evaluation=evaluation)


def dry_run_torch_parity(check: Check, model: ModelFile, reference_model: ModelFile, evaluation: np.ndarray) -> None:
    item = "torch fp32 on cpu (dry-run stand-in) vs onnxruntime-cpu"
    try:
        checkpoint = torch_cuda.checkpoint_for(model)
        from nima_rt.train.model.checkpoint import load_checkpoint
    except (BackendUnavailable, ImportError) as exc:
        check.skip("parity", item, one_line(exc) if isinstance(exc, ImportError) else str(exc))
        return
    backend = torch_cuda.TorchCudaBackend(load_checkpoint(checkpoint).contract_module(), model.metadata.input_size,
                                          "fp32", 64, device="cpu", source=str(checkpoint))
    reference = onnxruntime_backend.create(reference_model, BackendOptions())
    measured = parity(backend, reference, evaluation)
    check.add("parity", item, "ok", f"max|d mean| {measured['max_abs_d_mean']:.2g}, "
              f"spearman {measured['spearman']:.5f} ({measured['images']} images)", **measured)
    backend.close()
    reference.close()


# -- corpus, decode and end to end ----------------------------------------------------------------


def step_decode(check: Check, model: ModelFile, corpus: list[str]) -> dict[str, float]:
    """Pixel and score differences of GPU decode vs the CPU decoder; decode-only rates."""
    rates: dict[str, float] = {}
    drafted = Preprocess.for_model(model.metadata)
    full = Preprocess.for_model(model.metadata).with_draft(False)
    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(workers) as pool:
        rates["cpu"] = decode_rate(lambda p: list(pool.map(lambda x: decode_file(x, [drafted]), p)), corpus)
        check.add("decode", f"CPU decoder, {workers} threads", "ok", f"{rates['cpu']:,.0f} images/s (decode + resize)")
        device = "cpu" if check.args.dry_run else "cuda"
        label = "GPU-decode code on cpu (dry run)" if check.args.dry_run else "nvJPEG"
        if not check.args.dry_run and (check.torch_cuda_reason or check.gpu_reason):
            check.skip("decode", "nvJPEG vs CPU decoder", check.gpu_reason or check.torch_cuda_reason or "")
            return rates
        from nima_rt.runtime.gpu_decode import GpuDecoder

        try:
            decoder = GpuDecoder([drafted], device=device)
        except BackendUnavailable as exc:
            check.skip("decode", f"{label} vs CPU decoder", str(exc))
            return rates
        sample = corpus[:64]
        decoded = decoder.decode_paths(sample, pool)
        reference = onnxruntime_backend.create(model, BackendOptions())
        for name, spec in (("draft on (CPU default)", drafted), ("draft off", full)):
            pairs = [(g[0], c[0]) for g, c in zip(decoded, decode_all(sample, spec), strict=True)
                     if not isinstance(g, str) and c is not None]
            gpu, cpu = np.stack([g for g, _ in pairs]), np.stack([c for _, c in pairs])
            diff = np.abs(gpu.astype(np.int16) - cpu.astype(np.int16))
            delta = np.abs(reference.run(gpu).mean - reference.run(cpu).mean)
            check.add("decode", f"{label} vs CPU decoder, {name}", "ok",
                      f"pixels mean {diff.mean():.2f} / max {diff.max()} grey levels; "
                      f"scores max|d mean| {delta.max():.2g}, mean {delta.mean():.2g}",
                      pixel_mean=float(diff.mean()), pixel_max=int(diff.max()), score_max=float(delta.max()),
                      score_mean=float(delta.mean()), images=len(pairs))
        reference.close()
        chunks = [corpus[i:i + 256] for i in range(0, len(corpus), 256)]
        rates["gpu"] = decode_rate(lambda p: [decoder.decode_paths(chunk, pool) for chunk in chunks], corpus)
        check.add("decode", f"{label} decode", "ok", f"{rates['gpu']:,.0f} images/s (read + decode + resize + copy)")
    return rates


def step_end_to_end(check: Check, model: ModelFile, engines: dict[str, Path], corpus: list[str]) -> None:
    from nima_rt.runtime.scorer import Scorer, ScorerConfig

    target = engines.get("fp16", model.path)
    device = "cpu" if check.args.dry_run else "cuda"
    batch = 32 if check.args.dry_run else 256
    for mode in ("off", "on"):
        item = f"folder of {len(corpus)} JPEGs, {'nvJPEG' if mode == 'on' else 'CPU'} decode"
        if check.args.dry_run and mode == "on":
            check.skip("end-to-end", item, "dry run: no GPU")
            continue
        if not check.args.dry_run and check.gpu_reason:
            check.skip("end-to-end", item, check.gpu_reason)
            continue
        if not check.fits("end-to-end", item, 40):
            continue
        try:
            with Scorer([target], ScorerConfig(batch_size=batch, device=device, gpu_decode=mode,
                                                        checkpoint_loader=load_contract_module)) as scorer:
                backend_line = scorer.backend_summary[0]
                started, stamps, errors = time.perf_counter(), [], 0
                for result in scorer.score_paths(corpus):
                    stamps.append(time.perf_counter() - started)
                    errors += not result.ok
            # steady state: after two batches (CUDA graph capture, autotuning, engine warm-up happen there)
            rate = len(stamps) / stamps[-1]
            warm = 2 * batch
            steady = (len(stamps) - warm) / (stamps[-1] - stamps[warm - 1]) if len(stamps) >= 3 * batch else rate
            status = "failed" if errors and not check.args.images else "ok"  # synthetic JPEGs must all score
            check.add("end-to-end", item, status,
                      f"{steady:,.0f} images/s after 2 batches ({rate:,.0f} from the start), batch {batch}, "
                      f"{errors} errors "
                      f"({backend_line.split(': ', 1)[1].split(';')[0]})",
                      images_per_s=steady, images_per_s_with_warmup=rate, errors=errors, summary=scorer.backend_summary)
        except BackendUnavailable as exc:
            check.skip("end-to-end", item, str(exc))
        except Exception as exc:
            check.add("end-to-end", item, "failed", one_line(exc))


def target_rows(check: Check) -> None:
    fp16 = [r for r in check.rows if r.step == "model-only" and r.status == "ok" and r.data.get("precision") == "fp16"]
    rates = [(r.data["batches"].get("256", {}).get("images_per_s", 0.0), r.item) for r in fp16]
    if not rates:
        check.skip("target", f"model-only >= {TARGET_MODEL_ONLY:,} images/s, b256 fp16", "no fp16 GPU backend ran")
        return
    best, item = max(rates)
    status = "met" if best >= TARGET_MODEL_ONLY else "NOT met"
    check.add("target", f"model-only >= {TARGET_MODEL_ONLY:,} images/s, b256 fp16", "ok",
              f"{status}: {best:,.0f} images/s ({item})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: gpu-check-<UTC stamp>)")
    parser.add_argument("--model", default=None, help="an .onnx model (a .pt checkpoint beside it enables torch-cuda)")
    parser.add_argument("--images", default=None, help="a folder of photos for decode/end-to-end (default: synthetic)")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for the whole check (default 450)")
    parser.add_argument("--dry-run", action="store_true", help="CPU-safe parts only, small sizes (for CI)")
    parser.add_argument("--skip-tests", action="store_true", help="do not run pytest -m gpu")
    args = parser.parse_args(argv)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path(f"gpu-check-{stamp}")
    out.mkdir(parents=True, exist_ok=True)
    check = Check(args, out, time.monotonic() + args.budget)
    ok = True

    def guarded(name: str, function: Callable[..., Any], *fargs: Any, default: Any = None) -> Any:
        nonlocal ok
        try:
            return function(*fargs)
        except Exception as exc:
            ok = False
            check.add(name, "step", "failed", one_line(exc))
            (out / f"trace-{name}.txt").write_text(traceback.format_exc(), encoding="utf-8")
            return default

    guarded("environment", step_environment, check)
    if not args.skip_tests:
        ok = guarded("tests", step_tests, check, default=False) and ok
    model = guarded("model", step_model, check)
    if model is not None:
        engines = guarded("engines", step_engines, check, model, default={}) if not args.dry_run else {}
        if args.dry_run:
            check.skip("engines", "tensorrt engines", "dry run")
        corpus = guarded("corpus", make_corpus, check, default=[])
        size = model.metadata.input_size
        spec = [Preprocess.for_model(model.metadata)]
        decoded = [arrays[0] for arrays in decode_all(corpus[:64], spec[0]) if arrays is not None]
        evaluation = np.stack(decoded) if decoded else \
            np.random.default_rng(1).integers(0, 256, (64, size, size, 3), dtype=np.uint8)
        guarded("model-only", step_backends, check, model, engines, evaluation)
        if corpus:
            guarded("decode", step_decode, check, model, corpus)
            guarded("end-to-end", step_end_to_end, check, model, engines, corpus)
        target_rows(check)
    ok = ok and not any(r.status == "failed" for r in check.rows)
    write_results(check)
    print(f"\nfull results: {out}/results.json, {out}/summary.md", file=sys.stderr)
    print(table(check.rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
