#!/usr/bin/env bash
# The GPU recipe in one go: MMM warm start (recipes/gpu-mmm.yaml), contrastive training of
# CLaMP-S/512 (recipes/gpu-clamp-s-512.yaml, bf16, locked text tower with four text views), then
# the quality targets (CPU and GPU) on the held-out test split and the benchmarks, with the
# untrained twin, and real `clamp search` / `clamp classify` outputs. Each stage stops on a
# wall-clock budget (max_minutes in the recipes), about 6 minutes of one H100 or H200 in all.
#
#   bash benchmarks/gpu_recipe.sh DATASET_DIR [TEXT_MODEL]
#
# DATASET_DIR is a built dataset (with captions: build it with this version). TEXT_MODEL is a
# name or folder for the text encoder (default all-MiniLM-L6-v2, which the package ships).
# Logs, the quality JSON and the outputs go to $OUT (default gpu-results/). Overrides:
# DEVICE (cuda), MMM_ARGS / CLAMP_ARGS (extra `clamp train` options, e.g. "--steps 2 --preset tiny"
# for a dry run on a CPU), SKIP_DEMOS=1 (no search / classify), CLAMP_BENCHMARKS_DIR.
set -u
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^set -u/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit 0
fi
DATASET=${1:?usage: gpu_recipe.sh DATASET_DIR [TEXT_MODEL]}
TEXT=${2:-all-MiniLM-L6-v2}
OUT=${OUT:-gpu-results}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
RUN=${RUN_DIR:-outputs/gpu-recipe}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
CLAMP=("$PY" -m clamp.cli)

stage() {  # stage NAME SECONDS COMMAND...: run under a hard limit, keep the log, record rc and wall time
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  grep -v -E "^(W[0-9]{4} |Loading weights)" "$OUT/$name.log" | tail -n "${TAIL:-12}"
  echo "$name rc=$rc wall=$((SECONDS - t0))s" | tee -a "$OUT/steps.txt"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  date -u +%Y-%m-%dT%H:%MZ
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
} | tee "$OUT/gpu.txt"

# shellcheck disable=SC2086  # MMM_ARGS / CLAMP_ARGS are lists of options
stage mmm 150 "${CLAMP[@]}" train --config recipes/gpu-mmm.yaml --dataset "$DATASET" --output "$RUN/mmm" \
  --device "$DEVICE" --progress lines --no-mlflow ${MMM_ARGS:-}
# shellcheck disable=SC2086
stage clamp 300 "${CLAMP[@]}" train --config recipes/gpu-clamp-s-512.yaml --dataset "$DATASET" --output "$RUN/clamp" \
  --text-model "$TEXT" --init-music-from "$RUN/mmm/model" --device "$DEVICE" --progress lines --no-mlflow ${CLAMP_ARGS:-}
grep -h -E "valid|best" "$OUT/clamp.log" | tail -n 12 >"$OUT/validation.txt"
cp "$RUN/clamp/metrics-rank0.jsonl" "$OUT/clamp-metrics.jsonl" 2>/dev/null
TAIL=40 stage quality 200 "$PY" benchmarks/quality_targets.py --model "$RUN/clamp/model" --dataset "$DATASET" \
  --targets both --out "$RUN/eval" --json "$OUT/quality.json"
if [ "${SKIP_DEMOS:-0}" = 1 ]; then cat "$OUT/steps.txt"; exit 0; fi  # SKIP_DEMOS=1: no search / classify
TAIL=14 stage search 60 "${CLAMP[@]}" search "a lively jig in D major" --top 10 --index "$DATASET" --model "$RUN/clamp/model"
# classify: four held-out tunes of known type, written to one ABC file
"$PY" - "$DATASET" "$OUT/classify-demo.abc" <<'EOF'
import json, sys
import pyarrow.ipc as ipc
from pathlib import Path
want, picked = ["jig", "reel", "hornpipe", "waltz"], {}
for shard in sorted(Path(sys.argv[1], "shards").glob("*.arrow")):
    for row in ipc.open_file(shard).read_all().to_pylist():
        label = json.loads(row["metadata"]).get("labels", {}).get("tune_type")
        if row["split"] == "test" and label in want and label not in picked:
            picked[label] = row["abc"]
Path(sys.argv[2]).write_text("\n\n".join(picked[k] for k in want if k in picked) + "\n")
print("classify demo:", [k for k in want if k in picked])
EOF
TAIL=14 stage classify 60 "${CLAMP[@]}" classify "$OUT/classify-demo.abc" --labels jig,reel,hornpipe,waltz,polka \
  --task tune_type --model "$RUN/clamp/model"
cat "$OUT/steps.txt"
