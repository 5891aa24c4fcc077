"""Real build processes for the lock, manifest and disk-full tests: a config file, `clamp build`
in a subprocess, and a holder build that waits, lock held, until the test lets it go."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def write_config(path: Path, tmp_path: Path, name: str, src: Path, **fields: object) -> Path:
    data = {
        "name": name,
        "output_dir": str(tmp_path / "datasets"),
        "cache_dir": str(tmp_path / "cache"),
        "decontaminate": False,
        "data_docs": False,
        "shard_size": 4,
        "sources": [{"kind": "local", "path": str(src)}],
        **fields,
    }
    path.write_text(yaml.safe_dump(data))
    return path


def env(tmp_path: Path) -> dict[str, str]:
    e = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PREFECT_HOME": str(tmp_path / "prefect"),
    }
    e.pop("PREFECT_API_URL", None)
    return e


def clamp_build(tmp_path: Path, *args: str, preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen:
    """`clamp build ...` (in-process executor) as a real process; stdout/stderr piped as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "clamp.cli", "build", "--workers", "1", *args],
        cwd=tmp_path,
        env=env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )


# A build that, once it holds the lock (it is in `ingest`, after `claim_dataset`), writes `ready`
# and waits for `go` before reading its sources.
HOLDER = r"""
import sys, time
from pathlib import Path
from clamp.config import BuildConfig
from clamp.data.build import build_dataset, iter_records

cfg = BuildConfig.load(sys.argv[1])
ready, go = Path(sys.argv[2]), Path(sys.argv[3])

def records():
    ready.write_text("holding")
    while not go.exists():
        time.sleep(0.02)
    yield from iter_records(cfg)

print(build_dataset(cfg, records=records()).rows_written, flush=True)
"""


def start_holder(tmp_path: Path, config: Path, tag: str = "holder") -> tuple[subprocess.Popen, Path]:
    """Start a holder build and wait until it holds the lock; returns (process, its `go` file)."""
    ready, go = tmp_path / f"{tag}.ready", tmp_path / f"{tag}.go"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(config), str(ready), str(go)],
        cwd=tmp_path,
        env=env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the holder build did not start: {proc.communicate()[1][-2000:]}")
        time.sleep(0.05)
    return proc, go


def nonblank_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]
