"""The converter pool with real worker processes: conversions, the same ABC as one process per
score, timeouts, crashes, recycling, memory limits, fork safety and no orphans."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from clamp.abc.convert import ConversionError, to_abc
from clamp.abc.pool import (
    TEST_HOOK_PREFIX,
    TEST_HOOKS_ENV,
    ConverterPool,
    WorkerCrashed,
    WorkerTimeout,
    default_pool,
    shutdown_default_pool,
)

music21 = pytest.importorskip("music21")

HOOKS = {TEST_HOOKS_ENV: "1"}


def hook(command: str) -> bytes:
    return TEST_HOOK_PREFIX + command.encode()


def worker_pid(pool: ConverterPool) -> int:
    """The pid of the worker that ran this item (the `pid` hook titles its tune with it)."""
    abc = pool.convert("midi", hook("pid"))
    return int(abc.split("\n")[1].split()[-1])


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    """Whether process `pid` ends (or is a zombie: dead, waiting to be reaped) within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


@pytest.fixture
def pool():
    with ConverterPool(env=HOOKS) as p:
        yield p


def _corpus(name: str) -> bytes:
    return Path(music21.corpus.getWork(name)).read_bytes()


# --- conversions --------------------------------------------------------------------------------
def test_a_normal_conversion(pool):
    abc = pool.convert("mxl", _corpus("bwv66.6"))
    assert abc.startswith("X:1\n") and "\nK:" in abc
    assert pool.worker_pids() and pool.stats["started"] == 1
    assert pool.convert("humdrum", _corpus("bach/bwv277.krn")).count("|") > 4
    assert pool.stats["started"] == 1  # the same worker converted both


def test_to_abc_goes_through_the_default_pool():
    shutdown_default_pool()
    try:
        to_abc("mxl", _corpus("bwv66.6"))
        pids = default_pool().worker_pids()
        assert len(pids) == 1 and pids[0] in {c.pid for c in psutil.Process().children()}
        to_abc("mxl", _corpus("bwv66.6"))
        assert default_pool().worker_pids() == pids  # long-lived
    finally:
        shutdown_default_pool()


def _sample_scores() -> list[tuple[str, Path]]:
    from music21 import corpus

    xml = sorted(p for p in corpus.getPaths(fileExtensions=("mxl", "xml", "musicxml")) if p.stat().st_size < 150_000)
    krn = sorted(p for p in corpus.getPaths(fileExtensions=("krn",)) if p.stat().st_size < 20_000)
    rng = random.Random(13)
    picked = [("mxl" if p.suffix == ".mxl" else "musicxml", p) for p in rng.sample(xml, 30)]
    picked += [("humdrum", p) for p in rng.sample(krn, 8)]
    picked.append(("musicxml", Path(corpus.__file__).parent / "trecento" / "PMFC_12_20-Agnus Dei Gherardello.xml"))
    return picked


def _outcome(fmt: str, content: bytes, mode: str) -> tuple[str, str]:
    try:
        return "ok", to_abc(fmt, content, 60, mode=mode)
    except ConversionError as exc:
        return "error", str(exc)


@pytest.mark.slow
def test_the_same_abc_as_one_process_per_score():
    """xml2abc imported once in a worker writes the ABC byte for byte as its command line did."""
    shutdown_default_pool()
    try:
        for fmt, path in _sample_scores():
            data = path.read_bytes()
            assert _outcome(fmt, data, "pool") == _outcome(fmt, data, "subprocess"), path
    finally:
        shutdown_default_pool()


@pytest.mark.parametrize(
    "fmt,content",
    [
        ("musicxml", b"<?xml version='1.0'?><score-partwise><part id='P1'><measure"),
        ("musicxml", b"<?xml version='1.0' encoding='UTF-8'?><score-partwise>\xff\xfe\x80</score-partwise>"),
        ("musicxml", b"<score-partwise version='3.1'><part-list/></score-partwise>"),
        ("humdrum", b"**kern\n*M4/4\n=1\n4q\n*-\n"),
        ("mxl", b"PK\x03\x04 not really a zip"),
        ("midi", b"MThd garbage"),
    ],
)
def test_the_same_failure_reasons_as_one_process_per_score(fmt, content):
    pooled = _outcome(fmt, content, "pool")
    assert pooled[0] == "error"
    assert pooled == _outcome(fmt, content, "subprocess")


def test_unsupported_format_is_refused_before_any_worker(pool):
    with pytest.raises(ConversionError, match="^unsupported_format: mp3$"):
        pool.convert("mp3", b"ID3")
    assert pool.stats["started"] == 0


def test_a_job_exception_comes_back_with_the_worker_traceback(pool):
    with pytest.raises(ValueError, match="invalid literal") as info:
        pool.call(int, "not a number", timeout_s=30)
    assert any("in the converter worker" in note for note in getattr(info.value, "__notes__", []))


