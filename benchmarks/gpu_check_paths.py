"""``gpu_check.py``'s model paths: the models checked (every bundled model, ``--model``, and a random-weight
checkpoint + ONNX pair for torch-cuda), the TensorRT fp32/fp16/int8 engines built from them, and for every
backend x precision that opens: images/s at batch 1, 64 and 256, and parity with CPU scores.

Parity compares each path with **the graph it computes, run by onnxruntime-cpu** (fp32 paths: the model;
the fp16 engine: the fp16 graph ``nima-rt export --precision fp16`` makes; the INT8 engine: its Q/DQ graph;
a reduced-precision file: itself) against export's bars (fp32 1e-4 and fp16 0.02 on the mean score, INT8
Spearman >= 0.99), and reports the difference from the float32 CPU scores beside it (what a user sees).
fp16 whose layer precisions the runtime picks (onnxruntime-tensorrt, torch-cuda) has no CPU twin: it is
held against the float32 CPU scores, with the fp16 bar only where the model's precision policy runs fp16.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gpu_check_results import Check, one_line

from nima_rt.io.model_file import ModelFile, bundled_models, load_model_file
from nima_rt.runtime.backends import (
    BackendOptions,
    BackendUnavailable,
    onnxruntime_backend,
    onnxruntime_gpu,
    tensorrt_engine,
    torch_cuda,
)
from nima_rt.runtime.metrics import spearman

BATCHES, DRY_BATCHES = (1, 64, 256), (1, 4, 8)
ENGINE_PRECISIONS = ("fp32", "fp16", "int8")
TIMED_SECONDS = 1.0  # per throughput figure, after warm-up (0 in a dry run: three timed runs)
# fp16 where the runtime picks each layer's precision (TensorRT's provider, torch's half network): no CPU graph
# computes the same, so it is held against the float32 CPU scores, with export's fp16 bar where the model's
# policy runs fp16 at all (contract.spec.default_gpu_precision), else reported without a bar
RUNTIME_FP16 = "fp16-runtime"


@dataclass
class ModelUnderTest:
    label: str
    model: ModelFile
    precision: str  # of the file's graph (ModelFile.precision): fp32, fp16 or int8
    torch_only: bool = False  # the random-weight pair exists for torch-cuda
    references: dict[str, Path] = field(default_factory=dict)  # precision -> graph run by onnxruntime-cpu


def models_to_check(check: Check) -> list[ModelUnderTest]:
    out = [ModelUnderTest(f"{name} (bundled)", model, model.precision)
           for name, model in ((n, load_model_file(p)) for n, p in bundled_models().items())]
    if not out:
        check.skip("models", "bundled models", "this install bundles no model")
    if check.args.model:
        model = load_model_file(check.args.model)
        out.append(ModelUnderTest(f"{model.path.name} (--model)", model, model.precision))
    size = 32 if check.args.dry_run else 224
    try:
        from helpers.gpu_helpers import build_model_pair

        started = time.perf_counter()
        pair = build_model_pair(check.out / "model", "mobilenet_v2", size)
        out.append(ModelUnderTest(f"{pair.name} (random weights, checkpoint beside)", load_model_file(pair), "fp32",
                                  torch_only=True))
        check.add("models", pair.name, "ok", f"random-weight MobileNetV2 {size} px + its checkpoint, for torch-cuda "
                  f"({time.perf_counter() - started:.1f} s)")
    except ImportError as exc:
        check.skip("models", "random-weight MobileNetV2 pair", f"needs the train extra ({one_line(exc)})")
    for item in out:
        item.references[item.precision] = item.model.path
    return out


def fp16_reference(check: Check, item: ModelUnderTest) -> Path:
    """The fp16 graph of a float32 model, as ``--precision fp16`` (and the fp16 engine) has it."""
    import onnx

    from nima_rt.export.onnx_export import save_model, to_fp16

    path = check.out / f"{item.model.path.stem}.fp16-reference.onnx"
    if not path.is_file():
        save_model(to_fp16(onnx.load(str(item.model.path))), path)
    return path


def step_engines(check: Check, item: ModelUnderTest, calibration: np.ndarray) -> dict[str, Path]:
    """fp32, fp16 and int8 engines with the export command's builder (profile 1/64/256)."""
    engines: dict[str, Path] = {}
    reason = tensorrt_engine.runtime_unavailable()
    for precision in ENGINE_PRECISIONS:
        row = f"{item.label}: tensorrt {precision}"
        if reason is not None:
            check.skip("engines", row, reason)
            continue
        if not check.fits("engines", row, 150):
            continue
        from nima_rt.export.tensorrt_build import TensorRTSettings, build_engine, default_calibration_cache
        from nima_rt.io.files import file_sha256

        profile = DRY_BATCHES if check.args.dry_run else BATCHES
        output = check.out / f"{item.model.path.stem}-{precision}.engine"
        started = time.perf_counter()
        try:
            built = build_engine(item.model.path, output, item.model.metadata, precision, TensorRTSettings(*profile),
                                 calibration if precision == "int8" else None, lambda line: None)
            built.write()
        except Exception as exc:
            check.add("engines", row, "failed", one_line(exc))
            continue
        engines[precision] = output
        if precision == "int8":
            item.references["int8-engine"] = default_calibration_cache(output, file_sha256(item.model.path))
        check.add("engines", row, "ok", f"built in {time.perf_counter() - started:.0f} s, profile "
                  f"{'/'.join(map(str, profile))}, TensorRT {built.info.tensorrt_version}")
    return engines


