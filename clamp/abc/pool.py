"""A pool of long-lived converter worker processes: the one way scores are converted to ABC.

`clamp.abc.convert.to_abc` sends each score to a worker of its process's pool
(`default_pool()`). A worker is a Python process started once; it imports xml2abc once and
runs the whole conversion (music21 for Humdrum, xml2abc, symusic and midi2abc for MIDI) in
place, so a score costs its conversion only, not the start of a new interpreter.

Isolation, per item, as when every score had a process of its own:

- timeout: a worker that has not answered after the item's timeout is killed, with anything it
  started (it leads its own process group), and replaced; the item fails with
  `<reason code>: <tool> timed out after <t>s`;
- crash: a worker that dies during an item (a signal, a segfault, `os._exit`) is replaced; only
  that item fails, with `<reason code>: converter crashed (signal 9)` (or `exit status N`);
- memory: an item may grow a worker's address space by at most `memory_limit_mb` (RLIMIT_AS,
  the item then fails with `too much memory needed to convert it`), and a worker is replaced
  after `max_items_per_worker` items or when its resident memory is above `max_rss_mb` after
  an item.

The default pool is made on first use, sized by `clamp.config.ConversionConfig`
(`CLAMP_CONVERSION_*`; one worker by default: a build already runs one converting process per
core). A process made by `fork` never uses its parent's workers: it starts its own on first use.
Pools are shut down at exit, and a worker exits by itself when its parent is gone, so no
converter outlives its caller.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from clamp.abc.converters import (
    CRASH_REASON,
    DEFAULT_TIMEOUT_S,
    FAILURE,
    FORMATS,
    TIMEOUT_REASON,
    TOOL,
    ConversionError,
    TransientConversionError,
    convert_here,
)

# Test hooks, honoured only by workers whose environment has CLAMP_CONVERTER_TEST_HOOKS=1:
# a score whose bytes are b"\0clamp-test:<action>:<arg>" makes the worker sleep <arg> s, exit
# with status <arg>, send itself signal <arg>, or allocate and keep <arg> MiB (tests/abc/test_pool.py).
TEST_HOOKS_ENV = "CLAMP_CONVERTER_TEST_HOOKS"
TEST_HOOK_PREFIX = b"\0clamp-test:"

_WORKER_CODE = "from clamp.abc.pool import _worker_main; _worker_main()"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding `clamp/`
_STOP_GRACE_S = 2.0


class WorkerTimeout(TransientConversionError):
    """An item took longer than its timeout: its worker was killed."""


class WorkerCrashed(TransientConversionError):
    """A worker died during an item."""


class PoolError(RuntimeError):
    """The pool cannot run work: a worker did not start, or the pool is shut down."""


def _exit_reason(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        return f"signal {-returncode}"
    return f"exit status {returncode}"


class _Worker:
    """One worker process and the parent's end of its socket."""

    def __init__(self, proc: subprocess.Popen, conn: Connection) -> None:
        self.proc, self.conn, self.pid, self.items = proc, conn, proc.pid, 0

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            return False
        # A killed worker with a second thread (its watchdog) can show as a zombie while that
        # thread is still exiting: waitpid cannot reap it yet, but it will never answer again.
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):  # no procfs (not Linux): poll() is all there is
            return True
        return state not in (b"Z", b"X")

    def close_conn(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()

    def kill(self) -> None:
        """Kill the worker and whatever it started (its process group), and reap it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.close_conn()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def stop(self, grace_s: float = _STOP_GRACE_S) -> None:
        """Ask the worker to exit (end of its input), kill it if it does not."""
        self.close_conn()
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.kill()


_POOLS: weakref.WeakSet[ConverterPool] = weakref.WeakSet()


class ConverterPool:
    """Long-lived converter processes; `convert` (a score) and `call` (any importable function)
    run one item in one worker with a timeout. Thread-safe: each calling thread takes an idle
    worker, and waits for one when all `workers` are busy."""

    def __init__(
        self,
        workers: int = 1,
        max_items_per_worker: int = 1000,
        max_rss_mb: int = 1024,
        memory_limit_mb: int = 4096,
        start_timeout_s: float = 120.0,
        env: dict[str, str] | None = None,
    ) -> None:
        if workers < 1 or max_items_per_worker < 1 or max_rss_mb < 1 or memory_limit_mb < 0:
            raise ValueError(
                "a converter pool needs workers, max_items_per_worker, max_rss_mb >= 1, memory_limit_mb >= 0"
            )
        self.max_items_per_worker = max_items_per_worker
        self.max_rss_mb = max_rss_mb
        self.memory_limit_mb = memory_limit_mb
        self.start_timeout_s = start_timeout_s
        self._env = dict(env or {})
        self._size = workers
        self._reset(workers)
        _POOLS.add(self)

    def _reset(self, workers: int) -> None:
        """Fresh state owned by this process (at creation, and in a forked child)."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        self._slots = workers  # idle + busy; above `_size` while shrinking
        for _ in range(workers):
            self._idle.put(None)  # a slot whose worker starts on first use
        self._live: set[_Worker] = set()
        self._closed = False
        self.stats = {"started": 0, "items": 0, "timeouts": 0, "crashes": 0, "recycled": 0}

    def _forget_inherited(self) -> None:
        """In a forked child: drop the parent's workers (they are not ours to use or stop)."""
        for worker in list(self._live):
            worker.close_conn()  # our copy of the socket only; the parent keeps its own
        self._reset(self._size)

    def _own(self) -> None:
        if self._pid != os.getpid():
            self._forget_inherited()

    # --- size -----------------------------------------------------------------------------
    @property
    def workers(self) -> int:
        return self._size

    def resize(self, workers: int) -> None:
        """Set the number of workers: new slots start on first use; extra workers stop when idle."""
        if workers < 1:
            raise ValueError("a converter pool needs at least one worker")
        self._own()
        with self._lock:
            self._size = workers
            while self._slots < workers:
                self._slots += 1
                self._idle.put(None)
        while True:
            with self._lock:
                if self._slots <= self._size:
                    return
                try:
                    slot = self._idle.get_nowait()
                except queue.Empty:
                    return  # busy ones stop when they are released
                self._slots -= 1
            if slot is not None:
                self._retire(slot)

    def ensure_workers(self, workers: int) -> None:
        """At least `workers` workers (never fewer than now)."""
        if workers > self._size:
            self.resize(workers)

    @contextlib.contextmanager
    def scaled(self, workers: int) -> Iterator[ConverterPool]:
        """At least `workers` workers inside the block (threads converting at once), the size
        before it after."""
        before = self._size
        self.ensure_workers(workers)
        try:
            yield self
        finally:
            if self._size != before and not self._closed:
                self.resize(before)

    def worker_pids(self) -> list[int]:
        """The process ids of the running workers (tests, monitoring)."""
        self._own()
        with self._lock:
            return sorted(w.pid for w in self._live if w.alive())

    # --- workers --------------------------------------------------------------------------
    def _start_worker(self) -> _Worker:
        _ensure_exit_hook()
        parent_sock, child_sock = socket.socketpair()
        fd = child_sock.fileno()
        env = {**os.environ, "PYTHONIOENCODING": "utf-8", **self._env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_CODE, str(fd), str(self.memory_limit_mb)],
                pass_fds=(fd,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # its own process group: a timeout kills what it started too
            )
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        worker = _Worker(proc, Connection(parent_sock.detach()))
        try:
            if not worker.conn.poll(self.start_timeout_s):
                raise PoolError(f"a converter worker did not start within {self.start_timeout_s:g}s")
            try:
                status, _pid = pickle.loads(worker.conn.recv_bytes())
            except (EOFError, OSError):
                worker.kill()
                raise PoolError(
                    f"a converter worker failed to start ({_exit_reason(proc.returncode)}); "
                    "its error is on standard error"
                ) from None
            if status != "ready":
                raise PoolError(f"a converter worker sent {status!r} instead of 'ready'")
        except BaseException:
            worker.kill()
            raise
        with self._lock:
            self._live.add(worker)
            self.stats["started"] += 1
        return worker

    def _retire(self, worker: _Worker, kill: bool = False) -> None:
        worker.kill() if kill else worker.stop()
        with self._lock:
            self._live.discard(worker)

    def _acquire(self) -> _Worker:
        while True:
            if self._closed:
                raise PoolError("the converter pool is shut down")
            try:
                slot = self._idle.get(timeout=1.0)
                break
            except queue.Empty:
                continue
        if slot is not None and slot.alive():
            return slot
        if slot is not None:  # died while idle (e.g. the kernel's OOM killer)
            self._retire(slot, kill=True)
            self.stats["crashes"] += 1
        try:
            return self._start_worker()
        except BaseException:
            self._release(None)
            raise

    def _release(self, worker: _Worker | None) -> None:
        with self._lock:
            shrink = self._closed or self._slots > self._size
            if shrink:
                self._slots -= 1
            else:
                self._idle.put(worker)
        if shrink and worker is not None:
            self._retire(worker)

    # --- running items --------------------------------------------------------------------
    def call(self, fn: Callable[..., Any], *args: Any, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
        """`fn(*args)` in a worker (`fn` importable by name: a module-level function), its result
        or its exception. A `WorkerTimeout` after `timeout_s` seconds (the worker is killed), a
        `WorkerCrashed` when the worker dies; both are `ConversionError`s."""
        self._own()
        request = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        worker = self._acquire()
        keep: _Worker | None = None
        try:
            try:
                worker.conn.send_bytes(request)
            except OSError:  # it died between items: a fresh worker takes the item
                self._retire(worker, kill=True)
                self.stats["crashes"] += 1
                worker = self._start_worker()
                try:
                    worker.conn.send_bytes(request)
                except OSError:
                    self._retire(worker, kill=True)
                    raise WorkerCrashed(f"converter crashed ({_exit_reason(worker.proc.returncode)})") from None
            if not worker.conn.poll(timeout_s):
                self._retire(worker, kill=True)
                self.stats["timeouts"] += 1
                raise WorkerTimeout(f"timed out after {timeout_s:g}s")
            try:
                status, payload, rss_kb, restart = pickle.loads(worker.conn.recv_bytes())
            except (EOFError, OSError):
                self._retire(worker, kill=True)
                self.stats["crashes"] += 1
                raise WorkerCrashed(f"converter crashed ({_exit_reason(worker.proc.returncode)})") from None
            worker.items += 1
            self.stats["items"] += 1
            if restart or worker.items >= self.max_items_per_worker or rss_kb > self.max_rss_mb * 1024:
                self._retire(worker)
                self.stats["recycled"] += 1
            else:
                keep = worker
        finally:
            self._release(keep)
        if status == "ok":
            return payload
        raise payload

    def convert(self, fmt: str, content: bytes, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
        """One score converted to ABC in a worker; a `ConversionError` with the build's reason
        code otherwise: `unparseable_musicxml: ...` for a score that does not parse, and a
        `TransientConversionError` (`conversion_timeout: xml2abc timed out after 30s`,
        `converter_crashed: ...`) for a failure of this run rather than of the score."""
        if fmt not in FORMATS:
            raise ConversionError(f"unsupported_format: {fmt}")
        try:
            return self.call(convert_in_worker, fmt, content, timeout_s, timeout_s=timeout_s)
        except WorkerTimeout:
            raise WorkerTimeout(f"{TIMEOUT_REASON}: {TOOL[fmt]} timed out after {timeout_s:g}s") from None
        except WorkerCrashed as exc:
            raise WorkerCrashed(f"{CRASH_REASON}: {TOOL[fmt]} {exc}") from None

    # --- shutting down --------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop every worker (idle ones exit at the end of their input; busy ones are killed)."""
        if self._pid != os.getpid():
            self._forget_inherited()  # the parent's workers stay the parent's
        self._closed = True
        with self._lock:
            workers = list(self._live)
        for worker in workers:
            worker.close_conn()  # an idle worker exits when its input ends
        deadline = time.monotonic() + _STOP_GRACE_S
        for worker in workers:
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
            with self._lock:
                self._live.discard(worker)

    def __enter__(self) -> ConverterPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


# --- the process-wide default pool -------------------------------------------------------------
_default: ConverterPool | None = None
_default_lock = threading.Lock()


def default_pool() -> ConverterPool:
    """This process's pool, started on first use with `ConversionConfig` (`CLAMP_CONVERSION_*`)."""
    global _default
    pool = _default
    if pool is not None and pool._pid == os.getpid() and not pool._closed:
        return pool
    with _default_lock:
        if _default is None or _default._closed or _default._pid != os.getpid():
            from clamp.config import ConversionConfig

            cfg = ConversionConfig.from_env()
            _default = ConverterPool(cfg.workers, cfg.max_items_per_worker, cfg.max_rss_mb, cfg.memory_limit_mb)
        return _default


def shutdown_default_pool() -> None:
    """Stop the default pool's workers (the next conversion starts a new pool)."""
    global _default
    with _default_lock:
        pool, _default = _default, None
    if pool is not None:
        pool.shutdown()


def _shutdown_all() -> None:
    for pool in list(_POOLS):
        if pool._pid == os.getpid():
            with contextlib.suppress(Exception):
                pool.shutdown()


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for pool in list(_POOLS):
        pool._forget_inherited()


_exit_hook_pid: int | None = None


def _ensure_exit_hook() -> None:
    """Stop the workers when this process ends. `atexit` covers a main process; a
    multiprocessing child (a process pool's worker, a Dask worker) leaves through
    `os._exit` after running multiprocessing's finalizers, so it needs one of those too."""
    global _exit_hook_pid
    if _exit_hook_pid != os.getpid():
        _exit_hook_pid = os.getpid()
        import multiprocessing.util

        multiprocessing.util.Finalize(None, _shutdown_all, exitpriority=100)


atexit.register(_shutdown_all)
os.register_at_fork(after_in_child=_after_fork_in_child)


# --- the worker side ---------------------------------------------------------------------------
_in_worker = False
_test_hooks = False
_restart_after_item = False
_ballast: list[bytes] = []  # what the `alloc` test hook keeps


def in_worker() -> bool:
    """Whether this process is a converter worker (which converts in place)."""
    return _in_worker


def convert_in_worker(fmt: str, content: bytes, timeout_s: float) -> str:
    """A score converted in this worker (what `to_abc` does inside one)."""
    global _restart_after_item
    try:
        if _test_hooks and content.startswith(TEST_HOOK_PREFIX):
            return _test_hook(content[len(TEST_HOOK_PREFIX) :].decode())
        return convert_here(fmt, content, timeout_s)
    except MemoryError:
        _restart_after_item = True  # a fresh process rather than a fragmented heap
        raise ConversionError(f"{FAILURE[fmt]}: too much memory needed to convert it") from None


def _test_hook(command: str) -> str:
    action, _, arg = command.partition(":")
    if action == "sleep":
        time.sleep(float(arg))
    elif action == "exit":
        os._exit(int(arg))
    elif action == "signal":
        os.kill(os.getpid(), int(arg))
        time.sleep(60)  # a caught or ignored signal: the caller's timeout ends it
    elif action == "alloc":
        _ballast.append(b"\1" * (int(arg) << 20))  # written, so resident
    elif action != "pid":
        raise ValueError(f"unknown converter test hook {action!r}")
    return f"X:1\nT:{action} {os.getpid()}\nK:C\nCDEF|\n"


def _rss_kb() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the peak: errs towards a restart


def _vm_bytes() -> int:
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def _memory_cap(limit_mb: int) -> Iterator[None]:
    """The address space may grow by at most `limit_mb` MiB inside the block."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = _vm_bytes() + (limit_mb << 20)
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ImportError, OSError, ValueError):
        yield  # no cap where the platform has none
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _run_item(request: bytes, memory_limit_mb: int) -> bytes:
    global _restart_after_item
    _restart_after_item = False
    try:
        fn, args = pickle.loads(request)
        if memory_limit_mb:
            with _memory_cap(memory_limit_mb):
                result = fn(*args)
        else:
            result = fn(*args)
        status, payload = "ok", result
    except MemoryError as exc:
        _restart_after_item = True
        status, payload = "error", exc
    except BaseException as exc:  # a job's error (SystemExit too) is the caller's, not the worker's end
        if not isinstance(exc, ConversionError):
            exc.add_note("in the converter worker:\n" + "".join(traceback.format_exception(exc)).rstrip())
        status, payload = "error", exc
    try:
        return pickle.dumps((status, payload, _rss_kb(), _restart_after_item), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # an unpicklable result or exception
        error = RuntimeError(f"converter worker could not send its {status} reply: {type(exc).__name__}: {exc}"[:500])
        return pickle.dumps(("error", error, _rss_kb(), True), protocol=pickle.HIGHEST_PROTOCOL)


def _watch_parent(parent: int) -> None:
    """Exit when the parent is gone (even in the middle of an item): never an orphan."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def _worker_main() -> None:
    """A worker's life: announce itself, then run items until its input ends."""
    global _in_worker, _test_hooks
    _in_worker = True
    _test_hooks = os.environ.get(TEST_HOOKS_ENV) == "1"
    fd, memory_limit_mb = int(sys.argv[1]), int(sys.argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller decides when a worker ends
    with contextlib.suppress(ImportError, OSError, ValueError):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))  # no core files
    threading.Thread(target=_watch_parent, args=(os.getppid(),), name="clamp-converter-watchdog", daemon=True).start()
    conn = Connection(fd)
    from clamp.abc.converters import xml2abc_module

    xml2abc_module()  # xml2abc's one import
    conn.send_bytes(pickle.dumps(("ready", os.getpid())))
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            break
        conn.send_bytes(_run_item(request, memory_limit_mb))
