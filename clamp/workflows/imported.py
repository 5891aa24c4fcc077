"""Registering an imported model folder (`clamp import`) in the MLflow model registry, so that
scheduled retraining (clamp.workflows.retrain) can take it as its champion: it is downloaded and
trained further like any registered version (docs/checkpoints.md)."""

from __future__ import annotations

import json
from pathlib import Path

from clamp.errors import UserError
from clamp.workflows.retrain import ALIAS, champion

LINEAGE_NAME = "lineage.json"


def register_imported(
    model_dir: str | Path,
    name: str,
    experiment: str = "clamp-imports",
    make_champion: bool = False,
    tracking_dir: str | Path | None = None,
) -> dict[str, str]:
    """Log `model_dir` as the `model` artifact of an MLflow run tagged with its origin, register
    it as a new version of `name` and, with `make_champion` (or when `name` has no champion
    yet), point the `champion` alias at it. Returns the run id, version and whether it is champion."""
    from mlflow import MlflowClient

    from clamp.tracking import mlflow_run
    from clamp.train.run import register_model_folder

    model_dir = Path(model_dir)
    record = model_dir / LINEAGE_NAME
    lineage = {k: str(v) for k, v in json.loads(record.read_text()).items()} if record.is_file() else {}
    if not lineage.get("origin"):
        raise UserError(
            f"{model_dir} has no import record ({LINEAGE_NAME} with an origin): make it with `clamp import`"
        )
    with mlflow_run(experiment, f"import-{lineage['origin']}", Path(tracking_dir) if tracking_dir else None) as run:
        import mlflow

        mlflow.set_tags({"kind": "import", **lineage})
        mlflow.log_artifacts(str(model_dir), artifact_path="model")
        run_id, artifact_uri = run.info.run_id, run.info.artifact_uri
    version = register_model_folder(name, run_id, f"{artifact_uri}/model")
    client = MlflowClient()
    for key in ("origin", "origin_sha256"):
        if key in lineage:
            client.set_model_version_tag(name, version, key, lineage[key])
    promote = make_champion or champion(client, name) is None
    if promote:
        client.set_registered_model_alias(name, ALIAS, version)
    return {"run_id": run_id, "name": name, "version": version, "champion": str(promote)}