@dataclass
class Candidate:
    name: str
    precision: str
    opener: Callable[[], Any] | None  # None: skipped, ``reason`` says why
    reason: str | None
    reference: str  # key of ModelUnderTest.references the scores are held against


def candidates(check: Check, item: ModelUnderTest, engines: dict[str, Path]) -> list[Candidate]:
    model, own = item.model, item.precision
    out: list[Candidate] = []
    if not item.torch_only and own == "fp32":
        for precision in ENGINE_PRECISIONS:
            engine = engines.get(precision)
            reason = tensorrt_engine.runtime_unavailable() or (None if engine else "engine not built (see engines)")
            opener = (lambda e=engine: tensorrt_engine.create(load_model_file(e), BackendOptions())) if engine else None
            out.append(Candidate("tensorrt", precision, None if reason else opener, reason,
                                 "int8-engine" if precision == "int8" else precision))
    cache, top = str(check.out / "ort-tensorrt-cache"), max(DRY_BATCHES if check.args.dry_run else BATCHES)
    if not item.torch_only:
        for precision in ("fp16", "fp32") if own == "fp32" else (own,):
            options = BackendOptions(precision=None if own != "fp32" else precision, max_batch=top, cache_dir=cache)
            reason = onnxruntime_gpu.tensorrt_availability(model)
            out.append(Candidate("onnxruntime-tensorrt", precision, (lambda o=options: onnxruntime_gpu.create_tensorrt(
                model, o)) if not reason else None, reason, RUNTIME_FP16 if precision == "fp16" else precision))
        reason = onnxruntime_gpu.cuda_availability(model)
        out.append(Candidate("onnxruntime-cuda", own, (lambda: onnxruntime_gpu.create_cuda(
            model, BackendOptions(max_batch=top))) if not reason else None, reason, own))
    if own == "fp32":
        from nima_rt.train import load_contract_module

        for precision in ("fp16", "fp32"):
            options = BackendOptions(precision=precision, max_batch=top, checkpoint_loader=load_contract_module)
            reason = torch_cuda.availability(model)
            out.append(Candidate("torch-cuda", precision, (lambda o=options: torch_cuda.create(model, o))
                                 if not reason else None, reason, RUNTIME_FP16 if precision == "fp16" else precision))
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


