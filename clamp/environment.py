"""Environment defaults for a local, offline pipeline, set in one place.

Every entry point calls `apply_defaults()` before importing Prefect, MLflow, Dask or
transformers: a local run has nowhere to send telemetry and must never reach a model hub.
Values the user already set are kept.
"""

from __future__ import annotations

import os

DEFAULTS: dict[str, str] = {
    # Prefect SDK and MLflow telemetry off (MLflow needs the literal "true")
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # the temporary Prefect server's telemetry writes collide with flow-run writes in its
    # SQLite database ("database is locked" tracebacks)
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # a cold temporary server takes about 15 s here, and minutes on a machine busy with other
    # work (a flow-run test timed out at 90 s beside a training run); Prefect's default is 20 s.
    # It is only an upper bound: a server that is up is used at once
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
    # no model hub: text encoders load from local folders only
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # Dask logs every worker start/stop at INFO; keep the terminal for progress bars
    "DASK_LOGGING__DISTRIBUTED": "warning",
}


def apply_defaults() -> None:
    """Set each default unless the environment already has a value for it."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
