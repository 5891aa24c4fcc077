"""The real thing: a Prefect server and a process worker on 127.0.0.1 run the
`build-dataset/music21-corpus` deployment through `prefect deployment run`.

Slow (~1-2 min): it starts a server, deploys from this checkout, starts a worker and waits
for the flow run to complete, then checks the shards it wrote and stops what it started. Twice:
with the server on SQLite, and on PostgreSQL (the stack's own cluster, `infra.stack`).
"""

from __future__ import annotations

import contextlib
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

from clamp.data.shards import load_manifest, read_dataset
from tests.conftest import free_port, query_postgres

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")


def _wait_healthy(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout}s")


def _stop(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_build_dataset_deployment_runs_on_a_worker(tmp_path, database, request):
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "true",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    files = contextlib.ExitStack()
    if database == "postgres":
        request.getfixturevalue("postgres_ready")  # skips, saying why, without PostgreSQL
        from infra.stack import Stack, StackConfig

        pg = Stack(config=StackConfig(state_dir=tmp_path / "pg", postgres_port=free_port()))
        files.callback(pg.stop_postgres)  # last: after the server and the worker
        try:
            pg.start_postgres()
        except BaseException:
            files.close()
            raise
        env |= pg.postgres_env()
    server_log = files.enter_context(open(logs / "server.log", "wb"))  # noqa: SIM115 - closed by the ExitStack
    worker_log_file = files.enter_context(open(logs / "worker.log", "wb"))  # noqa: SIM115
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    worker = None
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/api/health")
        run = lambda *args, **kw: subprocess.run(  # noqa: E731
            [PREFECT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=300, **kw
        )
        created = run("work-pool", "create", "clamp-process", "--type", "process")
        assert created.returncode == 0, created.stdout + created.stderr
        deployed = run("--no-prompt", "deploy", "--name", "music21-corpus")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        worker = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "clamp-process"],
            env=env,
            cwd=REPO,
            stdout=worker_log_file,
            stderr=subprocess.STDOUT,
        )
        out = tmp_path / "datasets"
        overrides = {
            "output_dir": str(out),
            "cache_dir": str(tmp_path / "cache"),
            "sources": [{"kind": "music21", "path_filter": "airdsAirs", "limit": 120}],
            "shard_size": 50,
            "decontaminate": False,
        }
        params = json.dumps({"name": "deploy-test", "overrides": overrides, "n_workers": 2})
        result = run(
            "deployment",
            "run",
            "build-dataset/music21-corpus",
            "--params",
            params,
            "--watch",
            "--watch-timeout",
            "400",
        )
        worker_log = (logs / "worker.log").read_text(errors="replace")[-3000:]
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + worker_log
        assert "Completed" in result.stdout + result.stderr
        if database == "postgres":  # the run is recorded in PostgreSQL
            assert {row[0] for row in query_postgres(pg, "prefect", "SELECT state_type FROM flow_run")} == {"COMPLETED"}
    finally:
        if worker is not None:
            _stop(worker, signal.SIGINT)  # the worker ignores SIGTERM
        _stop(server, signal.SIGTERM)
        files.close()
    assert server.poll() is not None and (worker is None or worker.poll() is not None)

    dataset = out / "deploy-test"
    manifest = load_manifest(dataset)
    summary = json.loads((dataset / "summary.json").read_text())
    assert summary["records_in"] == 120
    assert manifest["rows"] == summary["rows_written"] > 100
    assert [s["rows"] for s in manifest["shards"]][:2] == [50, 50]
    table = read_dataset(dataset, ["id", "n_patches"])
    assert table.num_rows == manifest["rows"]
    assert all(i.startswith("music21:airdsAirs/") for i in table.column("id").to_pylist())
    shutil.rmtree(tmp_path / "prefect", ignore_errors=True)
