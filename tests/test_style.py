"""Style is enforced, not advised: `ruff check` (lint rules and the line length in pyproject.toml)
and `ruff format --check` must pass on the whole repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
RUFF = Path(sys.executable).with_name("ruff")


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["check", "format"])
def test_ruff_passes(args):
    ruff = str(RUFF) if RUFF.is_file() else shutil.which("ruff")
    assert ruff, "ruff is in the dev extra: bash infra/bootstrap.sh installs it"
    done = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
