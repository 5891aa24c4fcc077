#!/usr/bin/env bash
# Refresh requirements.lock, the hashed lock file that infra/bootstrap.sh installs from:
#   bash infra/lock.sh              # after a change to pyproject.toml: keeps every pin it can
#   bash infra/lock.sh --upgrade    # newest releases within pyproject.toml's ranges
# Then run the README's test command. The lock is for Linux x86_64 with Python 3.11, the
# platform the project is tested on. torch is the CPU build (2.13.0+cpu): pip finds it in
# /opt/wheels here, elsewhere in https://download.pytorch.org/whl/cpu (PIP_EXTRA_INDEX_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
[ -x "$UV" ] || UV=uv
links=()
[ -d /opt/wheels ] && links=(--find-links /opt/wheels)
"$UV" pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 "${links[@]}" --no-emit-find-links \
  --custom-compile-command "bash infra/lock.sh" -o requirements.lock --quiet "$@"
echo "requirements.lock: $(grep -c '^[a-z0-9]' requirements.lock) packages pinned with their hashes"
