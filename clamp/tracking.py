"""MLflow tracking with a project-local default store (SQLite + artifact folder)."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from clamp.config import REPO_ROOT
from clamp.environment import apply_defaults

DEFAULT_TRACKING_DIR = Path("mlruns-store")


def tracking_uri(default_dir: Path | None = None) -> str:
    """`MLFLOW_TRACKING_URI`, else `sqlite:///<dir>/mlflow.db`."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    d = (default_dir or DEFAULT_TRACKING_DIR).resolve()
    d.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{d / 'mlflow.db'}"


def artifact_root(default_dir: Path | None = None) -> str:
    d = (default_dir or DEFAULT_TRACKING_DIR).resolve() / "artifacts"
    d.mkdir(parents=True, exist_ok=True)
    return d.as_uri()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)[:500]
    return out


# MLflow 3 opens an experiment without this tag on its GenAI overview (traces, prompts); with
# it, the experiment opens on its runs, as a model-training experiment should.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}

_entry_point: str | None = None


def set_entry_point(name: str) -> None:
    """Name the program that starts the runs (a flow sets e.g. `flows.train:pretrain_mmm`):
    under a Prefect worker MLflow would otherwise record Prefect's `engine.py`."""
    global _entry_point
    _entry_point = name


def entry_point() -> str:
    if _entry_point:
        return _entry_point
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    return f"{program} {command}".strip()


@contextmanager
def mlflow_run(experiment: str, run_name: str, tracking_dir: Path | None = None, enabled: bool = True):
    """Start (or no-op) an MLflow run in the experiment, creating it with a local artifact root.

    Inside an active run (an ablation's parent), the new run is its child in the parent's
    experiment and store.
    """
    if not enabled:
        yield None
        return
    apply_defaults()  # before mlflow's import: its telemetry reads the environment then
    import mlflow

    source = {"mlflow.source.name": entry_point(), "mlflow.source.type": "LOCAL"}
    if mlflow.active_run() is not None:
        with mlflow.start_run(run_name=run_name, nested=True, tags=source) as run:
            yield run
        return
    mlflow.set_tracking_uri(tracking_uri(tracking_dir))
    existing = mlflow.get_experiment_by_name(experiment)
    if existing is None and not os.environ.get("MLFLOW_TRACKING_URI", "").startswith("http"):
        mlflow.create_experiment(experiment, artifact_location=artifact_root(tracking_dir), tags=EXPERIMENT_KIND)
    exp = mlflow.set_experiment(experiment)
    if exp.tags.get("mlflow.experimentKind") != EXPERIMENT_KIND["mlflow.experimentKind"]:
        mlflow.set_experiment_tags(EXPERIMENT_KIND)  # also for experiments made elsewhere (a server)
    with mlflow.start_run(run_name=run_name, tags=source) as run:
        yield run
