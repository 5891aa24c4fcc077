#!/usr/bin/env bash
# Run the GPU recipe on a machine with no network and none of our dependencies but torch and
# transformers (a rented or lent GPU box): pack what it needs here, run it there.
#
#   bash benchmarks/gpu_bundle.sh pack [DATASET_DIR]   # here: writes .gpu/ (about 60 MB)
#   bash benchmarks/gpu_bundle.sh run                  # there, in a copy of the repo with .gpu/
#
# The bundle holds the built dataset's shards (xz), the benchmarks and the conversion cache
# (so MIDI benchmarks need no converter there), wheels of the pure-Python dependencies the
# trainer and evaluation import, and the MiniLM text encoder with its weights in float16 (half
# the bytes). `run` unpacks it, restores the weights to float32 (the one rounding is shared by
# training and evaluation there) and runs benchmarks/gpu_recipe.sh; results go to $OUT.
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ] || [ $# -lt 1 ]; then
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit 0
fi
B=.gpu
case "$1" in
pack)
  DATASET=${2:-data/datasets/music21-corpus}
  PY=${PYTHON:-.venv/bin/python}
  BENCH=${CLAMP_BENCHMARKS_DIR:-../shared/benchmarks}
  grep -qx "/$B/" .git/info/exclude 2>/dev/null || echo "/$B/" >>.git/info/exclude
  rm -rf "$B" && mkdir -p "$B/whl" "$B/minilm"
  tar cf - "$DATASET/shards" "$DATASET/manifest.json" "$DATASET/build_config.json" | xz -6 -T2 >"$B/dataset.tar.xz"
  echo "$DATASET" >"$B/dataset.txt"
  tar cf - -C "$(dirname "$BENCH")" "$(basename "$BENCH")" | xz -6 -T2 >"$B/benchmarks.tar.xz"
  tar cf - .clamp/cache/conversions | xz -6 -T2 >"$B/conversions.tar.xz"
  # the versions installed here, as wheels for CPython 3.12 on x86-64 Linux
  wheels=()
  for pkg in pydantic pydantic_core pydantic-settings Unidecode annotated-types typing-inspection python-dotenv typing_extensions; do
    wheels+=("$pkg==$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$pkg")")
  done
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$B/whl" "${wheels[@]}"
  "$PY" - "$B/minilm" <<'PY'
import shutil, sys
from pathlib import Path
import torch
from safetensors.torch import load_file, save_file
from clamp.model.text import resolve_text_model
src, dst = Path(resolve_text_model("all-MiniLM-L6-v2")), Path(sys.argv[1])
for f in src.iterdir():
    if f.is_file() and f.suffix in (".json", ".txt") :
        shutil.copy(f, dst)
state = load_file(src / "model.safetensors")
save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}, dst / "model.fp16.safetensors")
PY
  du -sh "$B"
  ;;
run)
  if [ "${SKIP_WHEELS:-0}" != 1 ]; then  # SKIP_WHEELS=1: the dependencies are installed already
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$B"/whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  tar xJf "$B/dataset.tar.xz"
  tar xJf "$B/conversions.tar.xz"
  mkdir -p /tmp/bench && tar xJf "$B/benchmarks.tar.xz" -C /tmp/bench
  export CLAMP_BENCHMARKS_DIR
  CLAMP_BENCHMARKS_DIR=$(find /tmp/bench -mindepth 1 -maxdepth 1 -type d | head -1)
  TEXT=/tmp/minilm
  mkdir -p "$TEXT" && cp "$B"/minilm/*.json "$B"/minilm/*.txt "$TEXT"/
  "${PYTHON:-python3}" - "$B/minilm/model.fp16.safetensors" "$TEXT/model.safetensors" <<'PY'
import sys
from safetensors.torch import load_file, save_file
state = load_file(sys.argv[1])
save_file({k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()}, sys.argv[2])
PY
  bash benchmarks/gpu_recipe.sh "$(cat "$B/dataset.txt")" "$TEXT"
  ;;
*) echo "usage: gpu_bundle.sh pack [DATASET_DIR] | run" >&2; exit 2 ;;
esac
