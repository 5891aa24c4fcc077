"""Prefect flow `retrain` (scheduled in prefect.yaml): rebuild what changed, then champion/challenger."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.build_dataset import build_dataset


@flow(name="retrain", log_prints=True)
def retrain_flow(
    name: str = "music21-corpus",
    model_name: str = "clamp-small",
    build_overrides: dict | None = None,
    train_overrides: dict | None = None,
    benchmarks: list[str] | None = None,
    metric: str = "corpus-rhythm/zero_shot/accuracy",
    max_items: int | None = None,
    out_dir: str = "outputs/retrain",
) -> dict:
    """Rebuild the dataset (finished shards are skipped; a failed contract stops here, before
    training), then train a challenger from the champion when the data changed."""
    from clamp.train.retrain import retrain

    summary = build_dataset(name=name, overrides=build_overrides)
    decision = retrain(summary["dataset_dir"], model_name, out_dir,
                       {"preset": "small", "steps": 100, "batch_size": 16, **(train_overrides or {})},
                       benchmarks or ["wikimt"], metric, max_items)
    create_markdown_artifact(key="retrain-decision", markdown=(
        f"# retrain: {decision.action}\n\n- dataset fingerprint `{decision.dataset_fingerprint}`\n"
        f"- champion v{decision.champion_version}, challenger v{decision.challenger_version}\n"
        f"- {decision.metric}: champion {decision.champion_metrics.get(decision.metric)}, "
        f"challenger {decision.challenger_metrics.get(decision.metric)}\n"))
    return {"action": decision.action, "champion_version": decision.champion_version,
            "challenger_version": decision.challenger_version}
