"""`clamp train` itself under `torchrun` with 2 CPU processes (gloo on 127.0.0.1): the training
loop's own multi-process code (`init_dist`, the per-rank batch split, the stop flag broadcast
from rank 0, each rank's RNG in the checkpoint) stops after a checkpoint and resumes to the
losses of the uninterrupted 2-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port
from tests.train.test_resume import assert_same_losses

TORCHRUN = Path(sys.executable).parent / "torchrun"

pytestmark = pytest.mark.slow


def _train(dataset: Path, out: Path, tmp: Path, **extra) -> subprocess.CompletedProcess:
    cfg = {
        "objective": "clamp",
        "dataset_dir": str(dataset),
        "output_dir": str(out),
        "preset": "tiny",
        "steps": 6,
        "batch_size": 8,
        "checkpoint_every": 3,
        "log_every": 1,
        "warmup_steps": 2,
        "lr": 1e-3,
        "projection_dim": 16,
        "mlflow": False,
        "seed": 3,
        "progress": "off",
        **extra,
    }
    config = tmp / f"{out.name}-{len(list(tmp.glob('*.yaml')))}.yaml"
    config.write_text(yaml.safe_dump(cfg))
    # one thread per process: two processes share two cores
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    ran = subprocess.run(
        [
            str(TORCHRUN),
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(free_port()),
            "-m",
            "clamp.cli",
            "train",
            "--config",
            str(config),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert ran.returncode == 0, ran.stderr[-4000:]
    return ran


def _losses(out: Path, rank: int = 0) -> dict[int, float]:
    records = [json.loads(line) for line in (out / f"metrics-rank{rank}.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records}


def test_two_process_clamp_train_stops_and_resumes_to_the_same_losses(tiny_dataset, tmp_path):
    reference = tmp_path / "reference"
    _train(tiny_dataset, reference, tmp_path)
    # two processes trained: each rank logs the loss it computed
    assert sorted(_losses(reference)) == sorted(_losses(reference, 1)) == [1, 2, 3, 4, 5, 6]
    assert not (reference / "metrics-rank2.jsonl").exists()

    run = tmp_path / "stopped"
    _train(tiny_dataset, run, tmp_path, stop_after=3)  # both ranks stop at rank 0's word
    assert sorted(_losses(run)) == [1, 2, 3] and not (run / "model").exists()
    assert (run / "checkpoints" / "latest" / "state.json").is_file()
    _train(tiny_dataset, run, tmp_path)
    for rank in (0, 1):
        assert_same_losses(_losses(run, rank), _losses(reference, rank))
    assert (run / "model" / "model.safetensors").is_file()
