"""Failure behaviour: Prefect retries a transient fault, a killed worker's build completes on
re-run with identical shards, and a failed data contract stops a retrain before training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, write_tunes

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory):
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.mark.slow
def test_a_transient_ingest_fault_is_retried_by_prefect(tmp_path, prefect_home, monkeypatch):
    """The fault is injected (a source that fails once, like a network blip); the retry is Prefect's."""
    from prefect import flow

    import flows.build_dataset as fb
    from clamp.config import BuildConfig, SourceSpec

    write_tunes(tmp_path / "src", 6)
    cfg = BuildConfig(
        name="r",
        output_dir=tmp_path / "out",
        cache_dir=tmp_path / "c",
        decontaminate=False,
        data_docs=False,
        sources=[SourceSpec(kind="local", path=str(tmp_path / "src"))],
    )
    real_iter, calls = fb.steps.iter_records, []

    def flaky(c):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("source unavailable (injected)")
        return real_iter(c)

    monkeypatch.setattr(fb.steps, "iter_records", flaky)

    @flow
    def ingest_only():
        return fb.stage_task("ingest", fb.steps.ingest_sources).with_options(retry_delay_seconds=0)(cfg)

    chunks = ingest_only()
    assert len(calls) == 2 and len(chunks) == 1


@pytest.mark.slow
def test_failed_contract_stops_retrain_before_training(tmp_path, prefect_home, monkeypatch):
    from flows.retrain import retrain_flow

    # two local sources with the same relative paths: colliding ids, a table-level contract failure
    for d in ("a/tunes", "b/tunes"):
        write_tunes(tmp_path / d, 4, seed=len(d) + (d == "b/tunes"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    overrides = {
        "output_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "c"),
        "decontaminate": False,
        "sources": [
            {"kind": "local", "path": str(tmp_path / "a/tunes")},
            {"kind": "local", "path": str(tmp_path / "b/tunes")},
        ],
    }
    with pytest.raises(Exception, match=r"failed the shard contract: expect_column_values_to_be_unique\(id\)"):
        retrain_flow(
            name="bad",
            build_overrides=overrides,
            overrides={"model_name": "never", "out_dir": str(tmp_path / "retrain")},
        )
    assert not (tmp_path / "retrain").exists()  # no challenger was trained
    assert not list((tmp_path / "out" / "bad" / "shards").glob("*.arrow"))


@pytest.mark.slow
def test_killed_worker_build_completes_on_rerun_with_identical_shards(tmp_path):
    from clamp.config import BuildConfig
    from clamp.data.build import build_dataset
    from infra.stack import Ports, Stack

    build = {
        "output_dir": str(tmp_path / "ds"),
        "cache_dir": str(tmp_path / "cache"),
        "shard_size": 20,
        "chunk_max_conversions": 4,
        "decontaminate": False,
        "sources": [{"kind": "music21", "path_filter": "bach/", "formats": ["mxl"], "limit": 40}],
    }
    stack = Stack(tmp_path / "stack", Ports(free_port(), free_port(), free_port()))
    stack.up()
    env = stack.env()
    try:
        assert (
            subprocess.run(
                [PREFECT, "--no-prompt", "deploy", "--name", "music21-corpus"],
                env=env,
                cwd=REPO,
                capture_output=True,
                timeout=300,
            ).returncode
            == 0
        )
        params = json.dumps({"name": "k", "overrides": build})
        first = subprocess.run(
            [PREFECT, "deployment", "run", "build-dataset/music21-corpus", "--params", params],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert first.returncode == 0
        prepared = tmp_path / "ds" / "k" / "_work" / "prepared"
        deadline = time.monotonic() + 300
        while len(list(prepared.glob("*.stats.json"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        done_before_kill = len(list(prepared.glob("*.stats.json")))
        assert 2 <= done_before_kill < 10, "the kill must land mid-build"
        worker_pid = int((tmp_path / "stack" / "prefect-worker.pid").read_text())
        os.killpg(worker_pid, signal.SIGKILL)  # the worker
        # The process worker starts each flow run in a session of its own, so the run outlives the
        # worker (and, left alive, would keep building beside the rerun: the dataset lock now
        # refuses that). Kill it too, as a lost machine would: its pid is in the lock's record.
        flow_run_pid = json.loads((tmp_path / "ds" / ".k.lock.json").read_text())["pid"]
        os.killpg(os.getpgid(flow_run_pid), signal.SIGKILL)
        time.sleep(1)
        assert not (tmp_path / "ds" / "k" / "manifest.json").exists()
        stack.restart_worker()
        again = subprocess.run(
            [
                PREFECT,
                "deployment",
                "run",
                "build-dataset/music21-corpus",
                "--params",
                params,
                "--watch",
                "--watch-timeout",
                "500",
            ],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert again.returncode == 0 and "Completed" in again.stdout + again.stderr, again.stdout[-2000:]
    finally:
        stack.down()
    summary = json.loads((tmp_path / "ds" / "k" / "summary.json").read_text())
    assert summary["chunks_skipped"] >= done_before_kill  # finished work was not redone
    reference = build_dataset(BuildConfig(**{**build, "name": "k", "output_dir": str(tmp_path / "ref")}))
    resumed = {p.name: p.read_bytes() for p in (tmp_path / "ds" / "k" / "shards").glob("*.arrow")}
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "ref" / "k" / "shards").glob("*.arrow")}
    assert resumed == fresh and reference.rows_written == summary["rows_written"] > 0
