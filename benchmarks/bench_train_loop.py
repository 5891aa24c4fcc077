"""The real training loop on a built dataset: throughput and the share of time spent waiting for data.

    python benchmarks/bench_train_loop.py --dataset data/datasets/music21-corpus --preset clamp-s-512 \\
        --batch 128 --steps 60 --num-workers 8 --device cuda [--compile] [--resume-check]

Runs `clamp.train.run.train` (MLflow off) for each objective and reads the metrics file it
writes: samples/s, patches/s (real patches, padding not counted) and `data_wait_fraction`,
the share of wall time the loop spent blocked on the data loader, over the last logging
window (the first window holds start-up and compilation). With `--resume-check` the
contrastive run first stops after a checkpoint and is then resumed, which exercises
checkpoint save and load on the device.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run(objective: str, args, out_dir: Path, stop_after: int | None = None) -> dict:
    from clamp.train.config import TrainConfig
    from clamp.train.run import train

    cfg = TrainConfig(
        objective=objective,
        dataset_dir=args.dataset,
        output_dir=str(out_dir),
        preset=args.preset,
        steps=args.steps,
        batch_size=args.batch,
        num_workers=args.num_workers,
        device=args.device,
        mlflow=False,
        text_model=args.text_model,
        log_every=args.log_every,
        checkpoint_every=args.log_every,
        compile=args.compile,
        stop_after=stop_after,
        group_by_length=args.group_by_length,
        lr=1e-3 if objective == "mmm" else 3e-4,
    )
    start = time.perf_counter()
    summary = train(cfg)
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (out_dir / "metrics-rank0.jsonl").read_text().splitlines()]
    windows = [r for r in records if "samples_per_s" in r]
    last = windows[-1]
    return {
        "objective": objective,
        "steps": summary["steps"],
        "first loss": round(records[0]["loss"], 3),
        "last loss": round(records[-1]["loss"], 3),
        "samples/s (last window)": round(last["samples_per_s"], 1),
        "real patches/s (last window)": round(last["patches_per_s"]),
        "data wait fraction (last window)": round(last["data_wait_fraction"], 3),
        "data wait fraction (max over windows after the first)": round(
            max((r["data_wait_fraction"] for r in windows[1:]), default=float("nan")), 3
        ),
        "wall (s)": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="a built dataset folder")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--log-every", type=int, default=20, help="logging window (steps)")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--text-model", default="all-MiniLM-L6-v2")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--group-by-length",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="length-grouped batches (default: on for mmm, off for clamp)",
    )
    parser.add_argument("--objective", choices=["mmm", "clamp", "both"], default="both")
    parser.add_argument(
        "--resume-check", action="store_true", help="stop the contrastive run after a checkpoint, then resume it"
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for objective in ["mmm", "clamp"] if args.objective == "both" else [args.objective]:
            out_dir = Path(tmp) / objective
            if objective == "clamp" and args.resume_check:
                stopped = run(objective, args, out_dir, stop_after=2 * args.log_every)
                print(f"stopped after step {stopped['steps']}; resuming", flush=True)
            results.append(run(objective, args, out_dir))
            print(json.dumps(results[-1]), flush=True)
    keys = list(results[0])
    width = max(map(len, keys))
    for k in keys:
        print(f"{k:<{width}}  " + "  ".join(f"{r[k]!s:>10}" for r in results))


if __name__ == "__main__":
    main()
