"""Build, measure and gate the bundled model's INT8 variant (``nima_rt/models/<name>.int8.onnx``).

    python tools/ship_int8.py --references CACHE [--model nima_rt/models/technical.onnx] [--output FILE]

``CACHE`` is a reference-photo cache written by ``nima-rt fetch-references CACHE`` (its
manifest gives each photo a train/val/test split). Three disjoint sets of real photographs:

- **calibration**: random crops of the *train* photos (a third clean, the rest with one of the graded
  distortions of ``nima_rt.train.datasets.distortions`` at a random level), the activation ranges QDQ needs;
- **selection**: the *val* photos, clean and with every distortion at every level: each candidate
  recipe (which layers stay float32) is measured here, and the fastest one with Spearman >= 0.99
  against float32 is chosen (among recipes within 3% of the fastest, the one with the highest Spearman);
- **gate**: the *test* photos, graded the same way: the chosen recipe must reach Spearman >= 0.99
  against float32 here too, or nothing is written (exit 1). |Δ mean| is reported beside it.

Speed is the model alone on the runtime's CPU shape (one 1-thread session, batch 8), candidates and
float32 interleaved over several rounds, measured as CPU time per image (process CPU time: on a shared
machine wall time mostly measures the neighbours; CPU time is what the end-to-end ceiling is made
of).
The written file's metadata notes carry the recipe, the calibration count and both measurements.
Prints a JSON summary on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from nima_rt.contract.spec import INPUT_NAME, OUTPUT_NAMES, Preprocess
from nima_rt.export.onnx_export import save_model, set_metadata
from nima_rt.export.quantize import SELECTIVE, QuantizeSettings, quantize_qdq
from nima_rt.export.verify import INT8_MIN_SPEARMAN
from nima_rt.io.decode import from_array
from nima_rt.io.model_file import BUNDLED_DIR, load_model_file
from nima_rt.runtime.backends.onnxruntime_backend import session_options
from nima_rt.runtime.metrics import spearman
from nima_rt.train.datasets import distortions
from nima_rt.train.datasets.references import read_manifest

CANDIDATES = (
    QuantizeSettings(),  # stem + depthwise float32 (export's default)
    QuantizeSettings(float_head=True),
    QuantizeSettings(float_stages=2, float_head=True),
    SELECTIVE,  # stages 0-2 + head
    QuantizeSettings(float_stages=4, float_head=True),
)
SPEED_BATCH = 8
SPEED_TIE = 0.03  # recipes this close in speed count as equally fast


def photos_by_split(cache: Path, manifest_name: str = "manifest.json") -> dict[str, list[Path]]:
    manifest = read_manifest(cache / manifest_name)
    splits: dict[str, list[Path]] = {"train": [], "val": [], "test": []}
    for entry in manifest.values():
        splits[str(entry["split"])].append(cache / "photos" / str(entry["file"]))
    return {split: sorted(paths) for split, paths in splits.items()}


def reference_image(path: Path) -> np.ndarray:
    """A photo at the distortions' reference scale (shorter side 384, like build-dataset)."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    scale = distortions.REFERENCE_SHORT_SIDE / min(rgb.size)
    size = (round(rgb.width * scale), round(rgb.height * scale))
    return np.asarray(rgb.resize(size, Image.Resampling.LANCZOS), dtype=np.uint8)


def graded_set(paths: list[Path], spec: Preprocess, seed: int) -> np.ndarray:
    """Every photo clean and with every distortion at every level, as model inputs."""
    rng = np.random.default_rng(seed)
    images = []
    for path in paths:
        clean = reference_image(path)
        images.append(from_array(clean, [spec])[0])
        for name in distortions.DISTORTIONS:
            for level in range(1, distortions.NUM_LEVELS + 1):
                images.append(from_array(distortions.apply(clean, name, level, rng), [spec])[0])
    return np.stack(images)


def calibration_set(paths: list[Path], spec: Preprocess, count: int, seed: int) -> np.ndarray:
    """``count`` random crops (35-100% of the shorter side) of the photos, two thirds distorted."""
    rng = np.random.default_rng(seed)
    references = [reference_image(path) for path in paths]
    names = list(distortions.DISTORTIONS)
    images = []
    for index in range(count):
        photo = references[index % len(references)]
        side = int(min(photo.shape[:2]) * rng.uniform(0.35, 1.0))
        width = min(photo.shape[1], int(side * rng.uniform(1.0, 1.5)))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - width + 1))
        crop = np.ascontiguousarray(photo[top:top + side, left:left + width])
        if index % 3:
            crop = distortions.apply(crop, names[int(rng.integers(len(names)))], int(rng.integers(1, 6)), rng)
        images.append(from_array(crop, [spec])[0])
    return np.stack(images)


def session(path: Path) -> ort.InferenceSession:
    """One 1-thread session with the runtime's options: the shape nima-rt runs on CPU."""
    return ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])


def mean_scores(model: ort.InferenceSession, images: np.ndarray) -> np.ndarray:
    means = [model.run([OUTPUT_NAMES[1]], {INPUT_NAME: images[i:i + 32]})[0] for i in range(0, len(images), 32)]
    return np.concatenate(means).astype(np.float64)


