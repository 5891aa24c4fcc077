"""The local stack: real Prefect server + worker, MLflow server and Dask on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.request

import pytest

from infra.stack import Ports, Stack, StackError, _alive
from tests.conftest import free_port


@pytest.mark.slow
def test_stack_up_status_down(tmp_path):
    stack = Stack(tmp_path / "stack", Ports(free_port(), free_port(), free_port()))
    stack.up(dask=True)
    try:
        assert stack.status() == {"prefect-server": True, "mlflow-server": True, "prefect-worker": True,
                                  "dask-scheduler": True, "dask-workers": True}
        env = (tmp_path / "stack" / "env.sh").read_text()
        assert f"PREFECT_API_URL=http://127.0.0.1:{stack.ports.prefect}/api" in env
        assert f"CLAMP_SCHEDULER_ADDRESS=tcp://127.0.0.1:{stack.ports.dask}" in env
        # the work pool exists on the server
        req = urllib.request.Request(f"http://127.0.0.1:{stack.ports.prefect}/api/work_pools/clamp-process")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert json.loads(r.read())["type"] == "process"
        with pytest.raises(StackError, match="already up"):
            stack.up()
        pids = [int(p.read_text()) for p in (tmp_path / "stack").glob("*.pid")]
        assert len(pids) == 5
    finally:
        stack.down()
    assert not any(_alive(pid) for pid in pids)
    assert stack.status() == {}
    assert not list((tmp_path / "stack").glob("*.pid"))


def test_busy_port_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        stack = Stack(tmp_path / "s", Ports(busy, free_port(), free_port()))
        with pytest.raises(StackError, match=f"port\\(s\\) {busy} already in use"):
            stack.up()
