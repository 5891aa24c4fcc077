"""Scheduled retraining with champion/challenger promotion through the MLflow model registry.

`retrain` compares the dataset's fingerprint with the one the current champion was trained on.
Unchanged data: nothing happens. Changed data: the champion is trained further into a
challenger, both are evaluated on the same benchmarks, and the registry alias `champion` moves
only when the challenger is strictly better on the chosen metric (ties and regressions keep
the champion). The decision and both metric sets are logged as an MLflow run.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from clamp.config import DEFAULT_DATASET_DIR
from clamp.errors import UserError
from clamp.workflows.ablations import DECISION_EVAL

log = logging.getLogger("clamp.retrain")
ALIAS = "champion"


@dataclass
class RetrainDecision:
    action: str  # "no-change" | "bootstrap" | "promoted" | "kept-champion"
    dataset_fingerprint: str
    champion_version: str | None = None
    challenger_version: str | None = None
    metric: str = ""
    champion_metrics: dict[str, float] = field(default_factory=dict)
    challenger_metrics: dict[str, float] = field(default_factory=dict)


def champion(client, name: str):
    """The registered version under the `champion` alias, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return None


def should_promote(champion_value: float | None, challenger_value: float) -> bool:
    """Strictly better only: a tie or a regression keeps the champion."""
    return champion_value is None or challenger_value > champion_value


def apply_decision(
    client, name: str, challenger_version: str, champion_value: float | None, challenger_value: float
) -> bool:
    """Move the `champion` alias to the challenger when it is strictly better; returns whether it moved."""
    promote = should_promote(champion_value, challenger_value)
    if promote:
        client.set_registered_model_alias(name, ALIAS, challenger_version)
    return promote


def download_version(client, version, dest: Path) -> Path:
    import mlflow

    dest.mkdir(parents=True, exist_ok=True)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(dest)))


class RetrainConfig(BaseModel):
    """One retraining round's settings (docs/services.md)."""

    model_config = ConfigDict(extra="forbid")

    dataset_dir: str = str(DEFAULT_DATASET_DIR)
    model_name: str = "clamp-small"
    out_dir: str = "outputs/retrain"
    # TrainConfig fields for the challenger (objective, data and output folders are set here)
    train: dict[str, Any] = Field(default_factory=lambda: {"preset": "small", "steps": 100, "batch_size": 16})
    benchmarks: list[str] = Field(default_factory=lambda: ["wikimt"])
    # strictly higher is better; a metric of the valid split (`valid-<task>`) or a benchmark, never
    # of the test split (`corpus-`) or the held-out collection (`unseen-`): the test split is for
    # the quality report only, so it must not steer which model is promoted
    metric: str = "valid-rhythm/zero_shot/accuracy"
    max_items: int | None = Field(None, ge=1)
    experiment: str = "clamp-retrain"

    @field_validator("metric")
    @classmethod
    def _not_test_split(cls, v: str) -> str:
        if v.startswith(("corpus-", "unseen-")):
            raise ValueError(
                f"{v!r} is a test-split metric; decide on the valid split instead ({'valid-' + v.split('-', 1)[1]!r})"
            )
        return v


def retrain(cfg: RetrainConfig) -> RetrainDecision:
    """One retraining round; see the module docstring. MLflow's tracking URI must be set."""
    import mlflow
    from mlflow import MlflowClient

    from clamp.data.shards import load_manifest
    from clamp.eval.config import EvalConfig
    from clamp.eval.run import evaluate
    from clamp.train.config import TrainConfig
    from clamp.train.run import register_model_folder, train

    dataset_dir, model_name, metric, experiment = cfg.dataset_dir, cfg.model_name, cfg.metric, cfg.experiment
    client = MlflowClient()
    fingerprint = load_manifest(dataset_dir)["fingerprint"]
    current = champion(client, model_name)
    if current is not None and current.tags.get("dataset_fingerprint") == fingerprint:
        log.info("dataset unchanged since champion v%s: nothing to do", current.version)
        return RetrainDecision("no-change", fingerprint, champion_version=str(current.version))

    out = Path(cfg.out_dir) / fingerprint[:12]
    init_from = str(download_version(client, current, out / "champion")) if current is not None else None
    result = train(
        TrainConfig(
            **{
                **cfg.train,
                "objective": "clamp",
                "dataset_dir": dataset_dir,
                "output_dir": str(out / "challenger"),
                "init_from": init_from,
                "experiment": experiment,
                "run_name": f"retrain-{fingerprint[:8]}",
                "mlflow": True,
            }
        )
    )
    run = client.get_run(result["run_id"])
    version = register_model_folder(model_name, result["run_id"], f"{run.info.artifact_uri}/model")
    client.set_model_version_tag(model_name, version, "dataset_fingerprint", fingerprint)

    def evaluation(model_dir: str, name: str) -> dict[str, float]:
        # held-out tasks of the valid split only: the decision never reads the test split
        results = evaluate(
            EvalConfig(
                model_dir=model_dir,
                benchmarks=cfg.benchmarks,
                dataset_dir=dataset_dir,
                out_dir=str(out / name),
                include_untrained=False,
                mlflow=False,
                max_items=cfg.max_items,
                probes=False,
                **DECISION_EVAL,
            )
        )
        return {k: v for r in results for k, v in r.metrics.items()}

    challenger_metrics = evaluation(result["model_dir"], "eval-challenger")
    champion_metrics = evaluation(init_from, "eval-champion") if init_from is not None else {}
    if metric not in challenger_metrics:
        raise UserError(f"metric {metric!r} not among the evaluation metrics: {sorted(challenger_metrics)[:8]} ...")
    promote = apply_decision(client, model_name, version, champion_metrics.get(metric), challenger_metrics[metric])
    action = "bootstrap" if current is None else ("promoted" if promote else "kept-champion")
    decision = RetrainDecision(
        action,
        fingerprint,
        str(current.version) if current else None,
        str(version),
        metric,
        champion_metrics,
        challenger_metrics,
    )
    with contextlib.ExitStack() as stack:
        if mlflow.active_run() is None:
            mlflow.set_experiment(experiment)
            stack.enter_context(mlflow.start_run(run_name=f"decision-{fingerprint[:8]}"))
        mlflow.set_tags(
            {
                "kind": "retrain-decision",
                "action": action,
                "metric": metric,
                "champion_version": str(decision.champion_version),
                "challenger_version": version,
                "dataset_fingerprint": fingerprint,
            }
        )
        mlflow.log_metrics({f"challenger/{k}": v for k, v in challenger_metrics.items()})
        mlflow.log_metrics({f"champion/{k}": v for k, v in champion_metrics.items()})
    log.info(
        "retrain: %s (challenger v%s %s=%.4f, champion %s)",
        action,
        version,
        metric,
        challenger_metrics[metric],
        champion_metrics.get(metric),
    )
    return decision
