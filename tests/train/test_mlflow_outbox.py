"""The MLflow outbox with no server: records queue without blocking, spill to disk past the bound
in order, and end up in the pending file, which replays into a local store (the run created
again). The real-server cases are in test_mlflow_outage.py."""

from __future__ import annotations

import json
import time

import pytest

from clamp.train.mlflow_outbox import (
    PENDING_FILE,
    MlflowOutbox,
    quick_mlflow_requests,
    read_pending,
    replay_pending,
)
from tests.conftest import free_port


def test_unreachable_server_costs_the_caller_nothing_and_keeps_every_record_in_order(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with quick_mlflow_requests():
        outbox = MlflowOutbox("r1", dead, tmp_path, experiment="exp", run_name="name", flush_seconds=0.5, max_queue=8)
        t0 = time.perf_counter()
        outbox.log_params({"a": 1})
        for step in range(1, 41):  # 40 > max_queue: the rest spill to disk
            outbox.log_metrics({"loss": 1.0 / step}, step)
        outbox.log_artifacts(tmp_path, "model")
        outbox.register_model("m", "model")
        queued = time.perf_counter() - t0
        report = outbox.close("FINISHED")
    assert queued < 1.0  # a dead server never blocks the training loop
    assert report.pending == 43 and report.pending_file == tmp_path / PENDING_FILE
    assert not (tmp_path / (PENDING_FILE + ".spill")).exists()
    ((header, records),) = read_pending(tmp_path / PENDING_FILE)
    assert header["run_id"] == "r1" and header["experiment"] == "exp" and header["tracking_uri"] == dead
    assert [r["op"] for r in records] == ["params", *["metrics"] * 40, "artifacts", "register", "end"]
    assert [r["step"] for r in records if r["op"] == "metrics"] == list(range(1, 41))


def test_pending_file_replays_into_a_store_that_lacks_the_run(tmp_path):
    from mlflow import MlflowClient

    pending = tmp_path / PENDING_FILE
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    lines = [
        {
            "op": "run",
            "run_id": "gone",
            "tracking_uri": "http://nowhere",
            "experiment": "replayed",
            "run_name": "clamp-tiny",
            "start_time": 1_700_000_000_000,
        },
        {"op": "params", "params": {"train.steps": "3"}},
        *(
            {"op": "metrics", "step": s, "timestamp": 1_700_000_000_000 + s, "metrics": {"loss": 1.0 / s}}
            for s in (1, 2, 3)
        ),
        {"op": "artifacts", "local_dir": str(tmp_path / "model"), "artifact_path": "model"},
        {"op": "register", "name": "replayed-model", "artifact_path": "model"},
        {"op": "end", "status": "FINISHED", "end_time": 1_700_000_001_000},
    ]
    pending.write_text("".join(json.dumps(r) + "\n" for r in lines))
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    report = replay_pending(tmp_path, store)
    assert report.left == 0 and report.sent == 7 and len(report.created) == 1 and not pending.exists()
    client = MlflowClient(store)
    run = client.get_run(report.created[0])
    assert run.info.status == "FINISHED" and run.info.run_name == "clamp-tiny"
    assert run.data.tags["clamp.replayed_from_run"] == "gone" and run.data.params["train.steps"] == "3"
    assert [(m.step, m.timestamp) for m in client.get_metric_history(run.info.run_id, "loss")] == [
        (s, 1_700_000_000_000 + s) for s in (1, 2, 3)
    ]  # each metric keeps its time
    assert [v.run_id for v in client.search_model_versions("name='replayed-model'")] == [run.info.run_id]
    # the new experiment keeps its artifacts beside the database, not in ./mlruns of the working folder
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.artifact_location == (tmp_path / "artifacts").as_uri()
    assert list((tmp_path / "artifacts").rglob("model/config.json"))


@pytest.mark.slow
def test_server_down_when_training_starts_is_a_one_line_error_in_seconds(tiny_dataset, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}
    t0 = time.monotonic()
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "clamp"),
            "train",
            "--dataset",
            str(tiny_dataset),
            "--output",
            str(tmp_path / "run"),
            "--preset",
            "tiny",
            "--steps",
            "2",
            "--batch-size",
            "8",
            "--progress",
            "off",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: MLflow tracking server http://127.0.0.1:")
    assert time.monotonic() - t0 < 120  # not MLflow's 4 to 6 minutes of retries
