"""Shared test set-up: every service and tool stays offline and inside temp dirs."""

from __future__ import annotations

import atexit
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from clamp.environment import apply_defaults

REPO = Path(__file__).resolve().parents[1]

apply_defaults()

# Flows that tests run in-process start a temporary Prefect server whose SQLite database lives in
# PREFECT_HOME: each test session (each pytest-xdist worker with `-n`) gets its own, so two
# sessions never share a database, and none touches the user's ~/.prefect or a running stack.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(
    prefix=f"clamp-tests-prefect-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-"
)
os.environ.pop("PREFECT_API_URL", None)
# Every Prefect server a test starts (in-process or the stack's) inherits this environment. The
# `nightly` deployment carries a 03:00 UTC cron: with the scheduler on, a suite that spans 03:00 had
# the test's worker run the real retrain flow in the repository, rebuilding data/datasets/ there.
os.environ["PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED"] = "false"
atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)

# The modules that start whole stacks or servers. With two workers they form one unit of work
# and run one after another on one worker, while the other worker takes the rest: two stacks side
# by side on 2 cores slowed each other up to threefold (the PostgreSQL test: 194 s, 68 s alone).
SERVER_MODULES = {
    "tests/infra/test_stack.py",
    "tests/infra/test_stack_deployments.py",
    "tests/infra/test_stack_postgres.py",
    "tests/infra/test_interrupted_builds.py",
    "tests/infra/test_dask_tls.py",
    "tests/serve/test_stack_serve.py",
}


