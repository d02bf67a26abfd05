"""``gpu_check.py``'s decode and end-to-end steps: GPU decode (nvJPEG) against the CPU decoder, and the
``Scorer`` over a folder of JPEGs with CPU decode and with GPU decode on the best GPU backend."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from gpu_check_corpus import decode_all, decode_rate
from gpu_check_results import Check, one_line

from nima_rt.io.decode import Preprocess, decode_file
from nima_rt.io.model_file import ModelFile
from nima_rt.runtime.backends import BackendOptions, BackendUnavailable, onnxruntime_backend


def step_decode(check: Check, model: ModelFile, corpus: list[str]) -> None:
    """Pixel and score differences of GPU decode vs the CPU decoder (JPEG draft on and off); decode-only rates."""
    drafted = Preprocess.for_model(model.metadata)
    full = Preprocess.for_model(model.metadata).with_draft(False)
    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(workers) as pool:
        rate = decode_rate(lambda p: list(pool.map(lambda x: decode_file(x, [drafted]), p)), corpus)
        check.add("decode", f"CPU decoder, {workers} threads", "ok", f"{rate:,.0f} images/s (decode + resize)")
        if check.gpu_reason or check.torch_cuda_reason:
            check.skip("decode", "nvJPEG vs CPU decoder", check.gpu_reason or check.torch_cuda_reason or "")
            return
        from nima_rt.runtime import gpu_decode

        try:
            decoder = gpu_decode.GpuDecoder([drafted])
        except BackendUnavailable as exc:
            check.skip("decode", "nvJPEG vs CPU decoder", str(exc))
            return
        label = "nvJPEG" + (" (fake GPU: torchvision's CPU decoder)" if check.args.dry_run else "")
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
        rate = decode_rate(lambda p: [decoder.decode_paths(chunk, pool) for chunk in chunks], corpus)
        check.add("decode", f"{label} decode", "ok", f"{rate:,.0f} images/s (read + decode + resize + copy)")


def step_end_to_end(check: Check, model: ModelFile, engine: Path | None, corpus: list[str]) -> None:
    """The Scorer over the corpus on the best GPU backend (the fp16 engine where one was built)."""
    from nima_rt.runtime.scorer import Scorer, ScorerConfig
    from nima_rt.train import load_contract_module

    batch = 8 if check.args.dry_run else 256
    for mode in ("off", "on"):
        item = f"folder of {len(corpus)} JPEGs, {'GPU' if mode == 'on' else 'CPU'} decode"
        if check.gpu_reason:
            check.skip("end-to-end", item, check.gpu_reason)
            continue
        if not check.fits("end-to-end", item, 40):
            continue
        try:
            config = ScorerConfig(batch_size=batch, device="cuda", gpu_decode=mode,
                                  checkpoint_loader=load_contract_module)
            with Scorer([engine or model.path], config) as scorer:
                summary = scorer.backend_summary
                started, stamps, errors = time.perf_counter(), [], 0
                for result in scorer.score_paths(corpus):
                    stamps.append(time.perf_counter() - started)
                    errors += not result.ok
            rate = len(stamps) / stamps[-1]
            warm = 2 * batch  # steady state after two batches (graph capture, autotuning, engine warm-up)
            steady = (len(stamps) - warm) / (stamps[-1] - stamps[warm - 1]) if len(stamps) >= 3 * batch else rate
            status = "failed" if errors and not check.args.images else "ok"  # synthetic JPEGs must all score
            check.add("end-to-end", item, status,
                      f"{steady:,.0f} images/s after 2 batches ({rate:,.0f} from the start), batch {batch}, "
                      f"{errors} errors ({'; '.join(summary)})",
                      images_per_s=steady, images_per_s_with_warmup=rate, errors=errors, summary=summary)
        except BackendUnavailable as exc:
            check.skip("end-to-end", item, str(exc))
        except Exception as exc:
            check.add("end-to-end", item, "failed", one_line(exc))
