"""Every process the local stack or a build starts listens on loopback only (the stack's own
check is in test_stack_deployments.py, on the stack that module starts once).

The listening TCP sockets of the processes each test started (the process tree under this test
process: the stack's services, their uvicorn children, Dask nannies and workers; the build's
flow process, its temporary Prefect server and its LocalCluster) are read with psutil and
printed (`pytest -s` shows them); any address other than 127.0.0.1 or ::1 fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import write_tunes

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = {"127.0.0.1", "::1"}

# (pid, command line) -> {"ip:port", ...}
Listeners = dict[tuple[int, str], set[str]]


def listeners(root: int) -> Listeners:
    """The TCP sockets in LISTEN state of `root` and all its descendants, by process."""
    try:
        top = psutil.Process(root)
        procs = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    found: Listeners = {}
    for proc in procs:
        try:  # a process may exit between the listing and the look
            conns = proc.net_connections(kind="tcp")
            cmd = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN:
                found.setdefault((proc.pid, cmd), set()).add(f"{c.laddr.ip}:{c.laddr.port}")
    return found


def merge(into: Listeners, more: Listeners) -> Listeners:
    for key, addrs in more.items():
        into.setdefault(key, set()).update(addrs)
    return into


def report(title: str, found: Listeners) -> str:
    lines = [f"{title}: {sum(len(a) for a in found.values())} listening sockets in {len(found)} processes"]
    for (pid, cmd), addrs in sorted(found.items()):
        short = cmd if len(cmd) <= 100 else cmd[:97] + "..."
        lines.append(f"  pid {pid:>7}  {', '.join(sorted(addrs)):<40}  {short}")
    text = "\n".join(lines)
    print(text)
    return text


def exposed(found: Listeners) -> list[str]:
    return [
        f"pid {pid} ({cmd[:80]}): {a}"
        for (pid, cmd), addrs in found.items()
        for a in sorted(addrs)
        if a.rsplit(":", 1)[0] not in LOOPBACK
    ]


@pytest.mark.slow
def test_a_build_on_its_local_cluster_listens_on_loopback_only(tmp_path):
    """`python -m flows.build_dataset` with its own temporary Prefect server and LocalCluster."""
    write_tunes(tmp_path / "tunes", 8)
    (tmp_path / "b.yaml").write_text(
        "name: tiny\nn_workers: 2\nshard_size: 4\ndecontaminate: false\ndata_docs: false\n"
        f"cache_dir: {tmp_path / 'cache'}\nsources:\n  - kind: local\n    path: {tmp_path / 'tunes'}\n"
    )
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": str(REPO)}
    for var in ("PREFECT_API_URL", "CLAMP_SCHEDULER_ADDRESS"):  # a LocalCluster and a temporary server
        env.pop(var, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.build_dataset", "--config", "b.yaml", "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    found: Listeners = {}
    deadline = time.monotonic() + 600
    try:
        # the cluster lives only while the flow runs: look at the tree until the build exits
        while proc.poll() is None and time.monotonic() < deadline:
            merge(found, listeners(proc.pid))
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == 0, out[-2000:] + err[-3000:]
    text = report("build-dataset flow on a LocalCluster", found)
    assert not exposed(found), "\n".join(exposed(found)) + "\n" + text
    # the look caught the cluster: the scheduler (in the flow process) and both workers
    assert proc.pid in {pid for pid, _ in found}, text
    assert len([k for k in found if "spawn_main" in k[1]]) >= 2, text
