"""Shared test set-up: every service and tool stays offline and inside temp dirs."""

from __future__ import annotations

import os
import socket

import pytest

os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def benchmarks_dir():
    from clamp.config import default_benchmarks_dir

    path = default_benchmarks_dir()
    if path is None or not path.is_dir():
        pytest.skip("benchmarks directory not found (set CLAMP_BENCHMARKS_DIR)")
    return path