def _work_unit(nodeid: str) -> str:
    """A test's unit of work with `--dist loadscope` (pyproject.toml): its module, as loadscope
    does, so module-scoped fixtures are made once; or "servers" for SERVER_MODULES."""
    module = nodeid.split("::")[0]
    return "servers" if module in SERVER_MODULES else module


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    # pytest-xdist's own grouping (`--dist loadgroup`, `xdist_group` marks) does nothing on
    # pytest 9.2: it rewrites `item._nodeid`, which the node id no longer reads
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ServersTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid)

    return ServersTogether(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # units are handed out in collection order: the servers unit, the longest, goes first
    items.sort(key=lambda item: _work_unit(item.nodeid) != "servers")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def benchmarks_dir():
    from clamp.config import default_benchmarks_dir

    path = default_benchmarks_dir()
    if path is None or not path.is_dir():
        pytest.skip("benchmarks directory not found (set CLAMP_BENCHMARKS_DIR)")
    return path


RHYTHMS = {"jig": ("6/8", "dAF DFA"), "reel": ("4/4", "GABc dBGB"), "waltz": ("3/4", "C2 E2 G2")}
NOTES = "CDEFGABcdefg"


@pytest.fixture(scope="session")
def wikimt() -> list[dict]:
    """WikiMT's records (skips when the benchmark is not installed)."""
    import json

    from clamp.data.benchmarks import default_benchmarks_dir

    root = default_benchmarks_dir()
    path = root / "wikimt" / "wikimusictext.json" if root else None
    if path is None or not path.is_file():
        pytest.skip(f"WikiMT benchmark not found (CLAMP_BENCHMARKS_DIR / ../shared/benchmarks): {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def one_line_error(result) -> str:
    """A CLI user error (typer CliRunner result): exit 2, exactly one `error: ...` line, no traceback."""
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def write_tunes(root: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rhythm = list(RHYTHMS)[i % 3]
        meter, motif = RHYTHMS[rhythm]
        bars = ["".join(rng.choice(NOTES) for _ in range(6)) for _ in range(8 + i % 5)]
        body = "|" + "|".join([motif.replace(" ", "")] + bars) + "|"
        (root / f"tune{i:03d}.abc").write_text(
            f"X:1\nT:Tune number {i}\nR:{rhythm}\nM:{meter}\nL:1/8\nK:G\n{body}\n", encoding="utf-8"
        )


def build_tunes_dataset(root: Path, n: int, name: str, **fields):
    """`n` generated tunes (`write_tunes`) built in-process into `root/name`; returns the summary."""
    from clamp.config import BuildConfig, SourceSpec
    from clamp.data.build import build_dataset

    write_tunes(root / "src", n)
    cfg = BuildConfig(
        **{
            "name": name,
            "output_dir": root,
            "cache_dir": root / "cache",
            "sources": [SourceSpec(kind="local", path=str(root / "src"))],
            "decontaminate": False,
            "data_docs": False,
            "valid_fraction": 0.0,
            "test_fraction": 0.0,
            "midi_views": False,  # the tests that need views ask for them
            **fields,
        }
    )
    return build_dataset(cfg)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    summary = build_tunes_dataset(tmp_path_factory.mktemp("train-data"), 72, "tiny", shard_size=32)
    assert summary.rows_written == 72
    return Path(summary.dataset_dir)


@pytest.fixture(scope="session")
def tiny_model(tiny_dataset, tmp_path_factory) -> Path:
    """A tiny CLaMP model trained for a few steps on the tiny dataset (real text tokenizer)."""
    from clamp.train.config import TrainConfig
    from clamp.train.run import train

    out = tmp_path_factory.mktemp("tiny-model")
    result = train(
        TrainConfig(
            objective="clamp",
            dataset_dir=str(tiny_dataset),
            output_dir=str(out),
            preset="tiny",
            steps=4,
            batch_size=8,
            checkpoint_every=0,
            projection_dim=16,
            mlflow=False,
        )
    )
    return Path(result["model_dir"])


@pytest.fixture(scope="session")
def postgres_ready() -> None:
    """Skips, saying why, where the stack cannot run PostgreSQL (`infra.stack up --postgres`)."""
    import os
    import pwd

    from infra.stack import StackConfig, postgres_bin_dir

    if postgres_bin_dir() is None:
        pytest.skip(
            "PostgreSQL is not installed (infra/bootstrap.sh installs Debian's postgresql package "
            "with apt-get, where it can)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(StackConfig().postgres_user)
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run PostgreSQL as")


def query_postgres(stack, database: str, sql: str) -> list[tuple]:
    """Rows of `sql` in one of the databases of a stack started with PostgreSQL."""
    import psycopg

    # the URL has no password: libpq reads it from the stack's password file
    with psycopg.connect(stack.database_url(database, "postgresql"), passfile=str(stack.pg_dir / "pgpass")) as conn:
        return conn.execute(sql).fetchall()


def flow_run_id(cli_output: str) -> str:
    """The flow run that `prefect deployment run` created, from the URL it prints."""
    return re.search(r"flow-run/([0-9a-f-]{36})", cli_output).group(1)


def flow_run_state(api: str, run_id: str) -> str:
    """The run's state type, read from the API (no CLI start per poll)."""
    with urllib.request.urlopen(f"{api}/flow_runs/{run_id}", timeout=10) as answer:
        return json.loads(answer.read())["state_type"]


def is_terminal(state_type: str) -> bool:
    from prefect.client.schemas.objects import TERMINAL_STATES

    return state_type in {s.value for s in TERMINAL_STATES}


class StackDeployments:
    """The deployments of prefect.yaml on a running stack, driven as a user drives them:
    `prefect deploy --all`, then `prefect deployment run`; states are read from the API."""

    def __init__(self, stack) -> None:
        self.env = stack.env()
        self.api = self.env["PREFECT_API_URL"]
        self.worker_log = stack.state / "logs" / "prefect-worker.log"

    def prefect(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        prefect = str(Path(sys.executable).parent / "prefect")
        return subprocess.run([prefect, *args], env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout)

    def deploy_all(self) -> None:
        deployed = self.prefect("--no-prompt", "deploy", "--all")
        assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]

    def start(self, deployment: str, params: dict) -> tuple[str, str]:
        """`prefect deployment run`; the run goes on while the next one starts."""
        r = self.prefect("deployment", "run", deployment, "--params", json.dumps(params))
        assert r.returncode == 0, f"{deployment}: {r.stdout[-1500:]}{r.stderr[-1500:]}"
        return deployment, flow_run_id(r.stdout)

    def wait(self, *runs: tuple[str, str], timeout: float = 500) -> None:
        """Each run ends COMPLETED (the worker's log tail says why when one does not)."""
        deadline, pending = time.monotonic() + timeout, dict(runs)
        while pending:
            for deployment, run_id in list(pending.items()):
                state = flow_run_state(self.api, run_id)
                if is_terminal(state):
                    log = self.worker_log.read_text(errors="replace")[-2500:]
                    assert state == "COMPLETED", f"{deployment} ended {state}: {log}"
                    del pending[deployment]
            assert time.monotonic() < deadline, f"still running after {timeout:g} s: {sorted(pending)}"
            time.sleep(1)
