"""The paper's ablations as one grid: text dropout, bar patching vs characters, MMM init.

Every cell trains with the same seed, steps and batch (equal budgets) and is evaluated on the
same benchmarks; cells are child runs of one MLflow parent run, which gets the comparison
table (CSV and Markdown) and a bar plot.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from clamp.config import DEFAULT_DATASET_DIR
from clamp.train.config import TrainConfig


@dataclass(frozen=True)
class AblationCell:
    text_dropout: bool
    input_kind: str  # "patch" (bar patching) or "char"
    mmm_init: bool

    @property
    def name(self) -> str:
        return f"{'patch' if self.input_kind == 'patch' else 'char'}-{'td' if self.text_dropout else 'notd'}-{'mmm' if self.mmm_init else 'scratch'}"


def grid(text_dropout=(True, False), input_kind=("patch", "char"), mmm_init=(True, False)) -> list[AblationCell]:
    cells = [AblationCell(t, k, m) for t, k, m in itertools.product(text_dropout, input_kind, mmm_init)]
    return [c for c in cells if not (c.mmm_init and c.input_kind == "char")]  # MMM pre-trains the patch encoder only


class AblationConfig(BaseModel):
    """The grid's settings: one training budget for every cell (docs/evaluation.md)."""

    model_config = ConfigDict(extra="forbid")

    dataset_dir: str = str(DEFAULT_DATASET_DIR)
    out_dir: str = "outputs/ablations"
    benchmarks: list[str] = Field(default_factory=lambda: ["wikimt"])
    # TrainConfig fields shared by every cell (objective, cell settings and folders are set here)
    train: dict[str, Any] = Field(default_factory=lambda: {"preset": "small", "steps": 100, "batch_size": 16, "seed": 0})
    mmm_steps: int = Field(100, ge=1)
    max_items: int | None = Field(None, ge=1)
    experiment: str = "clamp-ablations"
    tracking_dir: str | None = None
    primary_metric: str | None = None


def run_ablations(cfg: AblationConfig, cells: list[AblationCell] | None = None) -> dict:
    import mlflow

    from clamp.eval.config import EvalConfig
    from clamp.eval.run import evaluate
    from clamp.tracking import flatten, mlflow_run
    from clamp.train.run import train

    cells = cells if cells is not None else grid()
    base, dataset_dir, experiment, tracking_dir = cfg.train, cfg.dataset_dir, cfg.experiment, cfg.tracking_dir
    out = Path(cfg.out_dir)
    rows: list[dict] = []
    with mlflow_run(experiment, "ablations", Path(tracking_dir) if tracking_dir else None) as parent:
        mlflow.log_params(flatten({"base": base, "mmm_steps": cfg.mmm_steps, "benchmarks": ",".join(cfg.benchmarks),
                                   "cells": ",".join(c.name for c in cells)}))
        mmm_dir = None
        if any(c.mmm_init for c in cells):
            mmm = train(TrainConfig(**{**base, "objective": "mmm", "steps": cfg.mmm_steps, "dataset_dir": dataset_dir,
                                       "output_dir": str(out / "mmm"), "run_name": "mmm-init", "experiment": experiment,
                                       "tracking_dir": tracking_dir}))
            mmm_dir = mmm["model_dir"]
        for cell in cells:
            result = train(TrainConfig(**{
                **base, "objective": "clamp", "dataset_dir": dataset_dir, "output_dir": str(out / cell.name),
                "text_dropout": cell.text_dropout, "input_kind": cell.input_kind,
                "init_music_from": mmm_dir if cell.mmm_init else None, "run_name": f"train/{cell.name}",
                "experiment": experiment, "tracking_dir": tracking_dir,
            }))
            evals = evaluate(EvalConfig(model_dir=result["model_dir"], benchmarks=cfg.benchmarks, dataset_dir=dataset_dir,
                                        out_dir=str(out / cell.name / "eval"), include_untrained=False, experiment=experiment,
                                        tracking_dir=tracking_dir, max_items=cfg.max_items))
            row = {"cell": cell.name, "text_dropout": cell.text_dropout, "input": cell.input_kind, "mmm_init": cell.mmm_init,
                   "final_train_loss": result["last_loss"]}
            for e in evals:
                row.update(e.metrics)
            rows.append(row)
        table = write_comparison(rows, out, cfg.primary_metric)
        for path in table:
            mlflow.log_artifact(str(path))
        run_id = parent.info.run_id
    return {"parent_run_id": run_id, "rows": rows}


def write_comparison(rows: list[dict], out: Path, primary_metric: str | None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    csv_path = out / "ablations.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    metric_cols = [c for c in columns if c.endswith(("/zero_shot/accuracy", "/text_to_music/mrr"))]  # not the _ci_ bounds
    md = ["| cell | " + " | ".join(metric_cols) + " |", "|---|" + "---|" * len(metric_cols)]
    md += ["| " + r["cell"] + " | " + " | ".join(f"{r.get(c, float('nan')):.3f}" for c in metric_cols) + " |" for r in rows]
    md_path = out / "ablations.md"
    md_path.write_text("\n".join(md) + "\n")
    metric = primary_metric or (metric_cols[0] if metric_cols else "final_train_loss")
    from clamp.eval.run import pyplot_agg, save_figure

    plt = pyplot_agg()
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(rows), 3.5))
    ax.bar([r["cell"] for r in rows], [r.get(metric, 0.0) for r in rows], color="#4878a8")
    ax.set_ylabel(metric)
    ax.set_title("ablations")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    return [csv_path, md_path, save_figure(fig, out / "ablations.png")]
