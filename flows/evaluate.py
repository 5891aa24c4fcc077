"""Prefect flows `evaluate` and `ablations`: thin wrappers over `clamp.eval` and
`clamp.workflows.ablations`. Each takes `overrides` of its typed config (`EvalConfig`,
`AblationConfig`); a deployment passes only what differs from the defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from clamp.tracking import set_entry_point


@flow(name="evaluate", log_prints=True)
def evaluate_flow(overrides: dict[str, Any] | None = None) -> dict[str, list]:
    """Zero-shot, search and linear probe on the benchmarks found, the held-out tasks and retrieval
    probes of a dataset, one MLflow run per (model, benchmark). Returns `results_table`'s report
    (`quality`, `probes`, `warnings`), which `clamp.eval.tables.print_results_table` prints."""
    from clamp.config import validated
    from clamp.eval.config import EvalConfig
    from clamp.eval.run import evaluate
    from clamp.eval.tables import results_table

    cfg = validated(EvalConfig, overrides or {})
    report = results_table(evaluate(cfg))
    create_table_artifact(
        key="evaluation",
        table=report["quality"],
        description=f"evaluation of {cfg.model_dir}: value [95% bootstrap interval]",
    )
    for key, what in (("controls", "input controls"), ("targets", "quality targets (this run)")):
        if report.get(key):
            create_table_artifact(key=f"evaluation-{key}", table=report[key], description=f"{what} of {cfg.model_dir}")
    if report["probes"]:
        create_table_artifact(
            key="evaluation-probes",
            table=report["probes"],
            description=f"retrieval probes of {cfg.model_dir}: precision@10 beside the random share",
        )
    for line in report["warnings"]:
        print(f"warning: {line}")
    return report


@flow(name="ablations", log_prints=True)
def ablations_flow(overrides: dict[str, Any] | None = None) -> dict:
    """Train and evaluate the grid {text dropout, bar patching vs characters, MMM init}."""
    from clamp.config import validated
    from clamp.workflows.ablations import AblationConfig, run_ablations

    set_entry_point("flows.evaluate:ablations_flow")
    cfg = validated(AblationConfig, overrides or {})
    result = run_ablations(cfg)
    md = (Path(cfg.out_dir) / "ablations.md").read_text()
    create_markdown_artifact(
        key="ablations", markdown=f"# ablations (MLflow parent run {result['parent_run_id']})\n\n{md}"
    )
    return {"parent_run_id": result["parent_run_id"], "cells": [r["cell"] for r in result["rows"]]}
