#!/usr/bin/env bash
# Projection quality on many held-out images, on a GPU: the official schedule (batched; each image's
# result does not depend on its batch) against dapper's default and two other settings, on the same
# N held-out images of the shipped generator. Speed is measured by bench/projection.py without
# --quality-only (official at batch 1).
#   bench/gpu_projection_quality.sh OUT
set -u
OUT=${1:?OUT folder}; PY=${PY:-python3}; N=${N:-40}
export PYTHONUNBUFFERED=1 DAPPER_NO_COMPILE=1
$PY bench/projection.py --device "${DEVICE:-cuda}" --quality-only --n-official "$N" --n-images "$N" \
    --json "$OUT/projection_quality_gpu.json"
$PY bench/projection.py --device "${DEVICE:-cuda}" --n-official 0 --n-images "$N" --steps 400 --early-stop-tol 0 \
    --json "$OUT/projection_quality_gpu_400steps.json"
$PY bench/projection.py --device "${DEVICE:-cuda}" --n-official 0 --n-images "$N" --space w+ \
    --json "$OUT/projection_quality_gpu_wplus.json"
