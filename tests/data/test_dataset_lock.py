"""One build per dataset at a time (clamp/data/lock.py), with real processes.

A holder build takes the lock and waits; other builds of the same dataset, started meanwhile
through `clamp build` and the Prefect flow's entry script, must be refused at once with the
holder named and the folder untouched. A holder killed with SIGKILL leaves its record, which the
next build detects and takes over. Run with `-s` to see the counts.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clamp.config import BuildConfig
from clamp.data.build import build_dataset
from clamp.data.lock import DatasetLockedError, check_unlocked, dataset_lock, lock_paths, read_holder
from tests.conftest import write_tunes
from tests.data.build_procs import clamp_build, env, nonblank_lines, start_holder, write_config


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_second_build_is_refused_at_once_and_names_the_holder(tmp_path):
    write_tunes(tmp_path / "a", 12)
    write_tunes(tmp_path / "b", 5, seed=3)
    config = write_config(tmp_path / "mine.yaml", tmp_path, "mine", tmp_path / "a")
    other = write_config(tmp_path / "other.yaml", tmp_path, "mine", tmp_path / "b")
    dataset = tmp_path / "datasets" / "mine"
    build_dataset(BuildConfig.load(config))  # a built dataset the contenders must not touch
    holder, go = start_holder(tmp_path, config)
    try:
        record = read_holder(lock_paths(dataset)[1])
        assert record is not None and record.pid == holder.pid and record.host == socket.gethostname()
        before = _snapshot(dataset)

        # the same build, other sources with --overwrite (refused before the claim would empty
        # the folder), and the Prefect flow's entry script (refused before Prefect starts)
        contenders = [clamp_build(tmp_path, "--config", str(config)) for _ in range(3)]
        contenders.append(clamp_build(tmp_path, "--config", str(other), "--overwrite"))
        contenders.append(
            subprocess.Popen(
                [sys.executable, "-m", "flows.build_dataset", "--config", str(config)],
                cwd=tmp_path,
                env=env(tmp_path),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        outcomes = [(p.wait(timeout=300), p.communicate()[1]) for p in contenders]

        # in this process too: how long a refusal takes
        start = time.perf_counter()
        with pytest.raises(DatasetLockedError, match=rf"pid {holder.pid} on host "), dataset_lock(dataset):
            pass
        refusal_s = time.perf_counter() - start
        assert refusal_s < 0.5

        refused = 0
        for rc, stderr in outcomes:
            lines = nonblank_lines(stderr)
            assert rc == 2 and len(lines) == 1, stderr[-3000:]
            assert lines[0].startswith("error: dataset mine is being built by ")
            assert f"pid {holder.pid} on host {record.host}, since {record.since}" in lines[0]
            refused += 1
        assert _snapshot(dataset) == before  # nothing written, nothing deleted
        print(
            f"\nlock: {len(contenders)} concurrent builds of a held dataset (3 clamp build, 1 --overwrite"
            f" with other sources, 1 flow entry script): {refused} refused naming the holder;"
            f" in-process refusal in {refusal_s * 1000:.1f} ms"
        )
    finally:
        go.write_text("go")
        out, err = holder.communicate(timeout=300)
    assert holder.returncode == 0, err[-3000:]
    assert out.strip().splitlines()[-1] == "12"
    assert not lock_paths(dataset)[1].exists()  # a clean release removes the record
    assert build_dataset(BuildConfig.load(config)).rows_written == 12  # and the lock is free again


@pytest.mark.slow
def test_a_lock_left_by_a_killed_build_is_taken_over(tmp_path, caplog):
    write_tunes(tmp_path / "a", 8)
    config = write_config(tmp_path / "mine.yaml", tmp_path, "mine", tmp_path / "a")
    dataset = tmp_path / "datasets" / "mine"
    taken_over = 0
    for attempt in range(2):
        holder, _ = start_holder(tmp_path, config, tag=f"killed{attempt}")
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=60)
        left = read_holder(lock_paths(dataset)[1])
        assert left is not None and left.pid == holder.pid and left.alive() is False  # its record stays

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="clamp.data.lock"):
            summary = build_dataset(BuildConfig.load(config))
        assert summary.rows_written == 8
        warnings = [r.getMessage() for r in caplog.records if r.name == "clamp.data.lock"]
        assert len(warnings) == 1 and "taking over the stale lock" in warnings[0]
        assert f"pid {holder.pid} on host {left.host}" in warnings[0] and "that process is gone" in warnings[0]
        assert not lock_paths(dataset)[1].exists()
        taken_over += 1
    print(f"\nlock: {taken_over} of 2 locks left by SIGKILLed builds detected and taken over")


# The holder takes the lock, forks a child that sleeps (a pool worker, say), writes the child's
# pid and kills itself: the child must not keep the dataset locked.
FORK_AND_DIE = r"""
import os, signal, sys, time
from pathlib import Path
from clamp.data.lock import dataset_lock

