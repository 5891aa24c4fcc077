#!/usr/bin/env bash
# Install everything into .venv in the checkout (idempotent: a stamp of pyproject.toml and
# requirements.lock skips the install when nothing changed). The lock pins torch's CPU build:
# an open torch requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# Debian packages some tests need, installed only when missing. Never fatal: without apt-get,
# root or sudo, or when the install fails, it says so and those tests skip with the reason.
apt_install() {  # apt_install "what it is for" package...
  local why=$1; shift
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  if command -v apt-get >/dev/null && { [ -z "$sudo" ] || command -v sudo >/dev/null; } \
     && $sudo env DEBIAN_FRONTEND=noninteractive sh -c \
        "apt-get update -qq && apt-get install -y -qq --no-install-recommends $*" >/dev/null 2>&1; then
    echo "bootstrap: installed $* (Debian's packages)"
  else
    echo "bootstrap: $* not installed (needs apt-get as root or sudo); $why will skip" >&2
  fi
}
# PostgreSQL for `python -m infra.stack up --postgres` (a glob: fast when it is installed)
if ! compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null && ! command -v pg_ctl >/dev/null; then
  apt_install "the PostgreSQL tests" postgresql
fi
# `clamp serve`'s browser test: Playwright drives Debian's /usr/bin/chromium and never downloads a browser
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if ! command -v chromium >/dev/null; then
  apt_install "the browser test" chromium chromium-driver
fi
# The page's abcjs from the npm registry, pinned by clamp/serve/static/package-lock.json; `npm ci`
# again only when the lock file changed (a stamp of it in node_modules).
web=clamp/serve/static
web_stamp=$web/node_modules/.clamp-lock-$( (sha256sum $web/package-lock.json 2>/dev/null || echo none) | cut -c1-16)
if [ -f $web/package-lock.json ] && [ ! -f "$web_stamp" ]; then
  if command -v npm >/dev/null && (cd $web && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
    touch "$web_stamp"
    echo "bootstrap: installed the page's abcjs (npm ci in $web)"
  else
    echo "bootstrap: npm ci in $web failed or npm is missing: the page draws no scores and the browser test will skip" >&2
  fi
fi
# Python packages: exactly the versions of requirements.lock, each checked against its sha256
# (pip's hash-checking mode refuses anything unpinned or unhashed). `bash infra/lock.sh` refreshes
# the lock; tests/test_lock.py fails when it and pyproject.toml disagree.
stamp=.venv/.bootstrap-$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)
if [ -f "$stamp" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -m pip install --quiet --require-hashes -r requirements.lock; then
  echo "bootstrap: installing requirements.lock failed; torch==2.13.0+cpu comes from /opt/wheels here, elsewhere" \
       "set PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu" >&2
  exit 1
fi
.venv/bin/python -m pip install --quiet --no-deps -e .
rm -f .venv/.bootstrap-*
touch "$stamp"
