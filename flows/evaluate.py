"""Prefect flows `evaluate` and `ablations`: thin wrappers over `clamp.eval`."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact


@flow(name="evaluate", log_prints=True)
def evaluate_flow(
    model_dir: str = "outputs/music21-corpus/clamp-small/model",
    benchmarks: list[str] | None = None,
    dataset_dir: str | None = "data/datasets/music21-corpus",
    out_dir: str = "outputs/eval",
    include_untrained: bool = True,
    max_items: int | None = None,
) -> list[dict]:
    """Zero-shot, search and linear probe on the benchmarks found, one MLflow run per (model, benchmark)."""
    from clamp.eval.run import evaluate, results_table

    results = evaluate(model_dir, benchmarks, dataset_dir, out_dir, include_untrained=include_untrained, max_items=max_items)
    rows = results_table(results)
    create_table_artifact(key="evaluation", table=[{k: ("-" if v is None else v) for k, v in r.items()} for r in rows],
                          description=f"evaluation of {model_dir}")
    return rows


@flow(name="ablations", log_prints=True)
def ablations_flow(
    dataset_dir: str = "data/datasets/music21-corpus",
    out_dir: str = "outputs/ablations",
    benchmarks: list[str] | None = None,
    preset: str = "small",
    steps: int = 100,
    mmm_steps: int = 100,
    batch_size: int = 16,
    seed: int = 0,
    max_items: int | None = None,
) -> dict:
    """Train and evaluate the grid {text dropout, bar patching vs characters, MMM init}."""
    from clamp.eval.ablations import grid, run_ablations

    result = run_ablations(dataset_dir, out_dir, grid(), benchmarks or ["wikimt"],
                           {"preset": preset, "steps": steps, "batch_size": batch_size, "seed": seed},
                           mmm_steps=mmm_steps, max_items=max_items)
    md = (Path(out_dir) / "ablations.md").read_text()
    create_markdown_artifact(key="ablations", markdown=f"# ablations (MLflow parent run {result['parent_run_id']})\n\n{md}")
    return {"parent_run_id": result["parent_run_id"], "cells": [r["cell"] for r in result["rows"]]}
