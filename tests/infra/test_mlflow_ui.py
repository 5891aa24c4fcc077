"""The MLflow runs view that the main job prints opens on the runs, in a real browser.

A real `mlflow server` (SQLite store, on 127.0.0.1, started and stopped here) gets two runs
through `clamp.tracking.mlflow_run`, each with a dataset input. Debian's chromium, driven by
Playwright, opens `clamp.tracking.runs_url`, and the runs table must show both runs and their
dataset. MLflow 3's front page would show its GenAI overview instead, with no run in it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.train.test_mlflow_outage import MlflowServer

CHROMIUM = Path(os.environ.get("CLAMP_CHROMIUM", "/usr/bin/chromium"))

pytestmark = pytest.mark.slow


def test_the_printed_runs_url_shows_the_runs_and_their_dataset(tmp_path, tiny_dataset, monkeypatch):
    if not CHROMIUM.is_file():
        pytest.skip(f"no chromium at {CHROMIUM}: infra/bootstrap.sh installs Debian's chromium with apt-get")
    playwright = pytest.importorskip("playwright.sync_api")
    import mlflow

    from clamp.data.shards import load_manifest
    from clamp.tracking import dataset_input, mlflow_run, runs_url

    server = MlflowServer(tmp_path / "mlflow")
    server.start(timeout=300)
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        manifest = load_manifest(tiny_dataset)
        for name in ("alpha-run", "beta-run"):
            with mlflow_run("ui-check", name) as run:
                mlflow.log_metric("loss", 1.5)
                mlflow.MlflowClient().log_inputs(
                    run.info.run_id,
                    datasets=[dataset_input(manifest["name"], manifest["fingerprint"], tiny_dataset, "training")],
                )
        url = runs_url("ui-check", server.uri)
        experiment = mlflow.MlflowClient(server.uri).get_experiment_by_name("ui-check")
        assert url == f"{server.uri}/#/experiments/{experiment.experiment_id}/runs"

        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--disable-gpu"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(url, timeout=120_000)
                for name in ("alpha-run", "beta-run"):
                    page.get_by_text(name, exact=True).first.wait_for(state="visible", timeout=120_000)
                # the Dataset column names the build (name and the start of its digest)
                page.get_by_text(manifest["name"]).first.wait_for(state="visible", timeout=60_000)
                page.screenshot(path=str(tmp_path / "runs.png"))
            finally:
                browser.close()
    finally:
        server.kill()
