"""A real MLflow server is killed during a real `clamp train`. In one case it is restarted, in
the other it never comes back. Either way training exits 0 with no traceback, and no metric is
lost: every step ends up in the MLflow run, or in the pending file that `clamp mlflow-replay`
sends later.

Each case is slow: 150 to 300 s on the shared 2-core machine under load (less when it is idle). It starts its own
servers on free ports and stops them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from clamp.train.mlflow_outbox import PENDING_FILE, read_pending
from tests.conftest import free_port

BIN = Path(sys.executable).parent
STEPS = 500  # about 20 s of tiny-preset training here: the outage lands well inside it
KILL_AT = 60  # the step after which the server is killed
OUTAGE_STEPS = 20  # steps trained while the server is down, before the restart


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with a SQLite store, started, killed and restarted by the test."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root, self.port = root, port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        root.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 120) -> float:
        """Start it and wait until /health answers; returns the seconds that took."""
        t0 = time.monotonic()
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - the server process holds it
        self.proc = subprocess.Popen(
            [
                str(BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.root / 'mlflow.db'}",
                "--default-artifact-root",
                str(self.root / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # its own group: uvicorn's children die with it
        log.close()
        while time.monotonic() - t0 < timeout:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"MLflow server not healthy after {timeout} s; see {self.root / 'server.log'}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture()
def servers():
    started: list[MlflowServer] = []
    yield started
    for s in started:
        s.kill(signal.SIGTERM)


def _steps_done(out: Path) -> int:
    f = out / "metrics-rank0.jsonl"
    return sum(1 for _ in f.open()) if f.is_file() else 0


def _start_training(dataset: Path, out: Path, uri: str, tmp: Path, **settings) -> subprocess.Popen:
    cfg = {
        "objective": "clamp",
        "dataset_dir": str(dataset),
        "output_dir": str(out),
        "preset": "tiny",
        "steps": STEPS,
        "batch_size": 8,
        "log_every": 1,
        "checkpoint_every": 0,
        "projection_dim": 16,
        "progress": "off",
        "experiment": "outage",
        "register_as": "clamp-outage",
        "cache_dir": str(tmp / "cache"),
        **settings,
    }
    (tmp / "train.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    # stderr goes to a file, so the test can watch for the outbox's warnings while training runs
    with open(tmp / "train.stderr", "w") as err:
        return subprocess.Popen(
            [str(BIN / "clamp"), "train", "--config", str(tmp / "train.yaml")],
            env=env,
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )


def _stderr(tmp: Path) -> str:
    return (tmp / "train.stderr").read_text()


def _wait_for_step(proc: subprocess.Popen, out: Path, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while _steps_done(out) < step:
        assert proc.poll() is None, f"training ended before step {step}"
        assert time.monotonic() < deadline, f"training did not reach step {step} in {timeout} s"
        time.sleep(0.05)


def _summary(stdout: str) -> dict:
    """`clamp train`'s result; MLflow prints its "View run" lines before it."""
    return json.loads(stdout[stdout.index("{\n") :])


def _history(uri: str, run_id: str, key: str = "loss") -> list:
    from mlflow import MlflowClient

    return MlflowClient(uri).get_metric_history(run_id, key)


def _largest_gap(metrics: list, first: int = 0, last: int = 10**9) -> float:
    """The longest wait between two logged steps in [first, last], in seconds (each timestamp
    was taken as its step was logged)."""
    times = [m.timestamp for m in sorted(metrics, key=lambda m: m.step) if first <= m.step <= last]
    return max(b - a for a, b in zip(times, times[1:], strict=False)) / 1000


