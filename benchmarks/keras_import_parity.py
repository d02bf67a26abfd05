"""Parity of an imported Keras NIMA model with Keras itself, with the fixed resize and on the JPEG draft path.

    python benchmarks/keras_import_parity.py [--weights weights_mobilenet_aesthetic_0.07.hdf5] [--files 60]

Keras (tensorflow-cpu) predicts with idealo's preprocessing (``load_img(target_size=(224, 224))``,
NEAREST, + ``mobilenet.preprocess_input``); the file converted by ``nima-rt export`` is scored by
the runtime's ONNX Runtime backend on pixels decoded by ``nima_rt.io.decode`` twice: with the model's
recorded resize (JPEG draft off, as imported) and with the JPEG draft forced on. Prints max/mean
|Δ mean|, max |Δ dist| and Spearman of each against Keras, with the CPU model.

Without ``--weights`` the model is idealo's architecture with random non-trivial weights
(tests/helpers/keras_nima.py), calibrated on the first photos. Photos: examples/photos plus ``--files`` JPEGs
of 1-3 MP cut from the reference photos (cpu_throughput.py's corpus; ``--sources DIR`` or the
Debian packages ``nima-rt build-dataset`` uses).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # keras_nima: the test suite's Keras model builder


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def keras_model(weights: Path | None, calibration: list[Path]):
    from helpers.keras_nima import build_nima, idealo_model, keras_inputs

    if weights is None:
        return build_nima(keras_inputs(calibration))
    return idealo_model(weights)


def summary(label: str, mean: np.ndarray, dist: np.ndarray, ref_mean: np.ndarray, ref_dist: np.ndarray) -> str:
    from nima_rt.runtime.metrics import spearman

    delta = np.abs(mean - ref_mean)
    return (f"{label}: {len(mean)} photos, max |Δ mean| {delta.max():.2e}, mean |Δ mean| {delta.mean():.2e}, "
            f"max |Δ dist| {np.abs(dist - ref_dist).max():.2e}, Spearman {spearman(mean, ref_mean):.4f} "
            f"(Keras scores span {np.ptp(ref_mean):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=None, help="a Keras NIMA .hdf5 (default: random weights)")
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--sources", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    from cpu_throughput import make_corpus, source_photos
    from helpers.keras_nima import keras_inputs

    from nima_rt.export.api import ExportRequest, run_export
    from nima_rt.export.verify import onnx_scores
    from nima_rt.io.decode import Preprocess, decode_file
    from nima_rt.io.model_file import load_model_file

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="nima-keras-parity-"))
    photos = sorted((ROOT / "examples" / "photos").glob("*.jpg"))
    if args.files:
        photos += make_corpus(source_photos(args.sources, workdir / "references"), workdir / "corpus", args.files)
    model = keras_model(args.weights, photos[:6])
    source = args.weights
    if source is None:
        source = workdir / "random_nima.h5"
        model.save(source)
    onnx_path = workdir / "imported.onnx"
    run_export(ExportRequest(source=source, output=onnx_path, verify_count=8))
    ref_dist = np.concatenate([model.predict(keras_inputs(photos[i:i + 16]), verbose=0)
                               for i in range(0, len(photos), 16)]).astype(np.float64)
    ref_mean = ref_dist @ np.arange(1, 11)
    metadata = load_model_file(onnx_path).metadata
    run, close = onnx_scores(onnx_path)
    print(f"CPU: {cpu_model()}; weights: {args.weights or 'random (tests/helpers/keras_nima.py, seed 0)'}")
    try:
        for label, draft in (("recorded resize (nearest, no draft)", None), ("JPEG draft forced on", True)):
            spec = [Preprocess.for_model(metadata).with_draft(bool(draft))]
            arrays = np.stack([decode_file(p, spec)[0] for p in photos])
            outs = [run(arrays[i:i + 16]) for i in range(0, len(arrays), 16)]
            dist = np.concatenate([o[0] for o in outs]).astype(np.float64)
            mean = np.concatenate([o[1] for o in outs]).astype(np.float64)
            print(summary(f"nima-rt, {label} vs Keras", mean, dist, ref_mean, ref_dist))
            if draft:
                fixed = np.stack([decode_file(p, [Preprocess.for_model(metadata)])[0] for p in photos])
                moved = [i for i in range(len(photos)) if not np.array_equal(arrays[i], fixed[i])]
                pixels = np.abs(arrays[moved].astype(np.int16) - fixed[moved]).mean() if moved else 0.0
                print(f"  the draft applied to {len(moved)} of {len(photos)} photos (both sides >= 448 px); on those "
                      f"the model's input pixels differ by {pixels:.1f} grey levels on average (0..255)")
    finally:
        close()
    trained_model_draft_effect(photos)


def trained_model_draft_effect(photos: list[Path]) -> None:
    """The same nearest squash with and without the draft through a trained model (the bundled technical
    model): random weights exaggerate sensitivity, a trained network shows what the draft does in practice."""
    import dataclasses

    from nima_rt.contract.spec import ResizeSpec
    from nima_rt.export.verify import onnx_scores
    from nima_rt.io.decode import Preprocess, decode_file
    from nima_rt.io.model_file import load_model_file
    from nima_rt.runtime.metrics import spearman

    bundled = load_model_file("technical")
    nearest = dataclasses.replace(bundled.metadata, resize=ResizeSpec("squash", "nearest", jpeg_draft=True))
    run, close = onnx_scores(bundled.path)
    try:
        means = {}
        for draft in (False, True):
            spec = [Preprocess.for_model(nearest).with_draft(draft)]
            arrays = np.stack([decode_file(p, spec)[0] for p in photos])
            means[draft] = np.concatenate([run(arrays[i:i + 16])[1] for i in range(0, len(arrays), 16)])
    finally:
        close()
    delta = np.abs(means[True] - means[False])
    print(f"bundled technical model (trained), nearest squash, draft vs no draft: {len(photos)} photos, "
          f"max |Δ mean| {delta.max():.3f}, mean |Δ mean| {delta.mean():.3f}, "
          f"Spearman {spearman(means[True], means[False]):.4f} (scores span {np.ptp(means[False]):.2f})")


if __name__ == "__main__":
    main()
