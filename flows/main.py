"""The README's main job: build the music21-corpus dataset, pre-train (MMM) and train CLaMP
(`small` preset, a few minutes on CPU), evaluate on the benchmarks found, log everything to
MLflow and say where to look.

    python -m flows.main --help
"""

from __future__ import annotations

from typing import Annotated

import typer
from prefect import flow

from clamp import cli_common
from clamp.config import DEFAULT_DATASET_NAME, run_dir
from flows.build_dataset import build_dataset
from flows.evaluate import evaluate_flow
from flows.train import pretrain_mmm, train_clamp

# The main job's budget: a few minutes of each training stage on a 2-core CPU.
MMM_STEPS, CLAMP_STEPS, BATCH_SIZE = 150, 150, 16


@flow(name="main-pipeline", log_prints=True)
def main_pipeline(name: str = DEFAULT_DATASET_NAME, mmm_steps: int = MMM_STEPS, clamp_steps: int = CLAMP_STEPS,
                  batch_size: int = BATCH_SIZE, limit: int | None = None) -> dict:
    overrides = {"sources": [{"kind": "music21", "limit": limit}]} if limit else None
    summary = build_dataset(name=name, overrides=overrides)
    dataset_dir = summary["dataset_dir"]
    out = run_dir(name)
    mmm = pretrain_mmm(overrides={"dataset_dir": dataset_dir, "output_dir": str(out / "mmm-small"),
                                  "steps": mmm_steps, "batch_size": batch_size})
    clamp = train_clamp(overrides={"dataset_dir": dataset_dir, "output_dir": str(out / "clamp-small"),
                                   "steps": clamp_steps, "batch_size": batch_size, "init_music_from": mmm["model_dir"]})
    evaluation = evaluate_flow(overrides={"model_dir": clamp["model_dir"], "dataset_dir": dataset_dir,
                                          "out_dir": str(out / "eval")})
    return {"dataset": summary, "mmm": mmm, "clamp": clamp, "evaluation": evaluation}


app = cli_common.make_command_app(__doc__.split("\n\n")[0])


@app.command()
def main(
    name: Annotated[str, typer.Option(help="dataset name")] = DEFAULT_DATASET_NAME,
    mmm_steps: Annotated[int, typer.Option(min=1, help="MMM pre-training steps")] = MMM_STEPS,
    clamp_steps: Annotated[int, typer.Option(min=1, help="contrastive training steps")] = CLAMP_STEPS,
    batch_size: Annotated[int, typer.Option(min=1, help="batch size for both stages")] = BATCH_SIZE,
    limit: cli_common.LimitOption = None,
    debug: cli_common.DebugOption = False,
) -> None:
    """Build, pre-train, train and evaluate; print the tables and where the MLflow runs are."""
    from clamp.config import BuildConfig
    from clamp.data.build import BuildSummary, DatasetLayout, check_dataset_claim
    from clamp.data.report import print_summary
    from clamp.eval.run import print_results_table
    from clamp.tracking import tracking_uri

    cfg = BuildConfig.load(name=name, sources=[{"kind": "music21", "limit": limit}] if limit else None)
    check_dataset_claim(DatasetLayout(cfg.dataset_dir), cfg)  # a clear error before any Prefect start-up
    result = main_pipeline(name, mmm_steps, clamp_steps, batch_size, limit)
    print_summary(BuildSummary(**result["dataset"]))
    for stage in ("mmm", "clamp"):
        r = result[stage]
        print(f"{stage}: {r['steps']} steps, loss {r['first_loss']:.3f} -> {r['last_loss']:.3f}; model in {r['model_dir']}")
    print_results_table(result["evaluation"], "benchmarks (zero-shot needs no fine-tuning; the probe and baselines are for comparison)")
    uri = tracking_uri()
    print(f"\nMLflow runs are in {uri}\nOpen them with:  .venv/bin/mlflow ui --backend-store-uri {uri}")


if __name__ == "__main__":
    app()