def gate(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    delta = np.abs(candidate - reference)
    return {"spearman": round(float(spearman(reference, candidate)), 4),
            "mean_abs_delta": round(float(delta.mean()), 4), "max_abs_delta": round(float(delta.max()), 4),
            "signed_mean_delta": round(float((candidate - reference).mean()), 4), "count": int(len(reference))}


def speeds(paths: dict[str, Path], images: np.ndarray, rounds: int, seconds: float) -> dict[str, float]:
    """Images per CPU-second of each model alone (1000 / CPU ms per image), batch 8 on one 1-thread
    session, interleaved over ``rounds``."""
    sessions = {label: session(path) for label, path in paths.items()}
    data = images[:SPEED_BATCH]
    totals = {label: [0, 0.0] for label in paths}
    for model in sessions.values():
        model.run(None, {INPUT_NAME: data})  # warm-up
    for _ in range(rounds):
        for label, model in sessions.items():
            start = time.process_time()
            while (used := time.process_time() - start) < seconds:
                model.run(None, {INPUT_NAME: data})
                totals[label][0] += SPEED_BATCH
            totals[label][1] += used
    return {label: round(count / used, 1) for label, (count, used) in totals.items()}


def choose(selection: dict[str, float], rates: dict[str, float]) -> str | None:
    """The recipe to ship: among those with selection Spearman >= the bar, the fastest; among those
    within SPEED_TIE of the fastest, the one with the highest Spearman. None when none passes."""
    passing = [label for label, rho in selection.items() if rho >= INT8_MIN_SPEARMAN]
    if not passing:
        return None
    fastest = max(rates[label] for label in passing)
    close = [label for label in passing if rates[label] >= fastest * (1 - SPEED_TIE)]
    return max(close, key=lambda label: selection[label])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--references", type=Path, required=True,
                        help="reference-photo cache (manifest.json + photos/)")
    parser.add_argument("--manifest", default="manifest.json",
                        help="the cache's manifest whose splits to use: the model's own (the bundled technical "
                             "model's: manifest-holdout-python.json)")
    parser.add_argument("--model", type=Path, default=BUNDLED_DIR / "technical.onnx")
    parser.add_argument("--output", type=Path, default=None, help="default: <model stem>.int8.onnx beside the model")
    parser.add_argument("--calibration-count", type=int, default=192)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved speed rounds")
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU seconds per model per speed round")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the candidate INT8 files here and reuse them on a rerun of the same float32 model")
    args = parser.parse_args(argv)

    fp32 = load_model_file(args.model)
    output = args.output or args.model.with_name(f"{args.model.stem}.int8.onnx")
    spec = Preprocess.for_model(fp32.metadata)
    split = photos_by_split(args.references, args.manifest)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    log(f"photos: {len(split['train'])} calibration, {len(split['val'])} selection, {len(split['test'])} gate")
    calibration = calibration_set(split["train"], spec, args.calibration_count, seed=1)
    selection = graded_set(split["val"], spec, seed=2)
    held_out = graded_set(split["test"], spec, seed=3)
    log(f"images: {len(calibration)} calibration crops, {len(selection)} selection, {len(held_out)} gate")

    reference = session(fp32.path)
    reference_selection, reference_gate = mean_scores(reference, selection), mean_scores(reference, held_out)
    summary: dict[str, object] = {"model": str(fp32.path), "sha256": fp32.sha256, "candidates": []}
    with tempfile.TemporaryDirectory(prefix="nima-int8-") as scratch:
        folder = args.workdir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        files = {"fp32": fp32.path}
        results = {}
        for index, settings in enumerate(CANDIDATES):
            path = folder / f"{fp32.sha256[:12]}-candidate{index}-{args.calibration_count}.onnx"
            if not path.is_file():
                quantize_qdq(fp32.path, path, calibration, fp32.metadata, settings)
            files[settings.label] = path
            candidate = session(path)
            results[settings.label] = {"selection": gate(reference_selection, mean_scores(candidate, selection)),
                                       "gate": gate(reference_gate, mean_scores(candidate, held_out))}
            log(f"{settings.label}: selection {results[settings.label]['selection']}")
        rates = speeds(files, held_out, args.rounds, args.seconds)
        log(f"model only, batch {SPEED_BATCH}, 1 thread, images per CPU-second: {rates}")
        for settings in CANDIDATES:
            summary["candidates"].append({"recipe": settings.label, **results[settings.label],
                                          "images_per_s": rates[settings.label],
                                          "speedup": round(rates[settings.label] / rates["fp32"], 3)})
        summary["fp32_images_per_s"] = rates["fp32"]
        label = choose({s.label: results[s.label]["selection"]["spearman"] for s in CANDIDATES}, rates)
        if label is None:
            log(f"error: no recipe reaches Spearman {INT8_MIN_SPEARMAN} on the selection set; nothing written")
            print(json.dumps(summary, indent=1))
            return 1
        chosen = next(s for s in CANDIDATES if s.label == label)
        held = results[chosen.label]["gate"]
        summary["chosen"] = chosen.label
        summary["gate"] = held
        if held["spearman"] < INT8_MIN_SPEARMAN:
            log(f"error: {chosen.label}: Spearman {held['spearman']} on {held['count']} held-out images is below "
                f"{INT8_MIN_SPEARMAN}; nothing written")
            print(json.dumps(summary, indent=1))
            return 1
        note = (f"INT8 static QDQ, {chosen.label} (minmax, {len(calibration)} calibration crops of "
                f"{len(split['train'])} train photos); Spearman {held['spearman']:.4f}, mean |Δ mean| "
                f"{held['mean_abs_delta']:.3g}, max |Δ mean| {held['max_abs_delta']:.3g} vs float32 on "
                f"{held['count']} graded held-out images of {len(split['test'])} test photos; "
                f"from {fp32.path.name} sha256 {fp32.sha256[:12]}")
        notes = f"{fp32.metadata.notes}; {note}" if fp32.metadata.notes else note
        import onnx

        model = onnx.load(str(files[chosen.label]))
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        set_metadata(model, dataclasses.replace(fp32.metadata, notes=notes, created=created))
        save_model(model, output)
    summary["output"] = str(output)
    log(f"wrote {output}: {note}")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
