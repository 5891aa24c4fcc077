"""Integration: the local stack runs every deployment of prefect.yaml through
`prefect deployment run`, with small parameters, and each run completes. The build runs on the
stack's Dask scheduler and workers; training and evaluation log to the stack's MLflow server.
Every deployment on SQLite; on the stack's PostgreSQL (`up --postgres`), the two that write
to both databases in every way the others do: a build on Dask (flow and task runs, artifacts) and
the nightly retrain (MLflow runs, metrics, the model registry and its alias)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.loopback_site import SiteSpec, serve_site
from clamp.data.shards import load_manifest, read_dataset
from infra.stack import Ports, Stack
from tests.conftest import flow_run_id, flow_run_state, free_port, is_terminal, query_postgres
from tests.infra.test_listeners import Listeners, exposed, listeners, merge, report

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")
TINY = {"preset": "tiny", "steps": 3, "batch_size": 8}


@pytest.fixture(scope="module")
def dask_stack(tmp_path_factory) -> Iterator[Stack]:
    """`infra.stack up --dask` on free ports, shared by this module's tests (a start is about
    20 s on 2 cores). Module-scoped, so it stops when they are done: an idle stack still takes
    a fifth of a core, which every later test would pay."""
    stack = Stack(tmp_path_factory.mktemp("dask-stack") / "stack", Ports(free_port(), free_port(), free_port()))
    stack.up(dask=True)
    try:
        yield stack
    finally:
        stack.down()


@pytest.mark.slow
def test_the_stack_with_dask_listens_on_loopback_only(dask_stack):
    """tests/infra/test_listeners.py, on this module's stack."""
    from distributed import Client

    stack = dask_stack
    # up returns once the worker process lives; the workers listen once they have registered
    with Client(stack.scheduler_address, timeout=60) as client:
        client.wait_for_workers(stack.config.dask_workers, timeout=60)
    found: Listeners = {}
    for _ in range(3):  # a few looks, in case a server opens a socket late
        merge(found, listeners(os.getpid()))
        time.sleep(0.5)
    text = report("stack up --dask", found)
    assert not exposed(found), "\n".join(exposed(found)) + "\n" + text
    addrs = {a for v in found.values() for a in v}
    for port in stack.ports:  # the check saw the services themselves
        assert f"127.0.0.1:{port}" in addrs, text
    workers = [k for k in found if "spawn_main" in k[1]]  # the worker processes the nanny spawned
    assert len(workers) >= stack.config.dask_workers, text


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_every_deployment_runs_on_the_local_stack(tmp_path, benchmarks_dir, database, request):
    every = database == "sqlite"  # PostgreSQL changes only where runs are stored, not what runs
    if every:  # this module's stack
        stack = request.getfixturevalue("dask_stack")
    else:
        request.getfixturevalue("postgres_ready")  # skips, saying why, without PostgreSQL
        stack = Stack(tmp_path / "stack", Ports(free_port(), free_port(), free_port()))
        stack.up(dask=True, postgres=True)
    env = stack.env()

    def prefect(*args, timeout=600):
        return subprocess.run([PREFECT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)

    api = env["PREFECT_API_URL"]

    def start(deployment: str, params: dict) -> tuple[str, str]:
        """`prefect deployment run`, as a user types it; the run goes on while the next one starts."""
        r = prefect("deployment", "run", deployment, "--params", json.dumps(params))
        assert r.returncode == 0, f"{deployment}: {r.stdout[-1500:]}{r.stderr[-1500:]}"
        return deployment, flow_run_id(r.stdout)

    def wait(*runs: tuple[str, str], timeout: float = 500) -> None:
        """Each run ends COMPLETED."""
        deadline, pending = time.monotonic() + timeout, dict(runs)
        while pending:
            for deployment, run_id in list(pending.items()):
                state = flow_run_state(api, run_id)
                if is_terminal(state):
                    log = (stack.state / "logs" / "prefect-worker.log").read_text(errors="replace")[-2500:]
                    assert state == "COMPLETED", f"{deployment} ended {state}: {log}"
                    del pending[deployment]
            assert time.monotonic() < deadline, f"still running after {timeout:g} s: {sorted(pending)}"
            time.sleep(1)

    try:
        deployed = prefect("--no-prompt", "deploy", "--all")
        assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
        data, out = tmp_path / "datasets", tmp_path / "out"
        build = {
            "output_dir": str(data),
            "cache_dir": str(tmp_path / "cache"),
            "shard_size": 50,
            "decontaminate": False,
            "sources": [{"kind": "music21", "path_filter": "airdsAirs", "limit": 100}],
        }
        dask_address = f"tcp://127.0.0.1:{stack.ports.dask}"
        # Independent runs go at once, as a lab's would: the worker runs them side by side, and the
        # test waits only for what the next one needs (2 cores, so mostly their start-up overlaps).
        site = SiteSpec(hosts=2, tunes_per_host=10, latency_s=0.01)
        with serve_site(site, tmp_path / "requests.tsv") as bases:
            # the crawl deployment: a loopback site's 2 hosts in 2 shares, on the stack's Dask workers
            web = {
                "kind": "web",
                "seeds": [b + "/" for b in bases],
                "max_depth": 4,
                "per_host_delay_s": 0.0,
                "shares": 2,
            }
            crawl = {**build, "sources": [web]}
            first = [
                # on the stack's Dask cluster, by scheduler address, instead of a LocalCluster
                start(
                    "build-dataset/music21-corpus",
                    {"name": "stack", "overrides": build, "scheduler_address": dask_address},
                ),
                *(
                    [
                        start(
                            "build-dataset/crawl",
                            {
                                "config_path": None,
                                "name": "crawled",
                                "overrides": crawl,
                                "scheduler_address": dask_address,
                            },
                        )
                    ]
                    if every
                    else []
                ),
                # its own dataset: a build of "stack" beside the first would be refused by the lock
                start(
                    "retrain/nightly",
                    {
                        "name": "nightly",
                        "build_overrides": build,
                        "overrides": {
                            "model_name": "clamp-stack",
                            "train": {**TINY, "projection_dim": 16, "checkpoint_every": 0},
                            "metric": "wikimt/items",
                            "max_items": 10,
                            "out_dir": str(out / "retrain"),
                        },
                    },
                ),
            ]
            wait(*first)
        inspected = prefect("artifact", "inspect", "build-summary", "--limit", "5", "--output", "json")
        summaries = [a["data"] for a in json.loads(inspected.stdout)]
        row = f"| crawled {bases[0]}/ +1 | 86 pages (0 disallowed, 0 failed, 0 duplicate); 60 music files new"
        assert any(row in s for s in summaries) == every, [s[-800:] for s in summaries]
        assert any("# build-dataset: stack" in s for s in summaries), [s[-800:] for s in summaries]
        # the build's shards: every record of the source is accounted for, in shards of 50
        summary = json.loads((data / "stack" / "summary.json").read_text())
        manifest = load_manifest(data / "stack")
        assert summary["records_in"] == 100 and manifest["rows"] == summary["rows_written"] > 90, summary
        assert [s["rows"] for s in manifest["shards"]] == [50, manifest["rows"] - 50]
        ids = read_dataset(data / "stack", ["id"]).column("id").to_pylist()
        assert len(ids) == manifest["rows"] and all(i.startswith("music21:airdsAirs/") for i in ids)
        from distributed import Client

        with Client(dask_address, timeout=30) as dask_client:
            prefixes = dask_client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
        assert any("prepare" in p for p in prefixes) and any("write" in p for p in prefixes), prefixes
        assert any("crawl" in p for p in prefixes) == every, prefixes
        from mlflow import MlflowClient

        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        assert str(client.get_model_version_by_alias("clamp-stack", "champion").version) == "1"
        if every:
            run_the_training_deployments(start, wait, data / "stack", out)
        names = {r.info.run_name for e in client.search_experiments() for r in client.search_runs([e.experiment_id])}
        assert {n.split("-")[0] for n in names if n.startswith(("retrain-", "decision-"))} == {"retrain", "decision"}
        if every:
            assert {"mmm-tiny", "clamp-tiny", "clamp/wikimt", "ablations"} <= names, names
        else:  # ... and all of it is in PostgreSQL
            done = query_postgres(stack, "prefect", "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'")
            assert done[0][0] >= 2, done
            assert query_postgres(stack, "mlflow", "SELECT count(*) FROM runs")[0][0] >= len(names)
            aliases = query_postgres(stack, "mlflow", "SELECT alias FROM registered_model_aliases")
            assert aliases == [("champion",)], aliases
        # The nightly cron is deployed, but the tests' servers never schedule it (conftest): left on,
        # a suite spanning 03:00 UTC ran the real retrain flow in the repository's data/ folder.
        scheduled = prefect("flow-run", "ls", "--state-type", "SCHEDULED", "--output", "json")
        assert scheduled.returncode == 0 and json.loads(scheduled.stdout or "[]") == [], scheduled.stdout[-800:]
    finally:
        if not every:
            stack.down()


def run_the_training_deployments(start, wait, dataset_dir: Path, out: Path) -> None:
    """MMM and the ablation grid, then contrastive training from the MMM model, then evaluation."""
    dataset = str(dataset_dir)
    mmm = start(
        "pretrain-mmm/small-cpu",
        {
            "overrides": {
                "dataset_dir": dataset,
                "output_dir": str(out / "mmm"),
                "preset": "tiny",
                "steps": 3,
                "batch_size": 8,
            }
        },
    )
    ablations = start(
        "ablations/paper-grid",
        {
            "overrides": {
                "dataset_dir": dataset,
                "out_dir": str(out / "abl"),
                "mmm_steps": 2,
                "train": {"preset": "tiny", "steps": 2, "batch_size": 8},
                "max_items": 10,
                # the deployment, not the grid (tests/eval/test_ablations.py): two cells, one seed
                "seeds": [0],
                "cells": ["patch-td-mmm", "char-td-scratch"],
            }
        },
    )
    wait(mmm)
    clamp = start(
        "train-clamp/small-cpu-clamp",
        {
            "overrides": {
                "dataset_dir": dataset,
                "output_dir": str(out / "clamp"),
                "preset": "tiny",
                "steps": 3,
                "batch_size": 8,
                "init_music_from": str(out / "mmm" / "model"),
                "projection_dim": 16,
            }
        },
    )
    wait(clamp)
    evaluation = start(
        "evaluate/benchmarks",
        {
            "overrides": {
                "model_dir": str(out / "clamp" / "model"),
                "dataset_dir": dataset,
                "benchmarks": ["wikimt"],
                "out_dir": str(out / "eval"),
                "include_untrained": False,
                "max_items": 20,
            }
        },
    )

    wait(ablations, evaluation)
    assert (out / "eval" / "clamp" / "wikimt-predictions.csv").is_file()
    assert (out / "abl" / "ablations.csv").is_file()
