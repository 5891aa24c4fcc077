"""The README's main job: build the music21-corpus dataset, pre-train (MMM) and train CLaMP
(`small` preset, a few minutes on CPU), evaluate on the benchmarks found, log everything to
MLflow and say where to look.

    python -m flows.main --help
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from prefect import flow  # noqa: E402

from flows.build_dataset import build_dataset  # noqa: E402
from flows.evaluate import evaluate_flow  # noqa: E402
from flows.train import pretrain_mmm, train_clamp  # noqa: E402


@flow(name="main-pipeline", log_prints=True)
def main_pipeline(name: str = "music21-corpus", mmm_steps: int = 150, clamp_steps: int = 150, batch_size: int = 16,
                  limit: int | None = None) -> dict:
    overrides = {"sources": [{"kind": "music21", "limit": limit}]} if limit else None
    summary = build_dataset(name=name, overrides=overrides)
    dataset_dir = summary["dataset_dir"]
    mmm = pretrain_mmm(dataset_dir=dataset_dir, output_dir=f"outputs/{name}/mmm-small", steps=mmm_steps,
                       batch_size=batch_size, overrides={"log_every": 10, "checkpoint_every": 50})
    clamp = train_clamp(dataset_dir=dataset_dir, output_dir=f"outputs/{name}/clamp-small", steps=clamp_steps,
                        batch_size=batch_size, init_music_from=f"outputs/{name}/mmm-small/model",
                        overrides={"log_every": 10, "checkpoint_every": 50})
    evaluation = evaluate_flow(model_dir=clamp["model_dir"], dataset_dir=dataset_dir, out_dir=f"outputs/{name}/eval")
    return {"dataset": summary, "mmm": mmm, "clamp": clamp, "evaluation": evaluation}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.main", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="music21-corpus", help="dataset name")
    parser.add_argument("--mmm-steps", type=int, default=150, help="MMM pre-training steps")
    parser.add_argument("--clamp-steps", type=int, default=150, help="contrastive training steps")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size for both stages")
    parser.add_argument("--limit", type=int, help="cap the corpus records (quick runs)")
    args = parser.parse_args(argv)
    from clamp.data.build import BuildSummary
    from clamp.data.report import print_summary
    from clamp.train.tracking import tracking_uri

    result = main_pipeline(args.name, args.mmm_steps, args.clamp_steps, args.batch_size, args.limit)
    print_summary(BuildSummary(**result["dataset"]))
    for stage in ("mmm", "clamp"):
        r = result[stage]
        print(f"{stage}: {r['steps']} steps, loss {r['first_loss']:.3f} -> {r['last_loss']:.3f}; model in {r['model_dir']}")
    from clamp.eval.run import print_results_table

    print_results_table(result["evaluation"], "benchmarks (zero-shot needs no fine-tuning; the probe and baselines are for comparison)")
    uri = tracking_uri()
    print(f"\nMLflow runs are in {uri}\nOpen them with:  .venv/bin/mlflow ui --backend-store-uri {uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
