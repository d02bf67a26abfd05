#!/usr/bin/env bash
# Reproduce the bundled model nima_rt/models/technical.onnx (v1 recipe) with today's commands:
# the 43 v1 reference photos' splits (29 train, 6 validation; every other photo is test), the 10 v1
# distortion types, recipes/technical-v1.toml (no ranking term). recipes/technical.sh is the v3
# recipe and its cross-source evaluation (docs/reference/models.md).
#
#   pip install -e '.[train]'
#   recipes/technical-v1.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-work/technical-v1}"
CACHE="${NIMA_RT_REFERENCES:-$WORK/references}"
MODEL_OUT="${NIMA_RT_MODEL_OUT:-$WORK/technical.onnx}"
FIGURES="${NIMA_RT_FIGURES:-$WORK/figures}"
V1_TYPES="gaussian_blur,motion_blur,jpeg,white_noise,impulse_noise,underexposure,overexposure,contrast_loss,saturation,pixelation"
mkdir -p "$WORK"
stamp() { date -u +%H:%M:%S; }

echo "$(stamp) fetching reference photos into $CACHE" >&2
nima-rt fetch-references "$CACHE" --catalogue v1

echo "$(stamp) building the dataset (v1 types)" >&2
nima-rt build-dataset "$CACHE/photos" --manifest "$CACHE/manifest.json" --out "$WORK/dataset" \
    --short-side 384 --crops 1 --seed 0 --workers 2 --distortions "$V1_TYPES"

echo "$(stamp) training (recipes/technical-v1.toml)" >&2
nima-rt train --config recipes/technical-v1.toml --labels "$WORK/dataset/train.csv" \
    --val-labels "$WORK/dataset/val.csv" --out "$WORK/runs"
RUN="$(ls -td "$WORK"/runs/*-technical | head -n 1)"

echo "$(stamp) exporting $RUN/best.pt" >&2
nima-rt export "$RUN/best.pt" --output "$WORK/technical-exported.onnx" --verify \
    --verify-images "$WORK/dataset/images/skimage-coffee/full"

echo "$(stamp) held-out report, metadata, figures" >&2
python tools/ship_default.py "$WORK/technical-exported.onnx" "$WORK/dataset" \
    --output "$MODEL_OUT" --report "$WORK/heldout-report.json" --figures "$FIGURES"
echo "$(stamp) done: $MODEL_OUT" >&2
