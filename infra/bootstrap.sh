#!/usr/bin/env bash
# Install everything into .venv in the checkout (idempotent: a stamp of pyproject.toml
# skips the install when nothing changed). torch comes first as the pinned CPU build:
# an open torch requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# PostgreSQL for `python -m infra.stack up --postgres`: Debian's package, only when no server is
# installed (a glob: fast when it is). Never fatal: without apt-get, root or sudo, or when the
# install fails, the PostgreSQL tests skip and say why.
if ! compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null && ! command -v pg_ctl >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  if command -v apt-get >/dev/null && { [ -z "$sudo" ] || command -v sudo >/dev/null; } \
     && $sudo env DEBIAN_FRONTEND=noninteractive sh -c \
        'apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql' >/dev/null 2>&1; then
    echo "bootstrap: installed PostgreSQL (Debian's postgresql package)"
  else
    echo "bootstrap: PostgreSQL not installed (needs apt-get as root or sudo); its tests will skip" >&2
  fi
fi
# `clamp serve`'s browser test: Debian's chromium (Playwright drives /usr/bin/chromium and never
# downloads a browser of its own). Never fatal: without it the browser test skips and says why.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if ! command -v chromium >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  if command -v apt-get >/dev/null && { [ -z "$sudo" ] || command -v sudo >/dev/null; } \
     && $sudo env DEBIAN_FRONTEND=noninteractive sh -c \
        'apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver' >/dev/null 2>&1; then
    echo "bootstrap: installed chromium and chromium-driver (Debian's packages)"
  else
    echo "bootstrap: chromium not installed (needs apt-get as root or sudo); the browser test will skip" >&2
  fi
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
stamp=.venv/.bootstrap-$(sha256sum pyproject.toml | cut -c1-16)
if [ -f "$stamp" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e '.[dev]' torch==2.13.0
rm -f .venv/.bootstrap-*
touch "$stamp"
