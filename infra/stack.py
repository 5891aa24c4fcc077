"""Start, check and stop the local stack on 127.0.0.1: Prefect server + process work pool and
worker, MLflow tracking server (SQLite + local artifacts), optionally a Dask scheduler and
workers. Pid and log files live in a state folder; telemetry is off.

    python -m infra.stack up [--dask]      # then: source .clamp/stack/env.sh
    python -m infra.stack status
    python -m infra.stack down
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
POOL = "clamp-process"
QUIET_ENV = {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DASK_LOGGING__DISTRIBUTED": "warning",
}


class StackError(RuntimeError):
    """A service did not come up or go down; the message says which and where its log is."""


@dataclass
class Ports:
    prefect: int = 4200
    mlflow: int = 5000
    dask: int = 8786


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _tcp_ok(port: int) -> bool:
    return not _port_free(port)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


class Stack:
    def __init__(self, state_dir: str | Path = ".clamp/stack", ports: Ports | None = None) -> None:
        self.state = Path(state_dir).resolve()
        self.ports = ports or Ports()
        self.meta_file = self.state / "stack.json"

    # --- environment --------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            **QUIET_ENV,
            "PREFECT_HOME": str(self.state / "prefect"),
            "PREFECT_API_URL": f"http://127.0.0.1:{self.ports.prefect}/api",
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{self.ports.mlflow}",
        }

    def client_env(self) -> dict[str, str]:
        """What a shell needs to use the stack (written to env.sh)."""
        out = {k: self.env()[k] for k in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "PREFECT_HOME", *QUIET_ENV)}
        if self._meta().get("dask"):
            out["CLAMP_SCHEDULER_ADDRESS"] = f"tcp://127.0.0.1:{self.ports.dask}"
        return out

    # --- bookkeeping --------------------------------------------------------------------
    def _meta(self) -> dict:
        return json.loads(self.meta_file.read_text()) if self.meta_file.is_file() else {}

    def _save_meta(self, meta: dict) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.meta_file.write_text(json.dumps(meta, indent=2))

    def _spawn(self, name: str, args: list[str]) -> int:
        logs = self.state / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(args, env=self.env(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        (self.state / f"{name}.pid").write_text(str(proc.pid))
        return proc.pid

    def _wait(self, name: str, check, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pid = int((self.state / f"{name}.pid").read_text())
        while time.monotonic() < deadline:
            if check():
                return
            if not _alive(pid):
                break
            time.sleep(0.5)
        raise StackError(f"{name} did not become healthy; see {self.state / 'logs' / (name + '.log')}")

    # --- services ---------------------------------------------------------------------------
    def services(self) -> list[tuple[str, Callable[[], bool]]]:
        p = self.ports
        items = [
            ("prefect-server", lambda: _http_ok(f"http://127.0.0.1:{p.prefect}/api/health")),
            ("mlflow-server", lambda: _http_ok(f"http://127.0.0.1:{p.mlflow}/health")),
            ("prefect-worker", lambda: self._pid_alive("prefect-worker")),
        ]
        if self._meta().get("dask"):
            items += [("dask-scheduler", lambda: _tcp_ok(p.dask)), ("dask-workers", lambda: self._pid_alive("dask-workers"))]
        return items

    def _pid_alive(self, name: str) -> bool:
        f = self.state / f"{name}.pid"
        return f.is_file() and _alive(int(f.read_text()))

    def up(self, dask: bool = False, timeout: float = 120.0) -> None:
        if self._meta().get("running"):
            raise StackError(f"the stack in {self.state} is already up (run `down` first)")
        p = self.ports
        busy = [str(x) for x in (p.prefect, p.mlflow, *([p.dask] if dask else [])) if not _port_free(x)]
        if busy:
            raise StackError(f"port(s) {', '.join(busy)} already in use on 127.0.0.1")
        self._save_meta({"running": True, "dask": dask, "ports": vars(p)})
        (self.state / "mlflow" / "artifacts").mkdir(parents=True, exist_ok=True)
        try:
            self._spawn("prefect-server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(p.prefect)])
            self._spawn("mlflow-server", [
                str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.state / 'mlflow' / 'mlflow.db'}",
                "--default-artifact-root", str(self.state / "mlflow" / "artifacts"), "--host", "127.0.0.1",
                "--port", str(p.mlflow), "--workers", "1",
            ])
            if dask:
                self._spawn("dask-scheduler", [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(p.dask),
                                               "--no-dashboard"])
            self._wait("prefect-server", self.services()[0][1], timeout)
            pool = subprocess.run([str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process", "--overwrite"],
                                  env=self.env(), cwd=REPO, capture_output=True, text=True, timeout=120)
            if pool.returncode != 0:
                raise StackError(f"could not create work pool {POOL}: {pool.stderr.strip()[-300:]}")
            self._spawn("prefect-worker", [str(BIN / "prefect"), "worker", "start", "--pool", POOL])
            if dask:
                self._wait("dask-scheduler", lambda: _tcp_ok(p.dask), timeout)
                self._spawn("dask-workers", [str(BIN / "dask"), "worker", f"tcp://127.0.0.1:{p.dask}", "--nworkers", "2",
                                             "--nthreads", "1", "--no-dashboard"])
            self._wait("mlflow-server", self.services()[1][1], timeout)
        except Exception:
            self.down()
            raise
        (self.state / "env.sh").write_text("".join(f"export {k}={v}\n" for k, v in self.client_env().items()))

    def restart_worker(self) -> int:
        """Start the Prefect worker again (after it died or was killed)."""
        f = self.state / "prefect-worker.pid"
        if f.is_file() and _alive(int(f.read_text())):
            raise StackError("the worker is still running")
        return self._spawn("prefect-worker", [str(BIN / "prefect"), "worker", "start", "--pool", POOL])

    def status(self) -> dict[str, bool]:
        return {name: bool(check()) for name, check in self.services()} if self._meta().get("running") else {}

    def down(self, timeout: float = 30.0) -> None:
        """Stop in reverse order: the worker (SIGINT; it ignores SIGTERM), then the servers."""
        order = ["dask-workers", "prefect-worker", "dask-scheduler", "mlflow-server", "prefect-server"]
        for name in order:
            f = self.state / f"{name}.pid"
            if not f.is_file():
                continue
            pid = int(f.read_text())
            sig = signal.SIGINT if name == "prefect-worker" else signal.SIGTERM
            with contextlib.suppress(OSError):
                os.killpg(pid, sig)  # its own session: children (uvicorn, nannies) go too
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(pid):
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
            f.unlink()
        if self.meta_file.is_file():
            self._save_meta({**self._meta(), "running": False})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "status", "down", "env"])
    parser.add_argument("--state-dir", default=".clamp/stack", help="pid files, logs, databases")
    parser.add_argument("--dask", action="store_true", help="also start a Dask scheduler and 2 workers")
    parser.add_argument("--prefect-port", type=int, default=4200)
    parser.add_argument("--mlflow-port", type=int, default=5000)
    parser.add_argument("--dask-port", type=int, default=8786)
    args = parser.parse_args(argv)
    stack = Stack(args.state_dir, Ports(args.prefect_port, args.mlflow_port, args.dask_port))
    try:
        if args.command == "up":
            stack.up(dask=args.dask)
            print(f"stack up: Prefect UI http://127.0.0.1:{args.prefect_port}, MLflow UI http://127.0.0.1:{args.mlflow_port}")
            print(f"use it from a shell:  source {stack.state / 'env.sh'}")
        elif args.command == "status":
            status = stack.status()
            if not status:
                print("stack is down")
                return 1
            for name, ok in status.items():
                print(f"{name:16s} {'healthy' if ok else 'DOWN'}")
            return 0 if all(status.values()) else 1
        elif args.command == "env":
            print("".join(f"export {k}={v}\n" for k, v in stack.client_env().items()), end="")
        else:
            stack.down()
            print("stack down")
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
