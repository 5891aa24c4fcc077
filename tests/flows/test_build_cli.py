"""`python -m flows.build_dataset --config my.yaml`: the regression test of the wrong-dataset bug,
through the real command line, Prefect (temporary server) and a Dask LocalCluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_tunes

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "flows.build_dataset", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_the_flow_builds_into_the_config_files_dataset(tmp_path):
    write_tunes(tmp_path / "tunes", 12)
    corpus = tmp_path / "data" / "datasets" / "music21-corpus"
    (corpus / "shards").mkdir(parents=True)
    (corpus / "manifest.json").write_text("{}")  # a corpus build that must survive
    (corpus / "shards" / "shard-00000.arrow").write_bytes(b"corpus shard")
    (tmp_path / "my.yaml").write_text(
        "name: my-tunes\nn_workers: 1\nshard_size: 5\ndecontaminate: false\ndata_docs: false\n"
        f"cache_dir: {tmp_path / 'cache'}\nsources:\n  - kind: local\n    path: {tmp_path / 'tunes'}\n"
    )
    result = _run(["--config", "my.yaml", "--json"], tmp_path, tmp_path / "prefect")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["name"] == "my-tunes" and summary["rows_written"] == 12 and summary["shards"] == 3
    assert Path(summary["dataset_dir"]) == tmp_path / "data" / "datasets" / "my-tunes"
    # one temporary Prefect server: the Dask worker reports to the flow's, it does not start its own
    assert (result.stdout + result.stderr).count("Starting temporary server") == 1, result.stderr[-3000:]
    assert (corpus / "shards" / "shard-00000.arrow").read_bytes() == b"corpus shard"

    # other sources into the same name: refused in one line before Prefect starts; nothing lost
    write_tunes(tmp_path / "other", 3, seed=4)
    refused = _run(["--config", "my.yaml", "--name", "music21-corpus", "--limit", "2"], tmp_path, tmp_path / "prefect")
    assert refused.returncode == 2
    lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--overwrite" in lines[0], refused.stderr
    assert (corpus / "shards" / "shard-00000.arrow").read_bytes() == b"corpus shard"
