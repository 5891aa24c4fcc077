"""MLflow tracking with a project-local default store (SQLite + artifact folder)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from clamp.config import REPO_ROOT
from clamp.environment import apply_defaults
from clamp.errors import UserError

DEFAULT_TRACKING_DIR = Path("mlruns-store")


def tracking_uri(default_dir: Path | None = None) -> str:
    """`MLFLOW_TRACKING_URI`, else `sqlite:///<dir>/mlflow.db`."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    d = (default_dir or DEFAULT_TRACKING_DIR).resolve()
    d.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{d / 'mlflow.db'}"


def runs_url(experiment: str, uri: str | None = None, ui: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI's runs view of `experiment` (`#/experiments/<id>/runs`), which is what a user
    wants to open: the UI's front page of an MLflow 3 store lands on GenAI traces instead. A
    server store gives its own address; a local store gives `ui`, where `mlflow ui` listens."""
    from mlflow import MlflowClient

    uri = uri or tracking_uri()
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else ui.rstrip("/")
    exp = MlflowClient(uri).get_experiment_by_name(experiment)
    return f"{base}/#/experiments/{exp.experiment_id}/runs" if exp is not None else f"{base}/#/experiments"


def local_artifact_location(uri: str) -> str | None:
    """Where a new experiment in a local SQLite store keeps its artifacts: `artifacts/` beside the
    database (MLflow's default is `./mlruns` in whatever the working folder is). None for a
    server or any other store, which decides for itself."""
    if not uri.startswith("sqlite:///"):
        return None
    d = Path(uri[len("sqlite:///") :]).parent.resolve() / "artifacts"
    d.mkdir(parents=True, exist_ok=True)
    return d.as_uri()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
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


def dataset_input(name: str, digest: str, source: str | Path, context: str):
    """An MLflow dataset input (`mlflow.entities.DatasetInput`): a dataset by its name, digest and
    folder, with its role (`training`, `evaluation`). Logged on a run, it fills the runs view's
    Dataset column and its `dataset.name` / `dataset.digest` filters; a tag does neither."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    with warnings.catch_warnings():  # MLflow warns that it guessed the source type: a local folder is meant
        warnings.simplefilter("ignore")
        found = resolve_dataset_source(str(Path(source).resolve()))
    # the store keeps at most 36 characters of a digest (our fingerprints have 32)
    entity = MetaDataset(source=found, name=name, digest=(digest or "unknown")[:36])._to_mlflow_entity()
    return DatasetInput(dataset=entity, tags=[InputTag("mlflow.data.context", context)])


def content_digest(*columns: list[str]) -> str:
    """A 32-hex-digit digest of a dataset's content (parallel string columns): the digest of a
    benchmark, which has no build fingerprint of its own."""
    import hashlib

    h = hashlib.md5(usedforsecurity=False)
    for row in zip(*columns, strict=True):
        for value in row:
            h.update(value.encode())
            h.update(b"\0")
    return h.hexdigest()


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
        with _reachable(mlflow.get_tracking_uri()):
            active = mlflow.start_run(run_name=run_name, nested=True, tags=source)
        with _ending(active) as run:
            yield run
        return
    uri = tracking_uri(tracking_dir)
    with _reachable(uri):
        mlflow.set_tracking_uri(uri)
        location = local_artifact_location(uri)
        if location is not None and mlflow.get_experiment_by_name(experiment) is None:
            mlflow.create_experiment(experiment, artifact_location=location, tags=EXPERIMENT_KIND)
        exp = mlflow.set_experiment(experiment)
        if exp.tags.get("mlflow.experimentKind") != EXPERIMENT_KIND["mlflow.experimentKind"]:
            mlflow.set_experiment_tags(EXPERIMENT_KIND)  # also for experiments made elsewhere (a server)
        active = mlflow.start_run(run_name=run_name, tags=source)
    with _ending(active) as run:
        yield run


@contextmanager
def _reachable(uri: str):
    """A tracking server unreachable when a run starts is a one-line error, not a traceback."""
    from mlflow.exceptions import MlflowException, RestException

    try:
        yield
    except MlflowException as exc:
        if isinstance(exc, RestException) or exc.get_http_status_code() < 500:  # the server answered
            raise
        raise UserError(
            f"MLflow tracking server {uri} is unreachable: start it, or run without MLflow (--no-mlflow)"
        ) from exc


@contextmanager
def _ending(run):
    """Yield the started `run`, then end it as `with mlflow.start_run()` does (FINISHED, or
    FAILED after an exception), except that a server unreachable at that moment costs a warning
    instead of the run's result: the run stays RUNNING until the server hears of its end (training
    puts the end in its pending file, for `clamp mlflow-replay`)."""
    import mlflow
    from mlflow.exceptions import MlflowException, RestException

    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    finally:
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run.info.run_id:
            try:
                mlflow.end_run(status)
            except MlflowException as exc:
                if isinstance(exc, RestException) or exc.get_http_status_code() < 500:  # the server answered
                    raise
                logging.getLogger("clamp.tracking").warning(
                    "MLflow run %s not marked %s: the server is unreachable", run.info.run_id, status
                )
                logging.getLogger("clamp.tracking").debug("end_run failed: %s", exc)
