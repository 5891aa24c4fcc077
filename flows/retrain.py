"""Prefect flow `retrain` (scheduled in prefect.yaml): rebuild what changed, then champion/challenger."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from clamp.tracking import set_entry_point
from flows.build_dataset import build_dataset


@flow(name="retrain", log_prints=True)
def retrain_flow(
    name: str | None = None, build_overrides: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None
) -> dict:
    """Rebuild the dataset `name` (finished shards are skipped; a failed contract stops here,
    before training), then train a challenger from the champion when the data changed.
    `overrides` are `RetrainConfig` fields; its `dataset_dir` is the rebuilt dataset."""
    from clamp.config import validated
    from clamp.workflows.retrain import RetrainConfig, retrain

    set_entry_point("flows.retrain:retrain_flow")
    cfg = validated(RetrainConfig, overrides or {})  # checked before the (long) build
    summary = build_dataset(name=name, overrides=build_overrides)
    decision = retrain(cfg.model_copy(update={"dataset_dir": summary["dataset_dir"]}))
    create_markdown_artifact(
        key="retrain-decision",
        markdown=(
            f"# retrain: {decision.action}\n\n- dataset fingerprint `{decision.dataset_fingerprint}`\n"
            f"- champion v{decision.champion_version}, challenger v{decision.challenger_version}\n"
            f"- {decision.metric}: champion {decision.champion_metrics.get(decision.metric)}, "
            f"challenger {decision.challenger_metrics.get(decision.metric)}\n"
        ),
    )
    return {
        "action": decision.action,
        "champion_version": decision.champion_version,
        "challenger_version": decision.challenger_version,
    }
