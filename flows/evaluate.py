"""Prefect flows `evaluate` and `ablations`: thin wrappers over `clamp.eval` and
`clamp.workflows.ablations`. Each takes `overrides` of its typed config (`EvalConfig`,
`AblationConfig`); a deployment passes only what differs from the defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact


@flow(name="evaluate", log_prints=True)
def evaluate_flow(overrides: dict[str, Any] | None = None) -> list[dict]:
    """Zero-shot, search and linear probe on the benchmarks found, one MLflow run per (model, benchmark)."""
    from clamp.config import validated
    from clamp.eval.config import EvalConfig
    from clamp.eval.run import evaluate, results_table

    cfg = validated(EvalConfig, overrides or {})
    rows = results_table(evaluate(cfg))
    create_table_artifact(key="evaluation", table=[{k: ("-" if v is None else v) for k, v in r.items()} for r in rows],
                          description=f"evaluation of {cfg.model_dir}")
    return rows


@flow(name="ablations", log_prints=True)
def ablations_flow(overrides: dict[str, Any] | None = None) -> dict:
    """Train and evaluate the grid {text dropout, bar patching vs characters, MMM init}."""
    from clamp.config import validated
    from clamp.workflows.ablations import AblationConfig, run_ablations

    cfg = validated(AblationConfig, overrides or {})
    result = run_ablations(cfg)
    md = (Path(cfg.out_dir) / "ablations.md").read_text()
    create_markdown_artifact(key="ablations", markdown=f"# ablations (MLflow parent run {result['parent_run_id']})\n\n{md}")
    return {"parent_run_id": result["parent_run_id"], "cells": [r["cell"] for r in result["rows"]]}