with dataset_lock(sys.argv[1]):
    child = os.fork()
    if child == 0:
        time.sleep(120)
        os._exit(0)
    Path(sys.argv[2]).write_text(str(child))
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_forked_worker_does_not_inherit_the_lock(tmp_path, caplog):
    dataset = tmp_path / "datasets" / "mine"
    pid_file = tmp_path / "child.pid"
    with (tmp_path / "stderr.txt").open("w") as err:  # not a pipe: the sleeping child would keep it open
        proc = subprocess.run(
            [sys.executable, "-c", FORK_AND_DIE, str(dataset), str(pid_file)],
            env=env(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=err,
            timeout=120,
        )
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "stderr.txt").read_text()
    child = int(pid_file.read_text())
    try:
        os.kill(child, 0)  # the child outlived its parent
        with caplog.at_level(logging.WARNING, logger="clamp.data.lock"), dataset_lock(dataset) as me:
            assert me.pid == os.getpid()
        assert "that process is gone" in caplog.text
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_child_closing_its_copy_leaves_the_parent_holding(tmp_path):
    dataset = tmp_path / "datasets" / "mine"
    with dataset_lock(dataset):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                check_unlocked(dataset)
                os._exit(0)
            except DatasetLockedError:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 3  # still locked, by the parent
        with pytest.raises(DatasetLockedError):
            check_unlocked(dataset)
    check_unlocked(dataset)  # released


def test_the_record_names_pid_host_time_and_command(tmp_path):
    dataset = tmp_path / "datasets" / "mine"
    with dataset_lock(dataset) as me:
        record = json.loads(lock_paths(dataset)[1].read_text())
        assert record["pid"] == os.getpid() == me.pid
        assert record["host"] == socket.gethostname()
        assert record["since"].endswith("+00:00") and record["command"]
        assert not dataset.exists()  # the lock writes beside the folder, nothing in it
    assert lock_paths(dataset)[0].parent == dataset.parent


# The Prefect flow's entry script, with its ingest stage made to wait (lock held) for `go`.
FLOW_HOLDER = r"""
import sys, time
from pathlib import Path
import clamp.data.build as steps

ready, go = Path(sys.argv[2]), Path(sys.argv[3])
real = steps.ingest_sources

def waiting_ingest(cfg, records=None):
    ready.write_text("holding")
    while not go.exists():
        time.sleep(0.05)
    return real(cfg, records)

steps.ingest_sources = waiting_ingest
from flows.build_dataset import app
app(["--config", sys.argv[1], "--workers", "1"])
"""


@pytest.mark.slow
def test_the_prefect_flow_run_holds_the_lock_for_its_stages(tmp_path):
    """Through Prefect (temporary server) and a Dask LocalCluster: while the flow run is in its
    stages, a `clamp build` of the same dataset is refused and names the flow's process."""
    write_tunes(tmp_path / "a", 6)
    config = write_config(tmp_path / "mine.yaml", tmp_path, "mine", tmp_path / "a", n_workers=1)
    ready, go = tmp_path / "flow.ready", tmp_path / "flow.go"
    flow = subprocess.Popen(
        [sys.executable, "-c", FLOW_HOLDER, str(config), str(ready), str(go)],
        cwd=tmp_path,
        env=env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            assert flow.poll() is None and time.monotonic() < deadline, flow.communicate()[1][-3000:]
            time.sleep(0.1)
        contender = clamp_build(tmp_path, "--config", str(config))
        _, err = contender.communicate(timeout=300)
        lines = nonblank_lines(err)
        assert contender.returncode == 2 and len(lines) == 1, err[-3000:]
        assert f"being built by pid {flow.pid} on host {socket.gethostname()}" in lines[0]
    finally:
        go.write_text("go")
        _, flow_err = flow.communicate(timeout=600)
    assert flow.returncode == 0, flow_err[-3000:]
    assert (tmp_path / "datasets" / "mine" / "manifest.json").is_file()
    assert not lock_paths(tmp_path / "datasets" / "mine")[1].exists()