# --- isolation ----------------------------------------------------------------------------------
def test_a_hang_times_out_the_worker_is_replaced_and_the_next_item_converts(pool):
    first = worker_pid(pool)
    t0 = time.monotonic()
    with pytest.raises(WorkerTimeout) as info:
        pool.convert("musicxml", hook("sleep:60"), timeout_s=1)
    assert str(info.value) == "conversion_timeout: xml2abc timed out after 1s"
    assert info.value.transient
    assert isinstance(info.value, ConversionError)
    assert time.monotonic() - t0 < 10
    assert wait_gone(first)
    assert pool.stats["timeouts"] == 1
    second = worker_pid(pool)
    assert second != first
    assert pool.convert("mxl", _corpus("bwv66.6")).startswith("X:")


@pytest.mark.parametrize(
    "command,reason",
    [
        ("exit:3", "converter crashed (exit status 3)"),
        (f"signal:{signal.SIGKILL}", f"converter crashed (signal {signal.SIGKILL})"),
        (f"signal:{signal.SIGSEGV}", f"converter crashed (signal {signal.SIGSEGV})"),
    ],
)
def test_a_crash_fails_that_item_only(pool, command, reason):
    first = worker_pid(pool)
    with pytest.raises(WorkerCrashed) as info:
        pool.convert("midi", hook(command), timeout_s=30)
    assert str(info.value) == f"converter_crashed: midi2abc {reason}"
    assert info.value.transient
    assert pool.stats["crashes"] == 1
    assert worker_pid(pool) != first
    assert pool.convert("mxl", _corpus("bwv66.6")).startswith("X:")


def test_a_worker_killed_between_items_is_replaced_without_failing_the_next(pool):
    first = worker_pid(pool)
    os.kill(first, signal.SIGKILL)
    assert wait_gone(first)
    assert worker_pid(pool) != first


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux procfs")
def test_a_worker_whose_main_thread_is_dead_is_not_alive_before_it_can_be_reaped():
    """The race behind a flaky failure under load: a killed worker's main thread is a zombie while
    its watchdog thread still exits, so waitpid (poll) says running. Reproduced exactly: the main
    thread of a two-thread process calls pthread_exit."""
    import socket
    from multiprocessing.connection import Connection

    from clamp.abc.pool import _Worker

    code = (
        "import ctypes, threading, time; threading.Thread(target=time.sleep, args=(30,)).start(); "
        "ctypes.CDLL(None).pthread_exit(None)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)  # as the pool starts workers
    ours, _theirs = socket.socketpair()
    worker = _Worker(proc, Connection(ours.detach()))
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.02)
        assert psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE
        assert proc.poll() is None  # what alive() used to rely on
        assert not worker.alive()
    finally:
        worker.kill()
    assert proc.returncode is not None


def test_a_real_segfault_in_a_job_is_a_crash(pool):
    import ctypes

    with pytest.raises(WorkerCrashed, match=r"converter crashed \(signal 11\)"):
        pool.call(ctypes.string_at, 0, timeout_s=30)  # reads address 0
    assert pool.convert("mxl", _corpus("bwv66.6")).startswith("X:")


