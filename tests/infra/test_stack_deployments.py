"""Integration: the local stack runs every deployment of prefect.yaml through
`prefect deployment run`, with small parameters, and each run completes. The build runs on the
stack's Dask scheduler and workers; training and evaluation log to the stack's MLflow server.
On SQLite here; tests/infra/test_stack_postgres.py runs the two deployments that write every kind
of row (a build on Dask, the nightly retrain with the model registry) on PostgreSQL."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.loopback_site import SiteSpec, serve_site
from clamp.data.shards import load_manifest, read_dataset
from infra.stack import Ports, Stack
from tests.conftest import StackDeployments, free_port
from tests.infra.test_listeners import Listeners, exposed, listeners, merge, report

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


def airs_build(tmp_path: Path) -> dict:
    """The build overrides of both stack tests: 100 of the corpus' airs, in shards of 50."""
    return {
        "output_dir": str(tmp_path / "datasets"),
        "cache_dir": str(tmp_path / "cache"),
        "shard_size": 50,
        "decontaminate": False,
        "sources": [{"kind": "music21", "path_filter": "airdsAirs", "limit": 100}],
    }


def nightly_retrain(build: dict, out: Path) -> dict:
    """`retrain/nightly` on its own dataset (a build of "stack" beside it would be refused by the
    lock), registering `clamp-stack`; the first round makes it the champion."""
    return {
        "name": "nightly",
        "build_overrides": build,
        "overrides": {
            "model_name": "clamp-stack",
            "train": {**TINY, "projection_dim": 16, "checkpoint_every": 0},
            "metric": "wikimt/items",
            "max_items": 10,
            "out_dir": str(out / "retrain"),
        },
    }


def check_airs_dataset(dataset: Path) -> None:
    """Every record of the source is accounted for, in shards of 50."""
    summary = json.loads((dataset / "summary.json").read_text())
    manifest = load_manifest(dataset)
    assert summary["records_in"] == 100 and manifest["rows"] == summary["rows_written"] > 90, summary
    assert [s["rows"] for s in manifest["shards"]] == [50, manifest["rows"] - 50]
    ids = read_dataset(dataset, ["id"]).column("id").to_pylist()
    assert len(ids) == manifest["rows"] and all(i.startswith("music21:airdsAirs/") for i in ids)


def dask_task_prefixes(stack: Stack) -> list[str]:
    from distributed import Client

    with Client(stack.scheduler_address, timeout=30) as client:
        return client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))


def run_names(stack: Stack) -> set[str]:
    from mlflow import MlflowClient

    client = MlflowClient(stack.env()["MLFLOW_TRACKING_URI"])
    return {r.info.run_name for e in client.search_experiments() for r in client.search_runs([e.experiment_id])}


@pytest.mark.slow
def test_every_deployment_runs_on_the_local_stack(tmp_path, benchmarks_dir, dask_stack):
    """On SQLite; tests/infra/test_stack_postgres.py runs the build and the retrain on PostgreSQL."""
    stack, runs = dask_stack, StackDeployments(dask_stack)
    runs.deploy_all()
    build, out = airs_build(tmp_path), tmp_path / "out"
    # Independent runs go at once, as a lab's would: the worker runs them side by side, and the
    # test waits only for what the next one needs (2 cores, so mostly their start-up overlaps).
    site = SiteSpec(hosts=2, tunes_per_host=10, latency_s=0.01)
    with serve_site(site, tmp_path / "requests.tsv") as bases:
        # the crawl deployment: a loopback site's 2 hosts in 2 shares, on the stack's Dask workers
        web = {"kind": "web", "seeds": [b + "/" for b in bases], "max_depth": 4, "per_host_delay_s": 0.0, "shares": 2}
        crawl = {**build, "sources": [web]}
        on_dask = {"scheduler_address": stack.scheduler_address}  # the stack's cluster, not a LocalCluster
        runs.wait(
            runs.start("build-dataset/music21-corpus", {"name": "stack", "overrides": build, **on_dask}),
            runs.start("build-dataset/crawl", {"config_path": None, "name": "crawled", "overrides": crawl, **on_dask}),
            runs.start("retrain/nightly", nightly_retrain(build, out)),
        )
    inspected = runs.prefect("artifact", "inspect", "build-summary", "--limit", "5", "--output", "json")
    summaries = [a["data"] for a in json.loads(inspected.stdout)]
    row = f"| crawled {bases[0]}/ +1 | 86 pages (0 disallowed, 0 failed, 0 duplicate); 60 music files new"
    assert any(row in s for s in summaries), [s[-800:] for s in summaries]
    assert any("# build-dataset: stack" in s for s in summaries), [s[-800:] for s in summaries]
    check_airs_dataset(Path(build["output_dir"]) / "stack")
    prefixes = dask_task_prefixes(stack)
    assert all(any(step in p for p in prefixes) for step in ("prepare", "write", "crawl")), prefixes
    from mlflow import MlflowClient

    client = MlflowClient(stack.env()["MLFLOW_TRACKING_URI"])
    assert str(client.get_model_version_by_alias("clamp-stack", "champion").version) == "1"
    run_the_training_deployments(runs, Path(build["output_dir"]) / "stack", out)
    names = run_names(stack)
    assert {"mmm-tiny", "clamp-tiny", "clamp/wikimt", "ablations"} <= names, names
    assert {n.split("-")[0] for n in names if n.startswith(("retrain-", "decision-"))} == {"retrain", "decision"}
    # The nightly cron is deployed, but the tests' servers never schedule it (conftest): left on,
    # a suite spanning 03:00 UTC ran the real retrain flow in the repository's data/ folder.
    scheduled = runs.prefect("flow-run", "ls", "--state-type", "SCHEDULED", "--output", "json")
    assert scheduled.returncode == 0 and json.loads(scheduled.stdout or "[]") == [], scheduled.stdout[-800:]


def run_the_training_deployments(runs: StackDeployments, dataset_dir: Path, out: Path) -> None:
    """MMM and the ablation grid, then contrastive training from the MMM model, then evaluation."""
    dataset = str(dataset_dir)
    mmm = runs.start(
        "pretrain-mmm/small-cpu",
        {
            "overrides": {
                "dataset_dir": dataset,
                "output_dir": str(out / "mmm"),
                **TINY,
            }
        },
    )
    ablations = runs.start(
        "ablations/paper-grid",
        {
            "overrides": {
                "dataset_dir": dataset,
                "out_dir": str(out / "abl"),
                "mmm_steps": 2,
                "train": {**TINY, "steps": 2},
                "max_items": 10,
                # the deployment, not the grid (tests/eval/test_ablations.py): two cells, one seed
                "seeds": [0],
                "cells": ["patch-td-mmm", "char-td-scratch"],
            }
        },
    )
    runs.wait(mmm)
    clamp = runs.start(
        "train-clamp/small-cpu-clamp",
        {
            "overrides": {
                "dataset_dir": dataset,
                "output_dir": str(out / "clamp"),
                **TINY,
                "init_music_from": str(out / "mmm" / "model"),
                "projection_dim": 16,
            }
        },
    )
    runs.wait(clamp)
    evaluation = runs.start(
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
    runs.wait(ablations, evaluation)
    assert (out / "eval" / "clamp" / "wikimt-predictions.csv").is_file()
    assert (out / "abl" / "ablations.csv").is_file()
