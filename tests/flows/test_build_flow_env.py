"""The build flow on its own LocalCluster leaves this process's environment as it found it.

distributed's nannies set OMP_NUM_THREADS=1 (and MKL, OpenBLAS, malloc settings) in the spawning
process before starting their workers. In the main job, training runs in that process after the
build, and a torch first used then took the one thread: the main job trained at 55 tunes/s where
the same recipe alone trains at 88."""

from __future__ import annotations

import os

import pytest

from tests.conftest import write_tunes


@pytest.mark.slow
def test_a_build_on_a_local_cluster_leaves_the_thread_settings_as_they_were(tmp_path, monkeypatch):
    from prefect.testing.utilities import prefect_test_harness

    from flows.build_dataset import build_dataset

    write_tunes(tmp_path / "src", 4)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONHASHSEED"):
        monkeypatch.setenv(name, "")  # registered, so the test leaves the environment as it was
        monkeypatch.delenv(name)  # not set: must stay unset
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")  # what a user set: kept
    overrides = {
        "output_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
        "sources": [{"kind": "local", "path": str(tmp_path / "src")}],
        "decontaminate": False,
        "data_docs": False,
        "midi_views": False,
    }
    with prefect_test_harness(server_startup_timeout=90):
        summary = build_dataset(name="env", overrides=overrides, n_workers=1)
    assert summary["rows_written"] == 4  # the build ran, on the cluster's worker
    assert not {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONHASHSEED"} & set(os.environ)
    assert os.environ["OPENBLAS_NUM_THREADS"] == "2"
