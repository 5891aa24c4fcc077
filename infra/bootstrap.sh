#!/usr/bin/env bash
# Install everything into .venv in the checkout (idempotent: a stamp of pyproject.toml
# skips the install when nothing changed). torch comes first as the pinned CPU build:
# an open torch requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.bootstrap-$(sha256sum pyproject.toml | cut -c1-16)
if [ -f "$stamp" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e '.[dev]' torch==2.13.0
rm -f .venv/.bootstrap-*
touch "$stamp"