@pytest.mark.slow
def test_training_survives_an_mlflow_restart_and_loses_no_metric(tiny_dataset, tmp_path, servers):
    from mlflow import MlflowClient

    server = MlflowServer(tmp_path / "mlflow")
    servers.append(server)
    server.start()
    out = tmp_path / "run"
    proc = _start_training(tiny_dataset, out, server.uri, tmp_path)
    _wait_for_step(proc, out, KILL_AT)
    server.kill()
    killed_at = _steps_done(out)
    # Training runs on through the outage for OUTAGE_STEPS steps; then it is paused (SIGSTOP) while
    # the server restarts, so the restart lands mid-run however fast or loaded the machine is
    # (an idle machine finishes the run before MLflow is back up).
    _wait_for_step(proc, out, killed_at + OUTAGE_STEPS)
    deadline = time.monotonic() + 120
    while "unreachable: training goes on" not in _stderr(tmp_path):  # the outbox has noticed
        assert proc.poll() is None and time.monotonic() < deadline, _stderr(tmp_path)[-3000:]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGSTOP)
    paused_at = _steps_done(out)
    try:
        restart_seconds = server.start()
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    back_at = _steps_done(out)
    stdout, _ = proc.communicate(timeout=300)
    stderr = _stderr(tmp_path)
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    # the run was alive (training or flushing its outbox) while the server was down and restarted:
    # the wait above asserts it; on an idle machine the steps may all be done by then
    assert "unreachable: training goes on" in stderr and "reachable again" in stderr
    assert not (out / PENDING_FILE).exists()

    run_id = _summary(stdout)["run_id"]
    losses = _history(server.uri, run_id)
    assert [m.step for m in losses] == list(range(1, STEPS + 1))  # every step, once
    assert _steps_done(out) == STEPS == len(losses)  # metrics lost: 0
    # the loop never waits for the server: no step during the outage took long (before the
    # outbox, one took 6 minutes); on a busy machine a step alone can take a second or two
    during, outside = _largest_gap(losses, killed_at, paused_at), _largest_gap(losses, 1, killed_at - 1)
    assert during < max(5.0, 3 * outside), f"the loop waited {during:.1f} s during the outage"
    client = MlflowClient(server.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.steps"] == str(STEPS) and run.data.tags["objective"] == "clamp"
    assert {a.path for a in client.list_artifacts(run_id, "model")} >= {"model/config.json", "model/model.safetensors"}
    assert [v.run_id for v in client.search_model_versions("name='clamp-outage'")] == [run_id]
    print(
        f"\nMLflow restart mid-run: killed at step {killed_at}, back at step {back_at} "
        f"(restart {restart_seconds:.1f} s); steps in MLflow {len(losses)}/{STEPS}, lost 0; "
        f"longest step during the outage {during:.2f} s (before it {outside:.2f} s)"
    )


@pytest.mark.slow
def test_server_that_never_comes_back_leaves_a_pending_file_that_replays(tiny_dataset, tmp_path, servers):
    from mlflow import MlflowClient

    server = MlflowServer(tmp_path / "mlflow")
    servers.append(server)
    server.start()
    out = tmp_path / "run"
    proc = _start_training(tiny_dataset, out, server.uri, tmp_path, mlflow_flush_seconds=2)
    _wait_for_step(proc, out, KILL_AT)
    server.kill()
    t_kill = time.monotonic()
    stdout, _ = proc.communicate(timeout=300)
    stderr = _stderr(tmp_path)
    after_kill = time.monotonic() - t_kill
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    warning = [ln for ln in stderr.splitlines() if PENDING_FILE in ln and "clamp mlflow-replay" in ln]
    assert len(warning) == 1, stderr[-3000:]
    run_id = _summary(stdout)["run_id"]

    # reconcile: the steps the server got before it died plus those in the pending file are all steps
    (segment,) = read_pending(out / PENDING_FILE)
    header, records = segment
    assert header["run_id"] == run_id and header["experiment"] == "outage"
    pending_steps = sorted(r["step"] for r in records if r["op"] == "metrics" and "loss" in r["metrics"])
    stored_steps = [m.step for m in _history(f"sqlite:///{server.root / 'mlflow.db'}", run_id)]
    both = sorted(stored_steps + pending_steps)
    assert sorted(set(both)) == list(range(1, STEPS + 1))  # metrics lost: 0
    # delivery is at least once: a batch in flight when the server died may have been stored
    # without its answer arriving, and is then pending too (MLflow drops a metric it already has)
    assert len(both) - len(set(both)) <= 10
    assert [r["op"] for r in records if r["op"] != "metrics"] == ["artifacts", "register", "end"]
    assert records[-2] == {"op": "register", "name": "clamp-outage", "artifact_path": "model"}
    assert records[-1]["status"] == "FINISHED"
    kept = tmp_path / "pending-copy.jsonl"
    shutil.copy(out / PENDING_FILE, kept)

    # replay into a fresh, empty server: the run is created again, with the pending records
    fresh = MlflowServer(tmp_path / "fresh")
    servers.append(fresh)
    fresh.start()
    replay = subprocess.run(
        [str(BIN / "clamp"), "mlflow-replay", str(out), "--tracking-uri", fresh.uri],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert not (out / PENDING_FILE).exists()
    client = MlflowClient(fresh.uri)
    (new_run,) = client.search_runs([client.get_experiment_by_name("outage").experiment_id])
    assert new_run.data.tags["clamp.replayed_from_run"] == run_id and new_run.info.status == "FINISHED"
    assert [m.step for m in _history(fresh.uri, new_run.info.run_id)] == pending_steps
    assert [v.run_id for v in client.search_model_versions("name='clamp-outage'")] == [new_run.info.run_id]
    assert "model/model.safetensors" in {a.path for a in client.list_artifacts(new_run.info.run_id, "model")}

    # the usual case: the original server comes back later, and the same file completes the run
    server.kill()
    server.start()
    shutil.copy(kept, out / PENDING_FILE)
    again = subprocess.run(
        [str(BIN / "clamp"), "mlflow-replay", str(out / PENDING_FILE)], capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stdout + again.stderr
    losses = _history(server.uri, run_id)
    assert [m.step for m in losses] == list(range(1, STEPS + 1))
    original = MlflowClient(server.uri)
    assert original.get_run(run_id).info.status == "FINISHED"
    assert [v.run_id for v in original.search_model_versions("name='clamp-outage'")] == [run_id]
    print(
        f"\nMLflow gone for good: exit 0 {after_kill:.1f} s after the kill; {len(stored_steps)} steps stored before, "
        f"{len(pending_steps)} in {PENDING_FILE} ({len(records)} records); replayed into a fresh server and into the "
        f"restarted one: {len(losses)}/{STEPS} steps, lost 0"
    )
