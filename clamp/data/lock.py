"""One build per dataset folder at a time: an exclusive, non-blocking lock with a holder record.

The lock is `flock` on `<output_dir>/.<name>.lock`, a sibling of the dataset folder, so taking it
writes nothing inside the folder (a refused build leaves the folder exactly as it was) and an
`--overwrite`, which empties the folder, cannot delete it. Beside it, `.<name>.lock.json` names
the holder: pid, host, start time, command.

- A second build of the same dataset fails at once with a `DatasetLockedError` naming the holder.
- The kernel drops an `flock` when its holder dies, however it dies (SIGKILL, OOM killer), so a
  lock is never stale by itself; what a killed holder leaves is its record. The next build
  finds the lock free and the record still there, logs that it takes the lock over from the dead
  process, and writes its own record.
- Forked children (the process pool's workers) close their copy of the lock's descriptor at
  once: otherwise a worker outliving a killed build would keep the dataset locked.

Docs: docs/reliability.md, "Dataset locks, atomic manifests, disk full".
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from clamp.data.shards import write_json_atomic
from clamp.errors import UserError

log = logging.getLogger("clamp.data.lock")

# How long a refused build waits for the holder's record to appear: a holder writes it right
# after taking the lock, so a contender can be a few milliseconds early. Not a wait for the lock.
_RECORD_GRACE_S = 0.5


class DatasetLockedError(UserError):
    """Another live process is building this dataset."""


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    since: str  # ISO 8601, UTC, seconds
    command: str
    pid_start: str | None = None  # the process's start time in clock ticks (Linux): tells a reused pid apart

    @classmethod
    def me(cls) -> LockHolder:
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            since=datetime.now(UTC).isoformat(timespec="seconds"),
            command=shlex.join(sys.argv)[:300],
            pid_start=_process_start(os.getpid()),
        )

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, since {self.since} (command: {self.command})"

    def alive(self) -> bool | None:
        """Whether the process still runs: None when it ran on another host (unknowable here)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: it exists
            pass
        if not Path("/proc/self/stat").is_file():  # no /proc: trust kill(0)
            return True
        start = _process_start(self.pid)
        if start is None:  # exited meanwhile, or killed and not yet reaped (a zombie)
            return False
        return self.pid_start is None or start == self.pid_start  # another start time: a reused pid


def lock_paths(dataset_dir: str | Path) -> tuple[Path, Path]:
    """(lock file, holder record) of a dataset folder: hidden siblings of it."""
    root = Path(dataset_dir)
    return root.parent / f".{root.name}.lock", root.parent / f".{root.name}.lock.json"


# Descriptors of the locks this process holds, closed in forked children (see the module doc).
_HELD: set[int] = set()


def _close_in_child() -> None:
    for fd in _HELD:
        with suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


@contextmanager
def dataset_lock(dataset_dir: str | Path) -> Iterator[LockHolder]:
    """Hold the dataset's lock for the block; raise `DatasetLockedError` at once if it is held.

    Take it before anything is written into the folder, and keep it until the manifest is in
    place: the build's deletions (`--overwrite`, stale shards) are safe only with no other build.
    """
    root = Path(dataset_dir)
    lock_file, record_file = lock_paths(root)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        _acquire(fd, root, record_file)
    except BaseException:
        os.close(fd)
        raise
    _HELD.add(fd)
    try:
        previous = read_holder(record_file)
        if previous is not None:
            why = "that process is gone" if previous.alive() is False else "it no longer holds the lock"
            log.warning("taking over the stale lock of %s left by %s: %s", root, previous.describe(), why)
        me = LockHolder.me()
        write_json_atomic(asdict(me), record_file)
        yield me
    finally:
        try:
            record_file.unlink(missing_ok=True)  # while still holding the lock: the record is ours
        finally:
            _HELD.discard(fd)
            os.close(fd)  # the last descriptor closed releases the lock


def _acquire(fd: int, root: Path, record_file: Path) -> None:
    """flock without waiting for the holder; a refusal names it (after a short grace for its record)."""
    deadline = time.monotonic() + _RECORD_GRACE_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            holder = read_holder(record_file)
            if holder is not None and holder.alive() is not False:
                raise DatasetLockedError(_locked_message(root, holder)) from None
            if time.monotonic() >= deadline:
                raise DatasetLockedError(_locked_message(root, holder)) from None
            # the record is missing or names a dead process: the new holder has not written its
            # record yet, or a `check_unlocked` probe holds the lock for a moment
            time.sleep(0.02)


def _locked_message(root: Path, holder: LockHolder | None) -> str:
    lock_file = lock_paths(root)[0]
    if holder is None:
        who = "another process (it has not recorded itself)"
    elif holder.alive() is False:
        who = f"a leftover child of {holder.describe()}, which is gone"
    else:
        who = holder.describe()
    return f"dataset {root.name} is being built by {who}: wait for it to finish or stop it (lock: {lock_file})"


def check_unlocked(dataset_dir: str | Path) -> None:
    """Raise `DatasetLockedError` if a build holds the dataset now; writes nothing.

    For entry points that start slow machinery (Prefect, Dask) before the build takes the lock:
    they fail fast. The build itself still takes the lock (`dataset_lock`).
    """
    root = Path(dataset_dir)
    lock_file, record_file = lock_paths(root)
    try:
        fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        # shared: two probes never refuse each other; a build's exclusive lock refuses both
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DatasetLockedError(_locked_message(root, read_holder(record_file))) from None
    finally:
        os.close(fd)


def read_holder(record_file: Path) -> LockHolder | None:
    """The holder record, or None if there is none (or it cannot be read)."""
    try:
        data = json.loads(record_file.read_text(encoding="utf-8"))
        holder = LockHolder(**{k: data.get(k) for k in LockHolder.__dataclass_fields__})
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return holder if isinstance(holder.pid, int) and isinstance(holder.host, str) else None


def _process_start(pid: int) -> str | None:
    """The start time of a running process from /proc (clock ticks since boot); None if it is
    not running (a zombie counts as not running) or /proc is unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3
    if fields[0] == "Z":
        return None
    return fields[19]  # field 22: starttime
