"""The README's main job: build the music21-corpus dataset, train CLaMP with the CPU recipe
(`recipes/cpu-clamp.yaml`: `small` preset, locked text tower, about a quarter of an hour on 2
cores; `--mmm-init` pre-trains with MMM first, `recipes/cpu-mmm.yaml`), evaluate it and its
untrained twin on the benchmarks and held-out tasks, log everything to MLflow and print the
quality report.

    python -m flows.main --help
"""

from __future__ import annotations

from typing import Annotated

import typer
from prefect import flow

from clamp import cli_common
from clamp.config import DEFAULT_DATASET_NAME, REPO_ROOT, run_dir
from flows.build_dataset import build_dataset
from flows.evaluate import evaluate_flow
from flows.train import pretrain_mmm, train_clamp

# The CPU recipe: every setting is a TrainConfig field in these files.
MMM_RECIPE = REPO_ROOT / "recipes" / "cpu-mmm.yaml"
CLAMP_RECIPE = REPO_ROOT / "recipes" / "cpu-clamp.yaml"


@flow(name="main-pipeline", log_prints=True)
def main_pipeline(
    name: str = DEFAULT_DATASET_NAME,
    mmm_steps: int | None = None,
    clamp_steps: int | None = None,
    batch_size: int | None = None,
    limit: int | None = None,
    mmm_init: bool = False,
) -> dict:
    """`mmm_steps`, `clamp_steps` and `batch_size` override the recipe's values when given.
    The music encoder trains from scratch: at the CPU budget an MMM warm start made the
    contrastive stage take off later, in the ablation grid and at the full 1200 steps (valid
    MRR; README, "Ablations"). `mmm_init=True` runs the MMM stage first and starts from it."""
    overrides = {"sources": [{"kind": "music21", "limit": limit}]} if limit else None
    summary = build_dataset(name=name, overrides=overrides)
    dataset_dir = summary["dataset_dir"]
    out = run_dir(name)
    given = {"batch_size": batch_size} if batch_size else {}
    mmm = (
        pretrain_mmm(
            config_path=str(MMM_RECIPE),
            overrides={
                "dataset_dir": dataset_dir,
                "output_dir": str(out / "mmm-small"),
                **given,
                **({"steps": mmm_steps} if mmm_steps else {}),
            },
        )
        if mmm_init
        else None
    )
    clamp = train_clamp(
        config_path=str(CLAMP_RECIPE),
        overrides={
            "dataset_dir": dataset_dir,
            "output_dir": str(out / "clamp-small"),
            "init_music_from": mmm["model_dir"] if mmm else None,
            **given,
            **({"steps": clamp_steps} if clamp_steps else {}),
        },
    )
    evaluation = evaluate_flow(
        overrides={"model_dir": clamp["model_dir"], "dataset_dir": dataset_dir, "out_dir": str(out / "eval")}
    )
    return {"dataset": summary, "mmm": mmm, "clamp": clamp, "evaluation": evaluation}


app = cli_common.make_command_app(__doc__.split("\n\n")[0])


@app.command()
def main(
    name: Annotated[str, typer.Option(help="dataset name")] = DEFAULT_DATASET_NAME,
    mmm_steps: Annotated[
        int | None, typer.Option(min=1, help="MMM pre-training steps (default: recipes/cpu-mmm.yaml)")
    ] = None,
    clamp_steps: Annotated[
        int | None, typer.Option(min=1, help="contrastive steps (default: recipes/cpu-clamp.yaml)")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="batch size for both stages (default: the recipes')")
    ] = None,
    mmm_init: Annotated[
        bool,
        typer.Option(
            "--mmm-init/--no-mmm-init",
            help="pre-train with MMM and start the contrastive stage from it, or train from scratch",
        ),
    ] = False,
    limit: cli_common.LimitOption = None,
    debug: cli_common.DebugOption = False,
) -> None:
    """Build, pre-train, train and evaluate; print the tables and where the MLflow runs are."""
    from clamp.config import BuildConfig
    from clamp.data.build import BuildSummary, DatasetLayout, check_dataset_claim
    from clamp.data.report import print_summary
    from clamp.eval.config import EvalConfig
    from clamp.eval.tables import print_results_table
    from clamp.tracking import runs_url, tracking_uri
    from clamp.train.config import TrainConfig

    cfg = BuildConfig.load(name=name, sources=[{"kind": "music21", "limit": limit}] if limit else None)
    check_dataset_claim(DatasetLayout(cfg.dataset_dir), cfg)  # a clear error before any Prefect start-up
    result = main_pipeline(name, mmm_steps, clamp_steps, batch_size, limit, mmm_init)
    print_summary(BuildSummary(**result["dataset"]))
    for stage in ("mmm", "clamp"):
        r = result[stage]
        if r is None:
            print(f"{stage}: not run (the music encoder trains from scratch; --mmm-init runs it)")
            continue
        best = (
            f"; best valid MRR {r['best_valid_mrr']:.3f} at step {r['best_step']} (kept)" if r.get("best_step") else ""
        )
        print(
            f"{stage}: {r['steps']} steps, loss {r['first_loss']:.3f} -> {r['last_loss']:.3f}{best}; "
            f"model in {r['model_dir']}"
        )
        if r.get("warning"):
            print(f"warning: {r['warning']}")
    print_results_table(
        result["evaluation"],
        "quality (zero-shot needs no fine-tuning; the linear probe and baselines are for comparison)",
    )
    print(
        f'\nSearch it:  .venv/bin/clamp search "a lively jig in D major" --index {result["dataset"]["dataset_dir"]} '
        f"--model {result['clamp']['model_dir']} --top 10"
    )
    uri = tracking_uri()
    if not uri.startswith(("http://", "https://")):
        print(f"\nMLflow runs are in {uri}\nStart the UI with:  .venv/bin/mlflow ui --backend-store-uri {uri}")
    print(
        f"Training runs:    {runs_url(TrainConfig().experiment, uri)}\n"
        f"Evaluation runs:  {runs_url(EvalConfig().experiment, uri)}"
    )


if __name__ == "__main__":
    app()
