#!/usr/bin/env bash
# The GPU recipe in one go: MMM warm start, contrastive training of CLaMP-S/512 (bf16, compiled,
# recipes/gpu-clamp-s-512.yaml) and the full evaluation with intervals and probes. Sized for
# about 8 minutes of training on one H100; every log and the evaluation tables go to $OUT.
#
#   bash benchmarks/gpu_recipe.sh DATASET_DIR [TEXT_MODEL]
#
# DATASET_DIR is a built dataset (with captions: build it with this version). TEXT_MODEL is a
# name or folder for the text encoder (default all-MiniLM-L6-v2, which the package ships).
# Set MMM_STEPS / STEPS to scale the budget; CLAMP_BENCHMARKS_DIR for the benchmarks.
set -u
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^set -u/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit 0
fi
DATASET=${1:?usage: gpu_recipe.sh DATASET_DIR [TEXT_MODEL]}
TEXT=${2:-all-MiniLM-L6-v2}
OUT=${OUT:-gpu-results}
PY=${PYTHON:-python3}
MMM_STEPS=${MMM_STEPS:-600} STEPS=${STEPS:-2000}
RUN=${RUN_DIR:-outputs/gpu-recipe}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
CLAMP=(env "$PY" -m clamp.cli)

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
date -u +%Y-%m-%dT%H:%MZ | tee -a "$OUT/gpu.txt"
t0=$SECONDS
"${CLAMP[@]}" train --objective mmm --dataset "$DATASET" --output "$RUN/mmm" --preset clamp-s-512 --steps "$MMM_STEPS" \
  --batch-size 64 --precision bf16 --compile --num-workers 8 --device cuda --progress lines --no-mlflow \
  >"$OUT/mmm.log" 2>&1; echo "mmm rc=$? wall=$((SECONDS - t0))s" | tee -a "$OUT/steps.txt"
t0=$SECONDS
"${CLAMP[@]}" train --config recipes/gpu-clamp-s-512.yaml --dataset "$DATASET" --output "$RUN/clamp" --steps "$STEPS" \
  --text-model "$TEXT" --init-music-from "$RUN/mmm/model" --device cuda --progress lines --no-mlflow \
  >"$OUT/clamp.log" 2>&1; echo "clamp rc=$? wall=$((SECONDS - t0))s" | tee -a "$OUT/steps.txt"
t0=$SECONDS
"${CLAMP[@]}" eval --model "$RUN/clamp/model" --dataset "$DATASET" --out "$RUN/eval" --no-mlflow \
  >"$OUT/eval.log" 2>&1; echo "eval rc=$? wall=$((SECONDS - t0))s" | tee -a "$OUT/steps.txt"
tail -n 80 "$OUT/eval.log"
