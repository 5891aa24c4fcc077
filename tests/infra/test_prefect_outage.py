"""A real Prefect server is killed and restarted while a worker runs the `build-dataset`
deployment. The run has the stack's settings (`infra.stack.STACK_ENV`). The build goes on while
the server is down: its task states travel as events, and only flow-level calls need the API,
which the client retries for about 4 minutes. So the run completes, and its dataset equals an
uninterrupted build. A rerun of the same build then skips every finished chunk and shard: that
is also the way to resume a run that a longer outage crashed.

Slow: 130 s on an idle 2-core machine, more under load. It starts its own server and worker
on a free port and stops them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import flow_run_id, flow_run_state, free_port, is_terminal

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")
BUILD = {
    "shard_size": 20,
    "chunk_max_conversions": 4,
    "decontaminate": False,
    "sources": [{"kind": "music21", "path_filter": "bach/", "formats": ["mxl"], "limit": 40}],
}


class PrefectServer:
    def __init__(self, home: Path, env: dict[str, str], port: int) -> None:
        self.home, self.env, self.port = home, env, port
        self.api = f"http://127.0.0.1:{port}/api"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> float:
        t0 = time.monotonic()
        with open(self.home / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while time.monotonic() - t0 < timeout:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.api}/health", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - t0
            time.sleep(0.3)
        raise TimeoutError(f"Prefect server not healthy after {timeout} s; see {self.home / 'server.log'}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)  # its own group: the uvicorn child goes too
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


@pytest.mark.slow
def test_build_survives_a_prefect_server_restart_and_a_rerun_skips_finished_work(tmp_path):
    from clamp.config import BuildConfig
    from clamp.data.build import build_dataset
    from infra.stack import STACK_ENV

    port = free_port()
    (tmp_path / "prefect").mkdir()
    env = {
        **os.environ,
        **STACK_ENV,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    server = PrefectServer(tmp_path / "prefect", env, port)
    server.start()
    worker = None

    def prefect(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([PREFECT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)

    build = {**BUILD, "output_dir": str(tmp_path / "ds"), "cache_dir": str(tmp_path / "cache")}
    params = json.dumps({"name": "p", "overrides": build})
    prepared = tmp_path / "ds" / "p" / "_work" / "prepared"
    try:
        assert prefect("work-pool", "create", "clamp-process", "--type", "process").returncode == 0
        deployed = prefect("--no-prompt", "deploy", "--name", "music21-corpus")
        assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
        with open(tmp_path / "worker.log", "wb") as log:
            worker = subprocess.Popen(
                [PREFECT, "worker", "start", "--pool", "clamp-process"],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        first = prefect("deployment", "run", "build-dataset/music21-corpus", "--params", params)
        assert first.returncode == 0, first.stdout + first.stderr
        run_id = flow_run_id(first.stdout)

        deadline = time.monotonic() + 300
        while len(list(prepared.glob("*.stats.json"))) < 2:
            assert time.monotonic() < deadline, "the build did not start"
            time.sleep(0.2)
        done_at_kill = len(list(prepared.glob("*.stats.json")))
        server.stop(signal.SIGKILL)
        down_from = time.monotonic()
        time.sleep(5)
        restart_seconds = server.start()
        outage = time.monotonic() - down_from
        done_while_down = len(list(prepared.glob("*.stats.json")))

        deadline = time.monotonic() + 300
        while not is_terminal(state := flow_run_state(server.api, run_id)):
            assert time.monotonic() < deadline, f"flow run still {state} 300 s after the restart"
            time.sleep(1)
        first_state = state
        worker_log = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
        assert first_state == "COMPLETED", worker_log

        # a rerun (the resume path after a crash) skips every finished chunk and shard
        again = prefect(
            "deployment",
            "run",
            "build-dataset/music21-corpus",
            "--params",
            params,
            "--watch",
            "--watch-timeout",
            "300",
            timeout=400,
        )
        assert again.returncode == 0 and "Completed" in again.stdout + again.stderr, again.stdout[-2000:]
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGINT)  # the worker ignores SIGTERM
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        server.stop()

    summary = json.loads((tmp_path / "ds" / "p" / "summary.json").read_text())
    n_chunks = len(list(prepared.glob("*.stats.json")))
    n_shards = len(list((tmp_path / "ds" / "p" / "shards").glob("*.arrow")))
    assert summary["chunks_skipped"] == n_chunks > done_at_kill and summary["shards_skipped"] == n_shards > 0
    # equal to an uninterrupted build (in this process; the conversion cache makes it quick)
    reference = build_dataset(BuildConfig(**{**build, "name": "p", "output_dir": str(tmp_path / "ref")}))
    manifest = json.loads((tmp_path / "ds" / "p" / "manifest.json").read_text())
    assert manifest["rows"] == summary["rows_written"] == reference.rows_written > 0
    resumed = {p.name: p.read_bytes() for p in (tmp_path / "ds" / "p" / "shards").glob("*.arrow")}
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "ref" / "p" / "shards").glob("*.arrow")}
    assert resumed == fresh
    print(
        f"\nPrefect server killed with {done_at_kill}/{n_chunks} chunks prepared, down {outage:.1f} s "
        f"(restart {restart_seconds:.1f} s), {done_while_down} chunks prepared by then; the run ended "
        f"{first_state}; the rerun skipped {summary['chunks_skipped']} chunks and {summary['shards_skipped']} shards; "
        f"{manifest['rows']} rows, as the uninterrupted build"
    )
