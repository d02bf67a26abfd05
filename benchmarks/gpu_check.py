"""Every GPU path in one short run: the tests marked ``gpu``; TensorRT fp32/fp16/int8 engines, ONNX Runtime's
TensorRT and CUDA providers and torch-cuda on every bundled model (images/s at batch 1, 64 and 256, and
parity with CPU scores); GPU decode against the CPU decoder; the Scorer end to end.

    python benchmarks/gpu_check.py [--out DIR] [--model MODEL.onnx] [--images DIR] [--budget 480]
    python benchmarks/gpu_check.py --dry-run    # every GPU library faked on the CPU (CI): the control flow

Works where some GPU libraries are missing (PyTorch's CUDA build alone, say): each missing one is skipped
with its reason. It never downloads anything. ``--dry-run`` runs the same steps with a fake GPU, fake
TensorRT (engines that run their ONNX graph on ONNX Runtime), fake cuda-python, onnxruntime's GPU providers
on the CPU, torch-cuda and GPU decode on ``device="cpu"`` (tests/helpers/gpu_fakes.py), at small sizes:
its figures measure nothing; its rows prove every path is reached and compared.

Steps (each checks the time budget first; one that does not fit is skipped with that reason):
  environment  GPU (CUDA driver), torch/torchvision/onnxruntime/TensorRT/cuda-python versions, providers
  tests        `pytest -m gpu` over the test files that have gpu tests (junit XML + log kept)
  models       every bundled model (nima_rt.io.model_file.bundled_models), --model, and a random-weight
               MobileNetV2 checkpoint + its ONNX export, so torch-cuda finds a checkpoint as users would
  engines      per float32 model: TensorRT fp32, fp16, int8 engines (profile 1/64/256), export's builder
  model-only   images/s at batch 1, 64, 256 for every backend x precision that opens
  parity       each of those against the graph it computes run by onnxruntime-cpu (export's bars), and
               against the float32 CPU scores (gpu_check_paths.py)
  decode       nvJPEG against the CPU decoder (draft on and off): pixels, scores, decode-only images/s
  end-to-end   the Scorer over a folder of synthetic JPEGs (1-2 MP), CPU decode and GPU decode
Full results go to --out (results.json, summary.md, gpu-tests.log/xml); a short table prints last.
Exit code 1 when a test fails, a parity check misses its bar or a step crashes, else 0.
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # helpers shared with the gpu tests (builders, fakes)

from gpu_check_corpus import decode_all, make_corpus  # noqa: E402
from gpu_check_decode import step_decode, step_end_to_end  # noqa: E402
from gpu_check_paths import ModelUnderTest, models_to_check, step_engines, step_paths  # noqa: E402
from gpu_check_results import Check, one_line, table, write_results  # noqa: E402

from nima_rt.io.decode import Preprocess  # noqa: E402
from nima_rt.io.model_file import bundled_models, default_models  # noqa: E402
from nima_rt.runtime.backends import BackendUnavailable, cuda_driver, tensorrt_engine  # noqa: E402

TARGET_MODEL_ONLY = 20_000  # images/s at batch 256, fp16, best backend (data-centre GPU)


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
        if not torch.cuda.is_available() and not check.args.dry_run:  # the dry run fakes torch's GPU paths
            check.torch_cuda_reason = (f"torch {torch.__version__} cannot use the GPU: "
                                       "torch.cuda.is_available() is False")
    except ImportError as exc:
        check.torch_cuda_reason = f"torch/torchvision not installed ({one_line(exc)})"
        env["torch"] = {"unavailable": check.torch_cuda_reason}
    from nima_rt.runtime.backends import onnxruntime_gpu

    ort = onnxruntime_gpu.ort
    env["onnxruntime"] = {"version": ort.__version__, "providers": ort.get_available_providers()}
    for name, probe in (("tensorrt", tensorrt_engine.tensorrt_version), ("cuda_python", tensorrt_engine.import_cudart)):
        try:
            value = probe()
            env[name] = value if isinstance(value, str) else "installed"
        except BackendUnavailable as exc:
            env[name] = f"unavailable: {exc}"
    if shutil.which("nvidia-smi") and not check.args.dry_run:
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
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")
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
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="") if check.args.dry_run else None  # dry run: no real GPU
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


# -- models ---------------------------------------------------------------------------------------


def decoded(paths: list[str], item: ModelUnderTest, seed: int) -> np.ndarray:
    """The corpus decoded for ``item`` as the runtime decodes it (random pixels where there is no corpus)."""
    arrays = [a[0] for a in decode_all(paths, Preprocess.for_model(item.model.metadata)) if a is not None]
    size = item.model.metadata.input_size
    return np.stack(arrays) if arrays else np.random.default_rng(seed).integers(0, 256, (16, size, size, 3), np.uint8)


def step_models(check: Check, corpus: list[str]) -> tuple[ModelUnderTest | None, Path | None]:
    """Engines, throughput and parity for every model; returns the float32 model decode and end-to-end use
    (the first default model where this install bundles it) and its fp16 engine."""
    evaluation, calibration = (corpus[:16], corpus[16:32]) if check.args.dry_run else (corpus[:64], corpus[-128:])
    first, first_engine = None, None
    default = next((bundled_models()[name] for name in default_models()), None)  # the first default model
    for item in models_to_check(check):
        images = decoded(evaluation, item, 1)
        engines: dict[str, Path] = {}
        if item.precision == "fp32" and not item.torch_only:
            engines = step_engines(check, item, decoded(calibration, item, 2))
        step_paths(check, item, engines, images)
        if item.precision == "fp32" and not item.torch_only and (first is None or item.model.path == default):
            first, first_engine = item, engines.get("fp16")
    return first, first_engine


def target_rows(check: Check) -> None:
    label = f"model-only >= {TARGET_MODEL_ONLY:,} images/s, b256 fp16"
    if check.args.dry_run:
        check.skip("target", label, "dry run: a fake GPU measures nothing")
        return
    fp16 = [r for r in check.rows if r.step == "model-only" and r.status == "ok" and r.data.get("precision") == "fp16"]
    rates = [(r.data["batches"].get("256", {}).get("images_per_s", 0.0), r.item) for r in fp16]
    if not rates:
        check.skip("target", label, "no fp16 GPU backend ran")
        return
    best, item = max(rates)
    verdict = "met" if best >= TARGET_MODEL_ONLY else "NOT met"
    check.add("target", label, "ok", f"{verdict}: {best:,.0f} images/s ({item})")


def run_steps(check: Check) -> bool:
    ok = True

    def guarded(name: str, function: Callable[..., Any], *fargs: Any, default: Any = None) -> Any:
        nonlocal ok
        try:
            return function(*fargs)
        except Exception as exc:
            ok = False
            check.add(name, "step", "failed", one_line(exc))
            (check.out / f"trace-{name}.txt").write_text(traceback.format_exc(), encoding="utf-8")
            return default

    guarded("environment", step_environment, check)
    if not check.args.skip_tests:
        ok = guarded("tests", step_tests, check, default=False) and ok
    corpus = guarded("corpus", make_corpus, check, default=[])
    first, engine = guarded("models", step_models, check, corpus, default=(None, None))
    if first is not None and corpus:
        guarded("decode", step_decode, check, first.model, corpus)
        guarded("end-to-end", step_end_to_end, check, first.model, engine, corpus)
    target_rows(check)
    return ok and not any(r.status == "failed" for r in check.rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: gpu-check-<UTC stamp>)")
    parser.add_argument("--model", default=None, help="an .onnx model besides the bundled ones (a .pt checkpoint "
                        "beside it enables torch-cuda)")
    parser.add_argument("--images", default=None, help="a folder of photos for decode/end-to-end (default: synthetic)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole check (default 480; a dry run has none unless given, so its "
                        "rows do not depend on how busy the machine is)")
    parser.add_argument("--dry-run", action="store_true", help="every GPU library faked on the CPU (for CI)")
    parser.add_argument("--skip-tests", action="store_true", help="do not run pytest -m gpu")
    args = parser.parse_args(argv)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path(f"gpu-check-{stamp}")
    out.mkdir(parents=True, exist_ok=True)
    if args.budget is None:
        args.budget = float("inf") if args.dry_run else 480.0
    check = Check(args, out, time.monotonic() + args.budget)
    if args.dry_run:
        import pytest
        from helpers.gpu_fakes import install_fake_gpu

        with pytest.MonkeyPatch.context() as patch:
            install_fake_gpu(patch)
            ok = run_steps(check)
    else:
        ok = run_steps(check)
    write_results(check)
    print(f"\nfull results: {out}/results.json, {out}/summary.md", file=sys.stderr)
    if args.dry_run:
        print("DRY RUN: every GPU library was faked on the CPU; the figures measure nothing, the rows show "
              "that every path ran and was compared")
    print(table(check.rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
