"""A `build-dataset` deployment interrupted on the real stack, two ways, and its dataset equal
to an uninterrupted build each time:

- the Prefect server is killed and restarted mid-build. The run has the stack's settings
  (`infra.stack.STACK_ENV`) and goes on while the server is down: its task states travel as
  events, and only flow-level calls need the API, which the client retries for about 4 minutes.
  So the run completes. A rerun then skips every finished chunk and shard: that is also the way
  to resume a run that a longer outage crashed.
- the Prefect worker and its flow run are killed mid-build, as a lost machine would be. A rerun
  on a restarted worker completes and skips the chunks that were finished.

Both share one stack (Prefect server and worker, MLflow) and one `prefect deploy`; each build has
its own conversion cache, so the kill lands while scores are still being converted. Slow: about
2 minutes together on an idle 2-core machine. The stack binds 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.stack import Ports, Stack, _alive
from tests.conftest import StackDeployments, free_port

BUILD = {
    "shard_size": 20,
    "chunk_max_conversions": 4,
    "decontaminate": False,
    "sources": [{"kind": "music21", "path_filter": "bach/", "formats": ["mxl"], "limit": 40}],
}
DEPLOYMENT = "build-dataset/music21-corpus"


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """The stack with `build-dataset/music21-corpus` deployed."""
    stack = Stack(tmp_path_factory.mktemp("interrupted") / "stack", Ports(free_port(), free_port(), free_port()))
    stack.up()
    try:
        deployed = StackDeployments(stack).prefect("--no-prompt", "deploy", "--name", "music21-corpus")
        assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
        yield stack
    finally:
        stack.down()


def start_build(runs: StackDeployments, build: dict, name: str) -> tuple[tuple[str, str], Path, int]:
    """Start the deployment and wait until 2 chunks are prepared: (the run, prepared folder,
    chunks done by then)."""
    run = runs.start(DEPLOYMENT, {"name": name, "overrides": build})
    prepared = Path(build["output_dir"]) / name / "_work" / "prepared"
    deadline = time.monotonic() + 300
    while len(list(prepared.glob("*.stats.json"))) < 2:
        assert time.monotonic() < deadline, "the build did not start"
        time.sleep(0.2)
    return run, prepared, len(list(prepared.glob("*.stats.json")))


def equals_an_uninterrupted_build(build: dict, name: str, reference_dir: Path) -> dict:
    """The dataset's shards are byte for byte those of the same build run in this process, start
    to end (quick: the conversion cache is warm). Returns the interrupted build's summary."""
    from clamp.config import BuildConfig
    from clamp.data.build import build_dataset

    out = Path(build["output_dir"]) / name
    summary = json.loads((out / "summary.json").read_text())
    reference = build_dataset(BuildConfig(**{**build, "name": name, "output_dir": str(reference_dir)}))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == summary["rows_written"] == reference.rows_written > 0
    resumed = {p.name: p.read_bytes() for p in (out / "shards").glob("*.arrow")}
    fresh = {p.name: p.read_bytes() for p in (reference_dir / name / "shards").glob("*.arrow")}
    assert resumed and resumed == fresh
    return summary


@pytest.mark.slow
def test_build_survives_a_prefect_server_restart_and_a_rerun_skips_finished_work(stack, tmp_path):
    runs = StackDeployments(stack)
    build = {**BUILD, "output_dir": str(tmp_path / "ds"), "cache_dir": str(tmp_path / "cache")}
    run, prepared, done_at_kill = start_build(runs, build, "p")
    server_pid = int((stack.state / "prefect-server.pid").read_text())
    os.killpg(server_pid, signal.SIGKILL)  # its own session: the uvicorn child goes too
    down_from = time.monotonic()
    while _alive(server_pid):  # reaped: it is a child of this process
        time.sleep(0.1)
    time.sleep(5)
    restart_seconds = stack.restart("prefect-server")
    outage = time.monotonic() - down_from
    done_while_down = len(list(prepared.glob("*.stats.json")))

    runs.wait(run, timeout=300)  # COMPLETED, through the outage

    # the resume path after a crash: every finished chunk and shard is skipped
    runs.wait(runs.start(DEPLOYMENT, {"name": "p", "overrides": build}))
    summary = equals_an_uninterrupted_build(build, "p", tmp_path / "ref")
    n_chunks = len(list(prepared.glob("*.stats.json")))
    n_shards = len(list((tmp_path / "ds" / "p" / "shards").glob("*.arrow")))
    assert summary["chunks_skipped"] == n_chunks > done_at_kill and summary["shards_skipped"] == n_shards > 0
    print(
        f"\nPrefect server killed with {done_at_kill}/{n_chunks} chunks prepared, down {outage:.1f} s "
        f"(restart {restart_seconds:.1f} s), {done_while_down} chunks prepared by then; the run completed; "
        f"the rerun skipped {summary['chunks_skipped']} chunks and {summary['shards_skipped']} shards"
    )


@pytest.mark.slow
def test_killed_worker_build_completes_on_rerun_with_identical_shards(stack, tmp_path):
    runs = StackDeployments(stack)
    build = {**BUILD, "output_dir": str(tmp_path / "ds"), "cache_dir": str(tmp_path / "cache")}
    _, _, done_before_kill = start_build(runs, build, "k")
    assert done_before_kill < 10, "the kill must land mid-build"
    os.killpg(int((stack.state / "prefect-worker.pid").read_text()), signal.SIGKILL)  # the worker
    # The process worker starts each flow run in a session of its own, so the run outlives the
    # worker (and, left alive, would keep building beside the rerun: the dataset lock now
    # refuses that). Kill it too, as a lost machine would: its pid is in the lock's record.
    flow_run_pid = json.loads((tmp_path / "ds" / ".k.lock.json").read_text())["pid"]
    os.killpg(os.getpgid(flow_run_pid), signal.SIGKILL)
    time.sleep(1)
    assert not (tmp_path / "ds" / "k" / "manifest.json").exists()
    stack.restart("prefect-worker")
    runs.wait(runs.start(DEPLOYMENT, {"name": "k", "overrides": build}))
    summary = equals_an_uninterrupted_build(build, "k", tmp_path / "ref")
    assert summary["chunks_skipped"] >= done_before_kill  # finished work was not redone
