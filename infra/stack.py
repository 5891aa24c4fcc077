"""Start, check and stop the local stack on 127.0.0.1: Prefect server + process work pool and
worker, MLflow tracking server (SQLite + local artifacts), optionally a Dask scheduler and
workers. Pid and log files live in a state folder; telemetry is off.

    python -m infra.stack up [--dask]      # then: source .clamp/stack/env.sh
    python -m infra.stack status
    python -m infra.stack down

Every setting is a field of `StackConfig`; a command line option left out keeps its default.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clamp import cli_common
from clamp.environment import DEFAULTS, apply_defaults
from clamp.errors import ConfigError, UserError, error_line
from clamp.io import write_json_atomic, write_text_atomic

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
POOL = "clamp-process"  # the work pool every deployment in prefect.yaml names: not a setting
# what the services need on top of clamp.environment.DEFAULTS (env.sh exports it too)
STACK_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

Port = Annotated[int, Field(ge=1, le=65535)]


class StackConfig(BaseModel):
    """Every setting of the local stack; each default is here and nowhere else."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_dir: Path = Field(Path(".clamp/stack"), description="pid files, logs, databases, env.sh")
    host: IPv4Address = Field(IPv4Address("127.0.0.1"), description="address the services listen on")
    prefect_port: Port = Field(4200, description="Prefect server (API and UI)")
    mlflow_port: Port = Field(5000, description="MLflow tracking server")
    dask_port: Port = Field(8786, description="Dask scheduler")
    dask: bool = Field(False, description="also start a Dask scheduler and workers")
    dask_workers: int = Field(2, ge=1, le=256, description="Dask worker processes")
    dask_threads: int = Field(1, ge=1, le=256, description="threads per Dask worker")
    start_timeout: float = Field(120.0, gt=0, description="seconds each service has to become healthy")
    stop_timeout: float = Field(30.0, gt=0, description="seconds each service has to stop before SIGKILL")
    worker_query_seconds: int = Field(2, ge=1, description="how often the Prefect worker polls for runs")

    @model_validator(mode="after")
    def _distinct_ports(self) -> StackConfig:
        if len({self.prefect_port, self.mlflow_port, self.dask_port}) < 3:
            raise ValueError("prefect_port, mlflow_port and dask_port must differ")
        return self

    @classmethod
    def from_options(cls, **given: Any) -> StackConfig:
        """The config from what the user gave (None: the default); a bad value is a ConfigError."""
        try:
            return cls(**{k: v for k, v in given.items() if v is not None})
        except ValidationError as exc:
            raise ConfigError(error_line(exc)) from exc


class Ports(NamedTuple):
    """The three ports, as `Stack(state_dir, Ports(prefect, mlflow, dask))` takes them."""

    prefect: int
    mlflow: int
    dask: int


