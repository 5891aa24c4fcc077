"""Start, check and stop the local stack on 127.0.0.1: Prefect server + process work pool and
worker, MLflow tracking server (SQLite + local artifacts), optionally a Dask scheduler and
workers, and optionally PostgreSQL as Prefect's and MLflow's database instead of SQLite. Pid and
log files live in a state folder; telemetry is off.

    python -m infra.stack up [--dask] [--postgres] [--serve]  # then: source .clamp/stack/env.sh
    python -m infra.stack status
    python -m infra.stack down
    python -m infra.stack certs                      # for `up --dask-tls`: Dask over mutual TLS

Every process listens on 127.0.0.1 only; `up --host ADDR` opens them to the network, with a warning.
Every setting is a field of `StackConfig`; a command line option left out keeps its default.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shlex
import shutil
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
from clamp.config import DEFAULT_DATASET_DIR, DEFAULT_MODEL_DIR
from clamp.environment import DEFAULTS, apply_defaults
from clamp.errors import ConfigError, UserError, error_line
from clamp.io import write_json_atomic, write_text_atomic
from infra.tls import TlsFiles, make_certs

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
POOL = "clamp-process"  # the work pool every deployment in prefect.yaml names: not a setting
# what the services need on top of clamp.environment.DEFAULTS (env.sh exports it too)
STACK_ENV = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    # A flow run retries each Prefect API call 7 times (waits of 2, 4, ..., 128 s, about 4 min in
    # all), not 5 (about 1 min). With 5, a build lost to a 96 s server restart: it was done, but
    # could not report it, and its run stayed Running. With 7, it completes (docs/services.md#outages).
    "PREFECT_CLIENT_MAX_RETRIES": "7",
}
# Dask's HTTP routes (/health, /metrics, /info; the dashboard stays off) on loopback and a free
# port whatever --host says: the stack never reads them, and the default is 0.0.0.0:8787
DASK_HTTP = "127.0.0.1:0"
# Every service starts with SIGINT and SIGQUIT at their defaults, then execs its command (same
# pid). A shell hands a job it starts in the background (`cmd &`) both signals ignored, and
# children inherit that. A Prefect worker started so printed "Received SIGINT" and ran on: its
# handler puts back the inherited "ignore" and sends the signal to itself again.
DEFAULT_SIGNALS = (
    "import os, signal, sys\n"
    "for s in (signal.SIGINT, signal.SIGQUIT): signal.signal(s, signal.SIG_DFL)\n"
    "os.execv(sys.argv[1], sys.argv[1:])"
)

Port = Annotated[int, Field(ge=1, le=65535)]


class StackConfig(BaseModel):
    """Every setting of the local stack; each default is here and nowhere else."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_dir: Path = Field(Path(".clamp/stack"), description="pid files, logs, databases, env.sh")
    host: IPv4Address = Field(
        IPv4Address("127.0.0.1"),
        description="address the services listen on; anything but 127.0.0.1 makes them reachable from the network",
    )
    prefect_port: Port = Field(4200, description="Prefect server (API and UI)")
    mlflow_port: Port = Field(5000, description="MLflow tracking server")
    dask_port: Port = Field(8786, description="Dask scheduler")
    dask: bool = Field(False, description="also start a Dask scheduler and workers")
    dask_workers: int = Field(2, ge=1, le=256, description="Dask worker processes")
    dask_threads: int = Field(1, ge=1, le=256, description="threads per Dask worker")
    dask_tls: bool = Field(
        False, description="Dask over mutual TLS with the certificates of `certs` (made at `up` when missing)"
    )
    start_timeout: float = Field(120.0, gt=0, description="seconds each service has to become healthy")
    stop_timeout: float = Field(30.0, gt=0, description="seconds each service has to stop before SIGKILL")
    worker_query_seconds: int = Field(2, ge=1, description="how often the Prefect worker polls for runs")
    postgres: bool = Field(False, description="store Prefect's and MLflow's data in a local PostgreSQL cluster")
    postgres_port: Port | None = Field(None, description="PostgreSQL (with --postgres); unset: a free port at `up`")
    postgres_user: str = Field(
        "postgres", min_length=1, description="OS user that runs PostgreSQL when the stack is started by root"
    )
    postgres_bin: Path | None = Field(None, description="folder of initdb and pg_ctl; unset: Debian's newest")
    serve: bool = Field(False, description="also start `clamp serve` (search page and JSON API)")
    serve_port: Port = Field(8000, description="`clamp serve` (with --serve)")
    serve_model: Path = Field(DEFAULT_MODEL_DIR, description="the model `clamp serve` loads")
    serve_index: Path = Field(DEFAULT_DATASET_DIR, description="the dataset `clamp serve` searches")
    serve_start_timeout: float = Field(
        900.0, gt=0, description="seconds `clamp serve` has to become ready (its first start embeds the dataset)"
    )

    @model_validator(mode="after")
    def _distinct_ports(self) -> StackConfig:
        if len({self.prefect_port, self.mlflow_port, self.dask_port}) < 3:
            raise ValueError("prefect_port, mlflow_port and dask_port must differ")
        if self.postgres_port in (self.prefect_port, self.mlflow_port, self.dask_port):
            raise ValueError("postgres_port must differ from the other ports")
        if self.serve and self.serve_port in (self.prefect_port, self.mlflow_port, self.dask_port, self.postgres_port):
            raise ValueError("serve_port must differ from the other ports")
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


