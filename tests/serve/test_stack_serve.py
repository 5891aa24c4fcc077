"""`python -m infra.stack up --serve`: `clamp serve` beside the other services, with a readiness
check; status and down cover it."""

from __future__ import annotations

import json
import urllib.request

import pytest

from clamp.errors import ConfigError
from infra.stack import Stack, StackConfig, _alive
from tests.conftest import free_port


def test_serve_port_must_differ():
    with pytest.raises(ConfigError, match="serve_port must differ"):
        StackConfig.from_options(serve=True, serve_port=4200)
    assert StackConfig.from_options(serve_port=4200).serve is False  # not started: no clash


def test_a_missing_model_is_reported_with_the_log(tmp_path, tiny_dataset):
    from infra.stack import StackError

    stack = Stack(
        config=StackConfig(
            state_dir=tmp_path / "s", serve_model=tmp_path / "nomodel", serve_index=tiny_dataset, serve_port=free_port()
        )
    )
    stack._save_meta({"running": True, "serve": True})
    stack._spawn("clamp-serve", stack.serve_command())  # what `up --serve` starts
    with pytest.raises(StackError, match="clamp-serve exited; .*model folder not found"):
        stack._wait("clamp-serve", dict(stack.services())["clamp-serve"], 60)
    stack.down()


@pytest.mark.slow
def test_stack_up_serve_status_down(tmp_path, tiny_model, tiny_dataset):
    port = free_port()
    stack = Stack(
        config=StackConfig(
            state_dir=tmp_path / "stack",
            serve_model=tiny_model,
            serve_index=tiny_dataset,
            serve_port=port,
            prefect_port=free_port(),
            mlflow_port=free_port(),
            dask_port=free_port(),
        )
    )
    stack.up(serve=True)
    try:
        assert stack.status() == {
            "prefect-server": True,
            "mlflow-server": True,
            "prefect-worker": True,
            "clamp-serve": True,
        }
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/search?q=a+jig&k=3", timeout=30) as r:
            assert len(json.loads(r.read())["results"]) == 3
        pid = int((tmp_path / "stack" / "clamp-serve.pid").read_text())
        # reopened from its state folder (as `status` and `down` do), it still covers the server
        assert "clamp-serve" in Stack.open(tmp_path / "stack").status()
    finally:
        Stack.open(tmp_path / "stack").down()
    assert not _alive(pid)
    assert Stack.open(tmp_path / "stack").status() == {}