class StackError(UserError):
    """A service did not come up or go down; the message says which and where its log is."""


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


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
    """The services of one state folder. `config` gives every setting; `state_dir` and `ports`,
    when given, replace those of `config`."""

    def __init__(self, state_dir: str | Path | None = None, ports: Ports | None = None, *,
                 config: StackConfig | None = None) -> None:
        given: dict[str, Any] = {"state_dir": state_dir}
        if ports is not None:
            given |= {"prefect_port": ports.prefect, "mlflow_port": ports.mlflow, "dask_port": ports.dask}
        base = config.model_dump() if config else {}
        self.config = StackConfig.from_options(**{**base, **{k: v for k, v in given.items() if v is not None}})
        self.state = self.config.state_dir.resolve()
        self.host = str(self.config.host)
        self.meta_file = self.state / "stack.json"

    @classmethod
    def open(cls, state_dir: str | Path | None = None, **given: Any) -> Stack:
        """The stack in `state_dir` with the settings it was started with, then what is given."""
        state = StackConfig.from_options(state_dir=state_dir).state_dir
        meta = json.loads((state / "stack.json").read_text()) if (state / "stack.json").is_file() else {}
        saved = meta.get("config") or {f"{k}_port": v for k, v in meta.get("ports", {}).items()}
        given = {k: v for k, v in given.items() if v is not None}
        return cls(config=StackConfig.from_options(**{**saved, **given, "state_dir": state}))

    @property
    def ports(self) -> Ports:
        c = self.config
        return Ports(c.prefect_port, c.mlflow_port, c.dask_port)

    # --- environment --------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The services' environment: the offline defaults (unless already set), then the stack's own."""
        return {
            **DEFAULTS,
            **os.environ,
            **STACK_ENV,
            "PREFECT_HOME": str(self.state / "prefect"),
            "PREFECT_API_URL": f"http://{self.host}:{self.ports.prefect}/api",
            "PREFECT_WORKER_QUERY_SECONDS": str(self.config.worker_query_seconds),
            "MLFLOW_TRACKING_URI": f"http://{self.host}:{self.ports.mlflow}",
        }

    def client_env(self) -> dict[str, str]:
        """What a shell needs to use the stack (written to env.sh)."""
        env = self.env()
        keys = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "PREFECT_HOME", *DEFAULTS, *STACK_ENV)
        out = {k: env[k] for k in keys}
        if self._meta().get("dask"):
            out["CLAMP_SCHEDULER_ADDRESS"] = f"tcp://{self.host}:{self.ports.dask}"
        return out

    def env_script(self) -> str:
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in self.client_env().items())

    # --- bookkeeping --------------------------------------------------------------------
    def _meta(self) -> dict:
        return json.loads(self.meta_file.read_text()) if self.meta_file.is_file() else {}

    def _save_meta(self, meta: dict) -> None:
        write_json_atomic(meta, self.meta_file)

    def _pid(self, name: str) -> int | None:
        f = self.state / f"{name}.pid"
        return int(f.read_text()) if f.is_file() else None

    def _log(self, name: str) -> Path:
        return self.state / "logs" / f"{name}.log"

    def _spawn(self, name: str, args: list[str]) -> int:
        self._log(name).parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(self._log(name), "ab") as log:
                proc = subprocess.Popen(args, env=self.env(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        except FileNotFoundError as exc:
            raise StackError(f"cannot start {name}: {exc.filename or args[0]} not found") from exc
        write_text_atomic(str(proc.pid), self.state / f"{name}.pid")
        return proc.pid

    def _wait(self, name: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pid = self._pid(name)
        while time.monotonic() < deadline:
            if check():
                return
            if pid is None or not _alive(pid):
                break
            time.sleep(0.5)
        how = f"did not become healthy in {timeout:g} s" if time.monotonic() >= deadline else "exited"
        lines = self._log(name).read_text(errors="replace").strip().splitlines() if self._log(name).is_file() else []
        last = f" (last log line: {lines[-1].strip()[:200]})" if lines else ""
        raise StackError(f"{name} {how}; see {self._log(name)}{last}")

    # --- services ---------------------------------------------------------------------------
    def services(self) -> list[tuple[str, Callable[[], bool]]]:
        h, p = self.host, self.ports
        items = [
            ("prefect-server", lambda: _http_ok(f"http://{h}:{p.prefect}/api/health")),
            ("mlflow-server", lambda: _http_ok(f"http://{h}:{p.mlflow}/health")),
            ("prefect-worker", lambda: self._pid_alive("prefect-worker")),
        ]
        if self._meta().get("dask"):
            items += [("dask-scheduler", lambda: not _port_free(h, p.dask)),
                      ("dask-workers", lambda: self._pid_alive("dask-workers"))]
        return items

    def _pid_alive(self, name: str) -> bool:
        pid = self._pid(name)
        return pid is not None and _alive(pid)

    def up(self, dask: bool | None = None, timeout: float | None = None) -> None:
        """Start every service and wait until each is healthy; on any failure stop what started."""
        c = self.config
        dask = c.dask if dask is None else dask
        timeout = c.start_timeout if timeout is None else timeout
        if self._meta().get("running"):
            raise StackError(f"the stack in {self.state} is already up (run `down` first)")
        h, p = self.host, self.ports
        busy = [str(x) for x in (p.prefect, p.mlflow, *([p.dask] if dask else [])) if not _port_free(h, x)]
        if busy:
            raise StackError(f"port(s) {', '.join(busy)} already in use on {h}")
        self._save_meta({"running": True, "dask": dask, "ports": p._asdict(),
                         "config": c.model_copy(update={"dask": dask}).model_dump(mode="json")})
        (self.state / "mlflow" / "artifacts").mkdir(parents=True, exist_ok=True)
        try:
            self._spawn("prefect-server", [str(BIN / "prefect"), "server", "start", "--host", h, "--port", str(p.prefect)])
            self._spawn("mlflow-server", [
                str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.state / 'mlflow' / 'mlflow.db'}",
                "--default-artifact-root", str(self.state / "mlflow" / "artifacts"), "--host", h,
                "--port", str(p.mlflow), "--workers", "1",
            ])
            if dask:
                self._spawn("dask-scheduler", [str(BIN / "dask"), "scheduler", "--host", h, "--port", str(p.dask),
                                               "--no-dashboard"])
            self._wait("prefect-server", self.services()[0][1], timeout)
            try:
                pool = subprocess.run([str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process",
                                       "--overwrite"], env=self.env(), cwd=REPO, capture_output=True, text=True,
                                      timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                raise StackError(f"creating work pool {POOL} took over {timeout:g} s") from exc
            if pool.returncode != 0:
                raise StackError(f"could not create work pool {POOL}: {pool.stderr.strip()[-300:]}")
            self._spawn("prefect-worker", [str(BIN / "prefect"), "worker", "start", "--pool", POOL])
            if dask:
                self._wait("dask-scheduler", lambda: not _port_free(h, p.dask), timeout)
                self._spawn("dask-workers", [str(BIN / "dask"), "worker", f"tcp://{h}:{p.dask}",
                                             "--nworkers", str(c.dask_workers), "--nthreads", str(c.dask_threads),
                                             "--no-dashboard"])
            self._wait("mlflow-server", self.services()[1][1], timeout)
        except BaseException:  # Ctrl-C included: leave nothing running
            self.down()
            raise
        write_text_atomic(self.env_script(), self.state / "env.sh")

    def restart_worker(self) -> int:
        """Start the Prefect worker again (after it died or was killed)."""
        if self._pid_alive("prefect-worker"):
            raise StackError("the worker is still running")
        return self._spawn("prefect-worker", [str(BIN / "prefect"), "worker", "start", "--pool", POOL])

    def status(self) -> dict[str, bool]:
        return {name: bool(check()) for name, check in self.services()} if self._meta().get("running") else {}

    def down(self, timeout: float | None = None) -> None:
        """Stop in reverse order: the worker (SIGINT; it ignores SIGTERM), then the servers."""
        timeout = self.config.stop_timeout if timeout is None else timeout
        order = ["dask-workers", "prefect-worker", "dask-scheduler", "mlflow-server", "prefect-server"]
        for name in order:
            pid = self._pid(name)
            if pid is None:
                continue
            sig = signal.SIGINT if name == "prefect-worker" else signal.SIGTERM
            with contextlib.suppress(OSError):
                os.killpg(pid, sig)  # its own session: children (uvicorn, nannies) go too
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(pid):
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
            (self.state / f"{name}.pid").unlink()
        if self.meta_file.is_file():
            self._save_meta({**self._meta(), "running": False})


# --- command line ---------------------------------------------------------------------------
# user errors: one line and exit status 2, or the traceback with --debug (clamp/cli_common.py)
app = cli_common.make_group_app(__doc__.split("\n\n")[0])


def _help(field: str) -> str:
    info = StackConfig.model_fields[field]
    return f"{info.description} (default: {info.default})"


StateDir = Annotated[Path | None, typer.Option(help=_help("state_dir"), show_default=False)]
PrefectPort = Annotated[int | None, typer.Option(help=_help("prefect_port"), show_default=False)]
MlflowPort = Annotated[int | None, typer.Option(help=_help("mlflow_port"), show_default=False)]
DaskPort = Annotated[int | None, typer.Option(help=_help("dask_port"), show_default=False)]


@app.command()
def up(
    state_dir: StateDir = None,
    dask: Annotated[bool, typer.Option("--dask", help=_help("dask"))] = False,
    dask_workers: Annotated[int | None, typer.Option(help=_help("dask_workers"), show_default=False)] = None,
    prefect_port: PrefectPort = None,
    mlflow_port: MlflowPort = None,
    dask_port: DaskPort = None,
    timeout: Annotated[float | None, typer.Option(help=_help("start_timeout"), show_default=False)] = None,
) -> None:
    """Start the services and write env.sh; exit 2 when one cannot start."""
    stack = Stack(config=StackConfig.from_options(
        state_dir=state_dir, dask=dask or None, dask_workers=dask_workers, prefect_port=prefect_port,
        mlflow_port=mlflow_port, dask_port=dask_port, start_timeout=timeout))
    stack.up()
    h, p = stack.host, stack.ports
    typer.echo(f"stack up: Prefect UI http://{h}:{p.prefect}, MLflow UI http://{h}:{p.mlflow}"
               + (f", Dask scheduler tcp://{h}:{p.dask}" if stack.config.dask else ""))
    typer.echo(f"use it from a shell:  source {stack.state / 'env.sh'}")


@app.command()
def status(state_dir: StateDir = None, prefect_port: PrefectPort = None, mlflow_port: MlflowPort = None,
           dask_port: DaskPort = None) -> None:
    """Check each service (ports: those it was started with); exit 0 only when all are healthy."""
    result = Stack.open(state_dir, prefect_port=prefect_port, mlflow_port=mlflow_port, dask_port=dask_port).status()
    if not result:
        typer.echo("stack is down")
        raise typer.Exit(1)
    for name, ok in result.items():
        typer.echo(f"{name:16s} {'healthy' if ok else 'DOWN'}")
    raise typer.Exit(0 if all(result.values()) else 1)


@app.command()
def down(
    state_dir: StateDir = None,
    timeout: Annotated[float | None, typer.Option(help=_help("stop_timeout"), show_default=False)] = None,
) -> None:
    """Stop every service of the state folder (SIGKILL after the timeout)."""
    Stack.open(state_dir, stop_timeout=timeout).down()
    typer.echo("stack down")


@app.command()
def env(state_dir: StateDir = None, prefect_port: PrefectPort = None, mlflow_port: MlflowPort = None,
        dask_port: DaskPort = None) -> None:
    """Print the `export` lines of env.sh."""
    stack = Stack.open(state_dir, prefect_port=prefect_port, mlflow_port=mlflow_port, dask_port=dask_port)
    typer.echo(stack.env_script(), nl=False)


def main() -> None:
    apply_defaults()
    app(prog_name="python -m infra.stack")


if __name__ == "__main__":
    main()
