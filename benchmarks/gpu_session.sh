#!/usr/bin/env bash
# One scripted GPU session: CUDA correctness checks, then the step benchmarks and the real
# training loop, most important first, each under its own time limit so that a slow step
# cannot eat the others. Every step's output goes to $OUT (default: gpu-results/).
#
#   bash benchmarks/gpu_session.sh DATASET_DIR [TEXT_MODEL]
#
# TEXT_MODEL is a name or folder for the text encoder (default all-MiniLM-L6-v2). A folder
# holding only config.json and the tokenizer gets random weights first: step speed does
# not depend on the weights, and that way no 90 MB weight file has to travel.
set -u
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^set -u/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit 0
fi
DATASET=${1:?usage: gpu_session.sh DATASET_DIR [TEXT_MODEL]}
TEXT=${2:-all-MiniLM-L6-v2}
OUT=${OUT:-gpu-results}
PY=${PYTHON:-python3}
# overridable for a dry run elsewhere, e.g. DEVICE=cpu PRESET=tiny M3_PRESET=tiny BATCH=4
DEVICE=${DEVICE:-cuda} PRESET=${PRESET:-clamp-s-512} M3_PRESET=${M3_PRESET:-m3-12l} BATCH=${BATCH:-128}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

step() {  # step NAME SECONDS COMMAND...: run, keep its log, record status and wall time
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  grep -v -E "^(W[0-9]{4} |Loading weights)" "$OUT/$name.log" | tail -n 25
  echo "$name rc=$rc wall=$((SECONDS - t0))s" | tee -a "$OUT/steps.txt"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"

if [ -d "$TEXT" ] && [ ! -f "$TEXT/model.safetensors" ]; then
  $PY -c "
import sys, torch
from transformers import AutoConfig, AutoModel
torch.manual_seed(0)
AutoModel.from_config(AutoConfig.from_pretrained(sys.argv[1])).save_pretrained(sys.argv[1])
" "$TEXT"
fi

step cuda_checks 60 $PY benchmarks/cuda_checks.py --text-model "$TEXT"
# the headline: compiled steps at the preset and batch, the matmul ceiling, the loader rate
step bench_compiled 170 $PY benchmarks/bench_train.py --preset "$PRESET" --batch "$BATCH" --device "$DEVICE" \
  --compile --steps 10 --warmup 3 --text-model "$TEXT" --dataset "$DATASET" --num-workers 8
step loop_eager 100 $PY benchmarks/bench_train_loop.py --dataset "$DATASET" --preset "$PRESET" --batch "$BATCH" \
  --steps 80 --log-every 20 --num-workers 8 --device "$DEVICE" --text-model "$TEXT" --resume-check
# the reference's shapes: M3 step with 12 layers at batch 16, contrastive step at batch 128
step bench_m3_eager 60 $PY benchmarks/bench_train.py --preset "$M3_PRESET" --batch "$BATCH" --mmm-batch 16 \
  --device "$DEVICE" --steps 10 --warmup 3 --text-model "$TEXT"
if [ "${FULL:-0}" = 1 ]; then  # longer: compiled 12-layer steps, compiled training loop
  step bench_m3_compiled 240 $PY benchmarks/bench_train.py --preset "$M3_PRESET" --batch "$BATCH" --mmm-batch 16 \
    --device "$DEVICE" --compile --steps 10 --warmup 3 --text-model "$TEXT"
  step loop_compiled 240 $PY benchmarks/bench_train_loop.py --dataset "$DATASET" --preset "$PRESET" --batch "$BATCH" \
    --steps 100 --log-every 20 --num-workers 8 --device "$DEVICE" --text-model "$TEXT" --compile
fi
echo "=== summary"
cat "$OUT/gpu.txt" "$OUT/steps.txt"