# --- PostgreSQL (with --postgres) ------------------------------------------------------------
PG_SUPERUSER = "postgres"  # the cluster's superuser: reachable only over the private unix socket
PG_ROLE = "clamp"  # what Prefect and MLflow log in as: owner of their databases, not a superuser
PG_DATABASES = ("prefect", "mlflow")


def postgres_bin_dir(configured: Path | None = None) -> Path | None:
    """The folder of initdb and pg_ctl: `configured`, else the newest of Debian's
    /usr/lib/postgresql/<version>/bin, else where pg_ctl on PATH points; None when not installed."""
    if configured is not None:
        return configured if (configured / "pg_ctl").is_file() else None

    def version(pg_ctl: Path) -> tuple[int, str]:
        name = pg_ctl.parents[1].name  # <version>/bin/pg_ctl
        return (int(name) if name.isdigit() else -1, name)

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=version)
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")  # e.g. a symlink in /usr/local/bin: its siblings are in the real folder
    return Path(on_path).resolve().parent if on_path else None


def _running(pid: int) -> bool:
    """Alive and not a zombie, for any process: _alive can only reap our own children, and the
    postmaster is not one (pg_ctl starts it in the background)."""
    if not _alive(pid):
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Stack:
    """The services of one state folder. `config` gives every setting; `state_dir` and `ports`,
    when given, replace those of `config`."""

    def __init__(
        self, state_dir: str | Path | None = None, ports: Ports | None = None, *, config: StackConfig | None = None
    ) -> None:
        given: dict[str, Any] = {"state_dir": state_dir}
        if ports is not None:
            given |= {"prefect_port": ports.prefect, "mlflow_port": ports.mlflow, "dask_port": ports.dask}
        base = config.model_dump() if config else {}
        self.config = StackConfig.from_options(**{**base, **{k: v for k, v in given.items() if v is not None}})
        self.state = self.config.state_dir.resolve()
        self.host = str(self.config.host)
        self.meta_file = self.state / "stack.json"
        self.tls = TlsFiles.under(self.state / "tls")

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
        return (
            {
                **DEFAULTS,
                **os.environ,
                **STACK_ENV,
                "PREFECT_HOME": str(self.state / "prefect"),
                "PREFECT_API_URL": f"http://{self.host}:{self.ports.prefect}/api",
                "PREFECT_WORKER_QUERY_SECONDS": str(self.config.worker_query_seconds),
                "MLFLOW_TRACKING_URI": f"http://{self.host}:{self.ports.mlflow}",
            }
            | (self.postgres_env() if self._meta().get("postgres") else {})
            | self._dask_tls_env()
        )

    def client_env(self) -> dict[str, str]:
        """What a shell needs to use the stack (written to env.sh)."""
        env = self.env()
        keys = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "PREFECT_HOME", *DEFAULTS, *STACK_ENV)
        out = {k: env[k] for k in keys}
        if self._meta().get("dask"):
            out["CLAMP_SCHEDULER_ADDRESS"] = self.scheduler_address
        return out | self._dask_tls_env()

    @property
    def exposed(self) -> bool:
        """Whether the services listen beyond this machine (any --host but a loopback address)."""
        return not self.config.host.is_loopback

    @property
    def scheduler_address(self) -> str:
        scheme = "tls" if self._tls_on() else "tcp"
        return f"{scheme}://{self.host}:{self.ports.dask}"

    def _tls_on(self) -> bool:
        """Whether the running (or last) stack's Dask talks TLS: as it was started, from stack.json."""
        meta = self._meta()
        return bool(meta.get("dask") and meta.get("config", {}).get("dask_tls"))

    def _dask_tls_env(self) -> dict[str, str]:
        # every Dask client of the stack (a shell, the Prefect worker's flow runs) needs the certificate
        return self.tls.dask_env() if self._tls_on() else {}

    def _dask_args(self) -> list[str]:
        """Options shared by `dask scheduler` and `dask worker`: where to listen, and TLS when on."""
        args = ["--host", self.host, "--no-dashboard", "--dashboard-address", DASK_HTTP]
        if self._tls_on():
            args += ["--protocol", "tls", *self.tls.dask_args()]
        return args

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

    def _note(self, line: str) -> None:
        """A timed line in logs/stack.log: when each service became healthy or stopped, so a slow
        start or stop shows which service it was."""
        self._log("stack").parent.mkdir(parents=True, exist_ok=True)
        with open(self._log("stack"), "a", encoding="utf-8") as log:
            log.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def _spawn(self, name: str, args: list[str]) -> int:
        self._log(name).parent.mkdir(parents=True, exist_ok=True)
        if not Path(args[0]).is_file():  # checked here: the wrapper would only fail in the child
            raise StackError(f"cannot start {name}: {args[0]} not found")
        with open(self._log(name), "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", DEFAULT_SIGNALS, *args],
                env=self.env(),
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        write_text_atomic(str(proc.pid), self.state / f"{name}.pid")
        return proc.pid

    def _wait(self, name: str, check: Callable[[], bool], timeout: float) -> None:
        start = time.monotonic()
        deadline = start + timeout
        pid = self._pid(name)
        while time.monotonic() < deadline:
            if check():
                self._note(f"{name} healthy after {time.monotonic() - start:.1f} s")
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
            items += [
                ("dask-scheduler", lambda: not _port_free(h, p.dask)),
                ("dask-workers", lambda: self._pid_alive("dask-workers")),
            ]
        if self._meta().get("postgres"):
            items.append(("postgres", self._postgres_ready))
        if self._meta().get("serve"):  # ready, not just up: the model and index are loaded
            items.append(("clamp-serve", lambda: _http_ok(f"http://{h}:{self.config.serve_port}/readyz")))
        return items

    def _pid_alive(self, name: str) -> bool:
        pid = self._pid(name)
        return pid is not None and _alive(pid)

    # --- PostgreSQL: a cluster of its own in <state>/postgres, on host:postgres_port ----------
    @property
    def pg_dir(self) -> Path:
        """data/ (the cluster), run/ (its unix socket, private) and pgpass (the clients' password)."""
        return self.state / "postgres"

    def database_url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        """A client URL for one of PG_DATABASES; no password in it: libpq and asyncpg read PGPASSFILE."""
        return f"{driver}://{PG_ROLE}@{self.host}:{self.config.postgres_port}/{database}"

    def postgres_env(self) -> dict[str, str]:
        """What Prefect's server and MLflow's clients of the cluster need (env() has it with --postgres)."""
        return {
            "PGPASSFILE": str(self.pg_dir / "pgpass"),
            # Prefect 3's name for PREFECT_API_DATABASE_CONNECTION_URL (it wins over the old alias)
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": self.database_url("prefect", "postgresql+asyncpg"),
        }

    def _pg_bin(self, tool: str) -> str:
        bindir = postgres_bin_dir(self.config.postgres_bin)
        if bindir is None:
            raise StackError(
                "PostgreSQL is not installed: run infra/bootstrap.sh (apt-get install postgresql), or set postgres_bin"
            )
        return str(bindir / tool)

    def _as_pg_user(self) -> list[str]:
        """The prefix that runs a server tool as `postgres_user` when we are root (initdb and postgres
        refuse to run as root); none otherwise."""
        if os.geteuid() != 0:
            return []
        if getattr(self, "_pg_prefix", None) is None:
            try:
                user = pwd.getpwnam(self.config.postgres_user)
            except KeyError as exc:
                raise StackError(
                    f"PostgreSQL refuses to run as root and there is no user "
                    f"{self.config.postgres_user!r} to run it as (installing Debian's postgresql "
                    "package creates `postgres`; or set postgres_user)"
                ) from exc
            prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]
            self.pg_dir.mkdir(parents=True, exist_ok=True)
            if subprocess.run([*prefix, "test", "-x", str(self.pg_dir)], stdin=subprocess.DEVNULL).returncode != 0:
                # a folder above the state folder is closed to that user (e.g. pytest's 0700 base temp):
                # let it search folders (read past them), rather than opening them up to everyone
                prefix[-1:] = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--"]
            self._pg_prefix = prefix
        return self._pg_prefix

    def _pg(self, tool: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess:
        return subprocess.run([*self._as_pg_user(), self._pg_bin(tool), *args], cwd=self.pg_dir, **kwargs)

    def _postgres_ready(self) -> bool:
        try:
            # as our role: the server asks it for a password and logs nothing (a role-less check logs a FATAL)
            return (
                subprocess.run(
                    [
                        self._pg_bin("pg_isready"),
                        "-q",
                        "-h",
                        self.host,
                        "-p",
                        str(self.config.postgres_port),
                        "-U",
                        PG_ROLE,
                        "-d",
                        "postgres",
                    ],
                    timeout=10,
                ).returncode
                == 0
            )
        except (StackError, subprocess.TimeoutExpired):
            return False

    def _init_postgres(self, timeout: float) -> None:
        """initdb once (the cluster is kept across `down`/`up`, like the SQLite files); the password
        file is made once too."""
        data, run = self.pg_dir / "data", self.pg_dir / "run"
        owner = pwd.getpwnam(self.config.postgres_user) if self._as_pg_user() else None
        for folder in (data, run):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)  # run/ at 0700 is what makes `trust` on the socket safe
            if owner:
                os.chown(folder, owner.pw_uid, owner.pw_gid)
        if not (data / "PG_VERSION").is_file():
            try:
                made = self._pg(
                    "initdb",
                    "-D",
                    str(data),
                    "-U",
                    PG_SUPERUSER,
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired as exc:
                raise StackError(f"initdb took over {timeout:g} s") from exc
            if made.returncode != 0:
                raise StackError(f"initdb failed: {(made.stderr or made.stdout).strip()[-300:]}")
            # only the socket (its folder is private) and our role by password on the server's own addresses
            hba = data / "pg_hba.conf"
            hba.write_text(f"local all all trust\nhost all {PG_ROLE} samehost scram-sha-256\n")
            if owner:
                os.chown(hba, owner.pw_uid, owner.pw_gid)
        pgpass = self.pg_dir / "pgpass"
        if not pgpass.is_file():  # libpq and asyncpg ignore a password file others can read
            fd = os.open(pgpass, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"*:*:*:{PG_ROLE}:{secrets.token_hex(24)}\n")

    def start_postgres(self, timeout: float | None = None) -> None:
        """initdb if needed, pg_ctl start on host:postgres_port, then the role and the databases.
        `up --postgres` calls it; alone, it gives a Prefect server started by hand a database."""
        timeout = self.config.start_timeout if timeout is None else timeout
        if self.config.postgres_port is None:
            raise StackError("postgres_port is not set")
        self._init_postgres(timeout)
        data, run, port = self.pg_dir / "data", self.pg_dir / "run", self.config.postgres_port
        if len(str(run / f".s.PGSQL.{port}")) > 107:  # the kernel's limit on a socket's path
            raise StackError(f"the state folder's path is too long for PostgreSQL's socket: {self.state}")
        options = f"-c listen_addresses={self.host} -p {port} -k {shlex.quote(str(run))}"  # pg_ctl uses a shell
        self._log("postgres").parent.mkdir(parents=True, exist_ok=True)
        # the server keeps the log as its stderr; a failure or a hang is reported by _wait below
        with open(self._log("postgres"), "ab") as log, contextlib.suppress(subprocess.TimeoutExpired):
            self._pg(
                "pg_ctl",
                "start",
                "-D",
                str(data),
                "-w",
                "-t",
                str(max(1, round(timeout))),
                "-o",
                options,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout + 10,
            )
        pid_file = data / "postmaster.pid"
        if pid_file.is_file():
            write_text_atomic(pid_file.read_text().split("\n", 1)[0], self.state / "postgres.pid")
        self._wait("postgres", self._postgres_ready, timeout)
        password = (self.pg_dir / "pgpass").read_text().strip().rsplit(":", 1)[1]  # hex: safe in a literal
        sql = (
            f"SELECT 'CREATE ROLE {PG_ROLE} LOGIN' WHERE NOT EXISTS "
            f"(SELECT FROM pg_roles WHERE rolname = '{PG_ROLE}')\\gexec\n"
            f"ALTER ROLE {PG_ROLE} PASSWORD '{password}';\n"
        )
        sql += "".join(
            f"SELECT 'CREATE DATABASE {db} OWNER {PG_ROLE}' WHERE NOT EXISTS "
            f"(SELECT FROM pg_database WHERE datname = '{db}')\\gexec\n"
            for db in PG_DATABASES
        )
        # on stdin, so that the password is not on a command line
        made = self._pg(
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(run),
            "-p",
            str(port),
            "-U",
            PG_SUPERUSER,
            "-d",
            "postgres",
            input=sql,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if made.returncode != 0:
            raise StackError(f"could not create the PostgreSQL databases: {made.stderr.strip()[-300:]}")

    def stop_postgres(self, timeout: float | None = None) -> None:
        """pg_ctl stop in fast mode (rolls back open transactions), then immediate, then SIGKILL."""
        timeout = self.config.stop_timeout if timeout is None else timeout
        data = self.pg_dir / "data"
        if (data / "postmaster.pid").is_file():
            for mode in ("fast", "immediate"):
                try:
                    if (
                        self._pg(
                            "pg_ctl",
                            "stop",
                            "-D",
                            str(data),
                            "-m",
                            mode,
                            "-w",
                            "-t",
                            str(max(1, round(timeout))),
                            capture_output=True,
                            stdin=subprocess.DEVNULL,
                            timeout=timeout + 10,
                        ).returncode
                        == 0
                    ):
                        break
                except (subprocess.TimeoutExpired, StackError):
                    continue
        pid = self._pid("postgres")
        if pid is not None:
            deadline = time.monotonic() + timeout  # pg_ctl returns as the server removes its pid file
            while _running(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _running(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            (self.state / "postgres.pid").unlink()

    def up(
        self,
        dask: bool | None = None,
        timeout: float | None = None,
        postgres: bool | None = None,
        serve: bool | None = None,
    ) -> None:
        """Start every service and wait until each is healthy; on any failure stop what started."""
        c = self.config
        dask = c.dask if dask is None else dask
        postgres = c.postgres if postgres is None else postgres
        serve = c.serve if serve is None else serve
        if postgres and c.postgres_port is None:  # a free one, kept in stack.json for status, env and down
            c = self.config = c.model_copy(update={"postgres_port": _free_port(self.host)})
        timeout = c.start_timeout if timeout is None else timeout
        if self._meta().get("running"):
            raise StackError(f"the stack in {self.state} is already up (run `down` first)")
        h, p = self.host, self.ports
        busy = [
            str(x)
            for x in (
                p.prefect,
                p.mlflow,
                *([p.dask] if dask else []),
                *([c.postgres_port] if postgres else []),
                *([c.serve_port] if serve else []),
            )
            if not _port_free(h, x)
        ]
        if busy:
            raise StackError(f"port(s) {', '.join(busy)} already in use on {h}")
        if dask and c.dask_tls and not self.tls.exist():
            make_certs(self.tls.ca.parent, hosts=[h])
        self._save_meta(
            {
                "running": True,
                "dask": dask,
                "postgres": postgres,
                "serve": serve,
                "ports": p._asdict(),
                "config": c.model_copy(update={"dask": dask, "postgres": postgres, "serve": serve}).model_dump(
                    mode="json"
                ),
            }
        )
        (self.state / "mlflow" / "artifacts").mkdir(parents=True, exist_ok=True)
        try:
            if postgres:  # first: the Prefect and MLflow servers migrate their databases as they start
                self.start_postgres(timeout)
            self._spawn("prefect-server", self._prefect_command("prefect-server"))
            self._spawn(
                "mlflow-server",
                [
                    str(BIN / "mlflow"),
                    "server",
                    "--backend-store-uri",
                    self.database_url("mlflow") if postgres else f"sqlite:///{self.state / 'mlflow' / 'mlflow.db'}",
                    "--default-artifact-root",
                    str(self.state / "mlflow" / "artifacts"),
                    "--host",
                    h,
                    "--port",
                    str(p.mlflow),
                    "--workers",
                    "1",
                ],
            )
            if dask:
                self._spawn(
                    "dask-scheduler", [str(BIN / "dask"), "scheduler", "--port", str(p.dask), *self._dask_args()]
                )
            if serve:  # early: it loads (or first embeds) its index while the others start
                self._spawn("clamp-serve", self.serve_command())
            self._wait("prefect-server", self.services()[0][1], timeout)
            try:
                pool = subprocess.run(
                    [str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process", "--overwrite"],
                    env=self.env(),
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired as exc:
                raise StackError(f"creating work pool {POOL} took over {timeout:g} s") from exc
            if pool.returncode != 0:
                raise StackError(f"could not create work pool {POOL}: {pool.stderr.strip()[-300:]}")
            self._spawn("prefect-worker", self._prefect_command("prefect-worker"))
            if dask:
                self._wait("dask-scheduler", lambda: not _port_free(h, p.dask), timeout)
                # --host: the nannies and workers listen there too (their default is every interface)
                self._spawn(
                    "dask-workers",
                    [
                        str(BIN / "dask"),
                        "worker",
                        self.scheduler_address,
                        "--nworkers",
                        str(c.dask_workers),
                        "--nthreads",
                        str(c.dask_threads),
                        *self._dask_args(),
                    ],
                )
            self._wait("mlflow-server", self.services()[1][1], timeout)
            if serve:
                self._wait("clamp-serve", dict(self.services())["clamp-serve"], c.serve_start_timeout)
        except BaseException:  # Ctrl-C included: leave nothing running
            self.down()
            raise
        write_text_atomic(self.env_script(), self.state / "env.sh")

    def serve_command(self) -> list[str]:
        """`clamp serve` on the stack's host, with the model and dataset of the config."""
        c = self.config
        return [
            str(BIN / "clamp"),
            "serve",
            "--model",
            str(c.serve_model.resolve()),
            "--index",
            str(c.serve_index.resolve()),
            "--host",
            self.host,
            "--port",
            str(c.serve_port),
        ]

    def restart(self, name: str, timeout: float | None = None) -> float:
        """Start the Prefect server or worker again after it died or was killed, as `up` did;
        the server is waited on until healthy. Returns the seconds it took."""
        if name not in ("prefect-server", "prefect-worker"):
            raise StackError(f"cannot restart {name}: only prefect-server or prefect-worker")
        if self._pid_alive(name):
            raise StackError(f"{name} is still running")
        start = time.monotonic()
        self._spawn(name, self._prefect_command(name))
        if name == "prefect-server":
            self._wait(name, self.services()[0][1], self.config.start_timeout if timeout is None else timeout)
        return time.monotonic() - start

    def _prefect_command(self, name: str) -> list[str]:
        """How `up` and `restart` start the Prefect server and the worker."""
        if name == "prefect-server":
            return [str(BIN / "prefect"), "server", "start", "--host", self.host, "--port", str(self.ports.prefect)]
        return [str(BIN / "prefect"), "worker", "start", "--pool", POOL]

    def status(self) -> dict[str, bool]:
        return {name: bool(check()) for name, check in self.services()} if self._meta().get("running") else {}

    def down(self, timeout: float | None = None) -> None:
        """Stop in reverse order: the worker (SIGINT; it ignores SIGTERM), then the servers."""
        timeout = self.config.stop_timeout if timeout is None else timeout
        order = ["clamp-serve", "dask-workers", "prefect-worker", "dask-scheduler", "mlflow-server", "prefect-server"]
        for name in order:
            pid = self._pid(name)
            if pid is None:
                continue
            sig = signal.SIGINT if name == "prefect-worker" else signal.SIGTERM
            with contextlib.suppress(OSError):
                os.killpg(pid, sig)  # its own session: children (uvicorn, nannies) go too
            started = time.monotonic()
            how = "stopped"
            while _alive(pid) and time.monotonic() < started + timeout:
                time.sleep(0.2)
            if _alive(pid):
                how = "killed (SIGKILL)"
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
            self._note(f"{name} {how} after {time.monotonic() - started:.1f} s")
            (self.state / f"{name}.pid").unlink()
        self.stop_postgres(timeout)  # last: after its clients
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
    dask_tls: Annotated[bool, typer.Option("--dask-tls", help=_help("dask_tls") + "; implies --dask")] = False,
    host: Annotated[str | None, typer.Option(help=_help("host"), show_default=False)] = None,
    prefect_port: PrefectPort = None,
    mlflow_port: MlflowPort = None,
    dask_port: DaskPort = None,
    timeout: Annotated[float | None, typer.Option(help=_help("start_timeout"), show_default=False)] = None,
    postgres: Annotated[bool, typer.Option("--postgres", help=_help("postgres"))] = False,
    postgres_port: Annotated[int | None, typer.Option(help=_help("postgres_port"), show_default=False)] = None,
    serve: Annotated[bool, typer.Option("--serve", help=_help("serve"))] = False,
    serve_port: Annotated[int | None, typer.Option(help=_help("serve_port"), show_default=False)] = None,
    serve_model: Annotated[Path | None, typer.Option(help=_help("serve_model"), show_default=False)] = None,
    serve_index: Annotated[Path | None, typer.Option(help=_help("serve_index"), show_default=False)] = None,
) -> None:
    """Start the services and write env.sh; exit 2 when one cannot start."""
    stack = Stack(
        config=StackConfig.from_options(
            state_dir=state_dir,
            host=host,
            dask=dask or dask_tls or None,
            dask_tls=dask_tls or None,
            dask_workers=dask_workers,
            prefect_port=prefect_port,
            mlflow_port=mlflow_port,
            dask_port=dask_port,
            start_timeout=timeout,
            postgres=postgres or None,
            postgres_port=postgres_port,
            serve=serve or None,
            serve_port=serve_port,
            serve_model=serve_model,
            serve_index=serve_index,
        )
    )
    if stack.exposed:  # only an explicit --host gets here; say what that opens
        typer.echo(
            f"warning: the services listen on {stack.host} and are reachable from the network; "
            "nothing asks for a password, and Dask runs any code sent to it "
            "(see docs/services.md, Network exposure and TLS)",
            err=True,
        )
    stack.up()
    h, p = stack.host, stack.ports
    typer.echo(
        f"stack up: Prefect UI http://{h}:{p.prefect}, MLflow UI http://{h}:{p.mlflow}"
        + (f", Dask scheduler {stack.scheduler_address}" if stack.config.dask else "")
    )
    if stack.config.postgres:
        typer.echo(f"PostgreSQL on {h}:{stack.config.postgres_port}: databases {', '.join(PG_DATABASES)}")
    if stack.config.serve:
        typer.echo(f"clamp serve: http://{h}:{stack.config.serve_port} (API docs at /docs)")
    typer.echo(f"use it from a shell:  source {stack.state / 'env.sh'}")


@app.command()
def status(
    state_dir: StateDir = None,
    prefect_port: PrefectPort = None,
    mlflow_port: MlflowPort = None,
    dask_port: DaskPort = None,
) -> None:
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
def env(
    state_dir: StateDir = None,
    prefect_port: PrefectPort = None,
    mlflow_port: MlflowPort = None,
    dask_port: DaskPort = None,
) -> None:
    """Print the `export` lines of env.sh."""
    stack = Stack.open(state_dir, prefect_port=prefect_port, mlflow_port=mlflow_port, dask_port=dask_port)
    typer.echo(stack.env_script(), nl=False)


@app.command()
def certs(
    state_dir: StateDir = None,
    host: Annotated[
        list[str] | None,
        typer.Option(
            help="another address or name for the certificate (repeat it); 127.0.0.1, localhost and the "
            "stack's host are always in",
            show_default=False,
        ),
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="validity in days")] = 365,
    force: Annotated[bool, typer.Option("--force", help="replace existing certificates")] = False,
) -> None:
    """Make a CA and a certificate/key for Dask over TLS (`up --dask-tls`) in <state-dir>/tls."""
    stack = Stack.open(state_dir)
    if stack.tls.exist() and not force:
        raise StackError(
            f"certificates exist in {stack.tls.ca.parent} (--force replaces them; "
            "a running stack keeps the old ones until `down` and `up`)"
        )
    files = make_certs(stack.tls.ca.parent, hosts=[stack.host, *(host or [])], days=days)
    typer.echo(f"CA {files.ca}\ncertificate {files.cert}\nkey {files.key} (owner-only)")
    typer.echo("copy all three to each machine that runs Dask workers or clients; keep the key private")


def main() -> None:
    apply_defaults()
    app(prog_name="python -m infra.stack")


if __name__ == "__main__":
    main()
