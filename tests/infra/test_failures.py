"""Failure behaviour: Prefect retries a transient fault, and a failed data contract stops a retrain
before training. A killed worker's build is in tests/infra/test_interrupted_builds.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import write_tunes

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