def scores(backend: Any, images: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    outputs = [backend.run(images[i:i + batch]) for i in range(0, len(images), batch)]
    return np.concatenate([o.mean for o in outputs]), np.concatenate([o.dist for o in outputs])


def difference(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    delta = np.abs(got[0] - want[0])
    return {"max_abs_d_mean": float(delta.max()), "mean_abs_d_mean": float(delta.mean()),
            "max_abs_d_dist": float(np.abs(got[1] - want[1]).max()), "spearman": spearman(got[0], want[0])}


def within_bar(precision: str, measured: dict[str, float]) -> tuple[bool, str]:
    from nima_rt.export.verify import INT8_MIN_SPEARMAN, TOLERANCES

    if precision.startswith("int8"):
        return measured["spearman"] >= INT8_MIN_SPEARMAN, f"Spearman >= {INT8_MIN_SPEARMAN}"
    return measured["max_abs_d_mean"] <= TOLERANCES[precision], f"max|d mean| <= {TOLERANCES[precision]:g}"


class CpuScores:
    """onnxruntime-cpu scores of each reference graph on the evaluation images, computed once."""

    def __init__(self, item: ModelUnderTest, images: np.ndarray) -> None:
        self.item, self.images, self.cache = item, images, {}

    def __call__(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        if key not in self.cache:
            backend = onnxruntime_backend.create(load_model_file(self.item.references[key]), BackendOptions())
            try:
                self.cache[key] = scores(backend, self.images)
            finally:
                backend.close()
        return self.cache[key]


def step_paths(check: Check, item: ModelUnderTest, engines: dict[str, Path], images: np.ndarray) -> None:
    """Throughput and parity of every path of one model; onnxruntime-cpu's throughput for reference."""
    rng = np.random.default_rng(0)
    size = item.model.metadata.input_size
    batches = DRY_BATCHES if check.args.dry_run else BATCHES
    seconds = 0.0 if check.args.dry_run else TIMED_SECONDS
    if "fp16" not in item.references and item.precision == "fp32":
        item.references["fp16"] = fp16_reference(check, item)
    cpu = CpuScores(item, images)
    cpu_candidate = Candidate("onnxruntime-cpu", item.precision, lambda: onnxruntime_backend.create(
        item.model, BackendOptions()), None, item.precision)
    for candidate in [*candidates(check, item, engines), cpu_candidate]:
        row = f"{item.label}: {candidate.name} {candidate.precision}"
        if candidate.opener is None:
            check.skip("model-only", row, candidate.reason or "unavailable")
            continue
        if not check.fits("model-only", row, 60 if candidate.name == "onnxruntime-tensorrt" else 25):
            continue
        try:
            backend = candidate.opener()
        except BackendUnavailable as exc:
            check.skip("model-only", row, str(exc))
            continue
        except Exception as exc:
            check.add("model-only", row, "failed", one_line(exc))
            continue
        try:
            figures: dict[str, Any] = {}
            for size_of_batch in batches[:2] if candidate.name == "onnxruntime-cpu" else batches:
                batch = rng.integers(0, 256, (size_of_batch, size, size, 3), dtype=np.uint8)
                rate, latency = images_per_second(backend, batch, seconds)
                figures[str(size_of_batch)] = {"images_per_s": rate, "ms_per_batch": latency}
            rates = " / ".join(f"b{b} {f['images_per_s']:,.0f}" for b, f in figures.items())
            check.add("model-only", row, "ok", f"{rates} images/s", model=item.label, backend=candidate.name,
                      precision=candidate.precision, batches=figures)
            if candidate.name != "onnxruntime-cpu":
                parity_row(check, row, candidate, scores(backend, images), cpu)
        except Exception as exc:
            check.add("model-only", row, "failed", one_line(exc))
        finally:
            backend.close()


def parity_row(check: Check, row: str, candidate: Candidate, got: tuple[np.ndarray, np.ndarray],
               cpu: CpuScores) -> None:
    from nima_rt.contract.spec import default_gpu_precision

    graphs = {"fp32": "the fp32 graph", "fp16": "the fp16 graph", "int8": "the model's INT8 graph",
              "int8-engine": "its Q/DQ graph"}
    runtime_fp16 = candidate.reference == RUNTIME_FP16
    reference = "fp32" if runtime_fp16 else candidate.reference
    same = difference(got, cpu(reference))
    ok, bar = within_bar(reference.split("-")[0] if not runtime_fp16 else "fp16", same)
    if runtime_fp16 and default_gpu_precision(cpu.item.model.metadata) != "fp16":
        ok, bar = True, "no bar: the model's fp16 check did not pass on the CPU, so it runs fp32 unless asked"
        text = f"vs fp32 cpu scores: max|d mean| {same['max_abs_d_mean']:.2g}, Spearman {same['spearman']:.5f} ({bar})"
    else:
        verdict = "within" if ok else "BEYOND"
        text = (f"vs {graphs[reference]} on cpu: max|d mean| {same['max_abs_d_mean']:.2g}, "
                f"Spearman {same['spearman']:.5f} ({verdict} {bar})")
    versus_fp32 = None
    if "fp32" in cpu.item.references and reference != "fp32":
        versus_fp32 = difference(got, cpu("fp32"))
        text += (f"; vs fp32 cpu scores: max|d mean| {versus_fp32['max_abs_d_mean']:.2g}, "
                 f"Spearman {versus_fp32['spearman']:.5f}")
    check.add("parity", row, "ok" if ok else "failed", f"{text} ({len(got[0])} images)", same_graph=same,
              versus_fp32=versus_fp32, reference=reference, bar=bar)
