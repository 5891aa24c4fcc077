"""Exact resume: a run killed after a checkpoint and resumed gives the uninterrupted losses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clamp.train.config import TrainConfig
from clamp.train.run import train

SCRIPT = """
import json, sys
from clamp.train.config import TrainConfig
from clamp.train.run import train
train(TrainConfig(**json.loads(sys.argv[1])))
"""


def _cfg(dataset: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        objective="mmm",
        dataset_dir=str(dataset),
        output_dir=str(out),
        preset="tiny",
        steps=12,
        batch_size=8,
        checkpoint_every=4,
        log_every=4,
        warmup_steps=3,
        lr=1e-3,
        mlflow=False,
        seed=3,
    )
    return TrainConfig(**{**base, **kw})


def assert_same_losses(a: dict[int, float], b: dict[int, float]) -> None:
    """Same steps, same losses up to float32 reduction-order noise (about 1e-7 relative was
    seen on this CPU); a wrong resume (data order, RNG, optimizer state) differs by 1e-3 or more."""
    assert sorted(a) == sorted(b)
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-6), step


def _checkpoint_step(out: Path) -> int:
    state = out / "checkpoints" / "latest" / "state.json"
    if not state.is_file():
        return 0
    return json.loads(state.read_text())["__dict__"][0][1]


@pytest.mark.slow
def test_killed_mmm_run_resumes_with_identical_losses(tiny_dataset, tmp_path):
    steps = 150  # long enough that the kill lands mid-run
    reference = train(_cfg(tiny_dataset, tmp_path / "reference", steps=steps))
    assert reference["steps"] == steps

    out = tmp_path / "killed"
    cfg = _cfg(tiny_dataset, out, steps=steps)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(cfg.to_dict())], env=env)
    try:
        deadline = time.monotonic() + 120
        while _checkpoint_step(out) < 8 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert _checkpoint_step(out) >= 8, "no checkpoint at step 8 before the deadline"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = _checkpoint_step(out)
    assert 8 <= killed_at < steps
    assert not (out / "model").exists()

    resumed = train(_cfg(tiny_dataset, out, steps=steps))
    assert_same_losses(resumed["history"], reference["history"])


def test_contrastive_run_stopped_and_resumed_matches(tiny_dataset, tmp_path):
    kw = dict(objective="clamp", steps=6, batch_size=4, checkpoint_every=3, warmup_steps=2, projection_dim=16)
    reference = train(_cfg(tiny_dataset, tmp_path / "ref", **kw))
    stopped = train(_cfg(tiny_dataset, tmp_path / "stop", stop_after=3, **kw))
    assert stopped["model_dir"] is None and sorted(stopped["history"]) == [0, 1, 2]
    resumed = train(_cfg(tiny_dataset, tmp_path / "stop", **kw))
    assert_same_losses(resumed["history"], reference["history"])
    assert Path(resumed["model_dir"], "model.safetensors").is_file()


def test_a_checkpoint_of_another_run_is_refused_and_a_finished_run_leaves_none(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    train(_cfg(tiny_dataset, out, steps=8, stop_after=4))
    assert (out / "checkpoints" / "latest" / "state.json").is_file()
    with pytest.raises(ValueError, match=r"checkpoint of another run \(different lr\)"):
        train(_cfg(tiny_dataset, out, steps=8, lr=5e-4))
    done = train(_cfg(tiny_dataset, out, steps=8))
    assert done["model_dir"] and not (out / "checkpoints" / "latest").exists()
    again = train(_cfg(tiny_dataset, out, steps=8))  # starts afresh, same seed: same losses
    assert_same_losses(again["history"], done["history"])


def test_metrics_file_has_every_step_once_with_throughput_at_logging_steps(tiny_dataset, tmp_path):
    """Step numbers stay on the device until a logging or checkpoint step; none may be lost,
    repeated or reordered, whatever the two intervals are."""
    out = tmp_path / "run"
    result = train(_cfg(tiny_dataset, out, steps=7, log_every=3, checkpoint_every=5))
    records = [json.loads(line) for line in (out / "metrics-rank0.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["step"] for r in records if "samples_per_s" in r] == [3, 6, 7]
    assert all(isinstance(r["loss"], float) and isinstance(r["grad_norm"], float) for r in records)
    assert all(0.0 <= r["reconstruction_accuracy"] <= 1.0 for r in records)
    assert result["history"] == {r["step"] - 1: r["loss"] for r in records}
    window = records[2]  # steps 1-3: 3 steps x 8 samples
    assert window["samples_per_s"] > 0 and window["patches_per_s"] >= window["samples_per_s"]