def test_workers_are_replaced_after_max_items():
    with ConverterPool(max_items_per_worker=2, env=HOOKS) as pool:
        pids = [worker_pid(pool) for _ in range(5)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert pool.stats["recycled"] == 2 and pool.stats["started"] == 3


def test_a_worker_above_the_rss_limit_is_replaced_after_its_item():
    with ConverterPool(max_rss_mb=200, env=HOOKS) as pool:
        first = worker_pid(pool)
        assert worker_pid(pool) == first  # a fresh worker is far below 200 MB
        abc = pool.convert("midi", hook("alloc:300"))  # the item itself succeeds ...
        assert abc.startswith("X:1\nT:alloc")
        assert wait_gone(first)  # ... and its worker, now above the limit, is replaced
        assert worker_pid(pool) != first
        assert pool.stats["recycled"] == 1


def test_an_item_over_the_memory_cap_fails_and_the_worker_is_replaced():
    with ConverterPool(memory_limit_mb=200, env=HOOKS) as pool:
        first = worker_pid(pool)
        with pytest.raises(ConversionError, match="^unparseable_midi: too much memory needed to convert it$"):
            pool.convert("midi", hook("alloc:1000"))
        assert worker_pid(pool) != first
        assert pool.convert("mxl", _corpus("bwv66.6")).startswith("X:")


def test_workers_convert_in_parallel_up_to_the_pool_size():
    with ConverterPool(workers=2, env=HOOKS) as pool:
        for _ in range(2):
            worker_pid(pool)  # both workers started (the pool hands them out in turn)
        threads = [threading.Thread(target=pool.convert, args=("midi", hook("sleep:1"))) for _ in range(2)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert time.monotonic() - t0 < 1.9
        assert len(pool.worker_pids()) == 2
        with pool.scaled(3):
            assert pool.workers == 3
        assert pool.workers == 2 and len(pool.worker_pids()) <= 2


def test_the_default_pool_is_sized_by_the_environment(monkeypatch):
    monkeypatch.setenv("CLAMP_CONVERSION_WORKERS", "3")
    monkeypatch.setenv("CLAMP_CONVERSION_MAX_ITEMS_PER_WORKER", "7")
    shutdown_default_pool()
    try:
        pool = default_pool()
        assert (pool.workers, pool.max_items_per_worker) == (3, 7)
        assert pool.worker_pids() == []  # started lazily
    finally:
        shutdown_default_pool()


# --- processes ----------------------------------------------------------------------------------
def test_a_forked_child_starts_its_own_workers_and_leaves_the_parents_alone():
    from clamp.abc import pool as pool_module

    shutdown_default_pool()
    try:
        to_abc("mxl", _corpus("bwv66.6"))
        parent_pids = default_pool().worker_pids()
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # the child: convert, report its worker, run the exit handlers, leave
            code = 1
            try:
                os.close(read)
                mine = default_pool().worker_pids()
                to_abc("mxl", _corpus("bwv66.6"))
                after = default_pool().worker_pids()
                pool_module._shutdown_all()  # what atexit would run
                os.write(write, f"{mine}|{after}".encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read) as fh:
            report = fh.read()
        _, status = os.waitpid(child, 0)
        assert os.WEXITSTATUS(status) == 0, report
        mine, after = report.split("|")
        assert mine == "[]"  # nothing inherited
        child_pids = eval(after)  # noqa: S307 - a list of ints written just above
        assert len(child_pids) == 1 and not set(child_pids) & set(parent_pids)
        assert default_pool().worker_pids() == parent_pids  # the parent's worker survived the child's exit
        assert to_abc("mxl", _corpus("bwv66.6")).startswith("X:")
    finally:
        shutdown_default_pool()


def _convert_and_report(conn) -> None:
    to_abc("mxl", _corpus("bwv66.6"))
    conn.send(default_pool().worker_pids())


def test_a_multiprocessing_child_stops_its_workers_when_it_ends():
    """A process pool's worker leaves through os._exit (no atexit): multiprocessing's
    finalizers stop its converter workers first."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    proc = ctx.Process(target=_convert_and_report, args=(child_end,))
    proc.start()
    pids = parent_end.recv()
    proc.join(60)
    assert proc.exitcode == 0 and len(pids) == 1
    assert wait_gone(pids[0], 0), "the child's converter worker outlived it"


def test_no_worker_is_left_after_shutdown():
    pool = ConverterPool(workers=2, env=HOOKS)
    for _ in range(2):
        worker_pid(pool)
    pids = pool.worker_pids()
    children = {c.pid for c in psutil.Process().children(recursive=True)}
    assert len(pids) == 2 and set(pids) <= children
    pool.shutdown()
    assert all(wait_gone(pid, 5) for pid in pids)
    assert not set(pids) & {c.pid for c in psutil.Process().children(recursive=True)}
    with pytest.raises(Exception, match="shut down"):
        pool.convert("mxl", _corpus("bwv66.6"))


def test_no_orphan_when_the_caller_dies_in_the_middle_of_an_item():
    """The caller is killed (no exit handlers run) while its worker sleeps in an item: the
    worker notices its parent is gone and exits."""
    script = textwrap.dedent(f"""
        import os, signal, sys, threading, time
        from clamp.abc.pool import ConverterPool, TEST_HOOK_PREFIX
        pool = ConverterPool(env={HOOKS!r})
        pool.convert("midi", TEST_HOOK_PREFIX + b"pid")
        threading.Thread(target=pool.convert, args=("midi", TEST_HOOK_PREFIX + b"sleep:120"), daemon=True).start()
        time.sleep(0.5)
        print(pool.worker_pids()[0], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    worker = int(proc.stdout.split()[0])
    assert wait_gone(worker, 10)


def test_the_default_pool_is_shut_down_at_exit():
    """The exit handler stops (and reaps) the workers before the caller is gone."""
    script = textwrap.dedent("""
        from clamp.abc.convert import to_abc
        from clamp.abc.pool import default_pool
        try:
            to_abc("musicxml", b"<score-partwise/>")
        except Exception:
            pass
        print(default_pool().worker_pids()[0], flush=True)
    """)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    worker = int(proc.stdout.split()[0])
    assert wait_gone(worker, 0), "the worker outlived its caller's exit"
    assert time.monotonic() - t0 < 60
