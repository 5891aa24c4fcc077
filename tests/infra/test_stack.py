"""The local stack: real Prefect server + worker, MLflow server and Dask on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import urllib.request

import pytest

from infra.stack import Ports, Stack, StackError, _alive
from tests.conftest import free_port


@pytest.mark.slow
def test_stack_up_status_down(tmp_path):
    stack = Stack(tmp_path / "stack", Ports(free_port(), free_port(), free_port()))
    # as a shell's background job (`... &`) starts it: with SIGINT ignored, which children inherit
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        stack.up(dask=True)
    finally:
        signal.signal(signal.SIGINT, ignored)
    try:
        assert stack.status() == {
            "prefect-server": True,
            "mlflow-server": True,
            "prefect-worker": True,
            "dask-scheduler": True,
            "dask-workers": True,
        }
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
    # logs/stack.log: each service's start and stop, in the order up waits and down stops
    notes = [line.split(" ", 1)[1] for line in (tmp_path / "stack" / "logs" / "stack.log").read_text().splitlines()]
    events = [" ".join(note.split()[:2]) for note in notes]
    assert events == [
        "prefect-server healthy",
        "dask-scheduler healthy",
        "mlflow-server healthy",
        "dask-workers stopped",
        "prefect-worker stopped",  # on SIGINT, not killed after the stop timeout
        "dask-scheduler stopped",
        "mlflow-server stopped",
        "prefect-server stopped",
    ], notes


def test_busy_port_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        stack = Stack(tmp_path / "s", Ports(busy, free_port(), free_port()))
        with pytest.raises(StackError, match=f"port\\(s\\) {busy} already in use"):
            stack.up()


# --- fast unit tests: settings, environment and command line (no services) ------------------
def _busy_socket():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prefect_port", 70000),
        ("mlflow_port", 0),
        ("dask_port", "x"),
        ("dask_workers", 0),
        ("start_timeout", -1),
        ("bogus", 1),
    ],
)
def test_bad_config_value_names_the_field(field, value):
    from pydantic import ValidationError

    from clamp.errors import ConfigError, error_line
    from infra.stack import StackConfig

    with pytest.raises(ValidationError) as raised:
        StackConfig(**{field: value})
    assert field in error_line(raised.value)
    with pytest.raises(ConfigError, match=field) as raised:
        StackConfig.from_options(**{field: value})
    assert "\n" not in str(raised.value)


def test_bad_port_given_to_stack_is_a_config_error(tmp_path):
    from clamp.errors import ConfigError

    with pytest.raises(ConfigError, match="prefect_port"):
        Stack(tmp_path, Ports(70000, free_port(), free_port()))
    with pytest.raises(ConfigError, match="must differ"):
        Stack(tmp_path, Ports(4300, 4300, 4301))


def test_options_left_out_keep_the_config_defaults(tmp_path):
    from infra.stack import StackConfig

    assert StackConfig.from_options(prefect_port=None, state_dir=None) == StackConfig()
    default = StackConfig()
    stack = Stack(tmp_path, Ports(4300, default.mlflow_port, default.dask_port))
    assert stack.ports == Ports(4300, default.mlflow_port, default.dask_port)
    assert stack.config.start_timeout == default.start_timeout
    assert stack.state == tmp_path.resolve()


def test_service_environment(tmp_path, monkeypatch):
    from clamp.environment import DEFAULTS

    monkeypatch.setenv("DASK_LOGGING__DISTRIBUTED", "info")  # a value the user set is kept
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere/api")  # ... but not the stack's own
    stack = Stack(tmp_path / "a b", Ports(4301, 4302, 4303))
    env = stack.env()
    assert {k: env[k] for k in DEFAULTS if k != "DASK_LOGGING__DISTRIBUTED"} == {
        k: v for k, v in DEFAULTS.items() if k != "DASK_LOGGING__DISTRIBUTED"
    }
    assert env["DASK_LOGGING__DISTRIBUTED"] == "info"
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4301/api"
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:4302"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    script = stack.env_script()
    assert f"export PREFECT_HOME='{tmp_path / 'a b' / 'prefect'}'\n" in script  # quoted for the shell
    assert "CLAMP_SCHEDULER_ADDRESS" not in script


def test_status_and_env_use_the_ports_the_stack_was_started_with(tmp_path):
    from typer.testing import CliRunner

    from infra.stack import app

    stack = Stack(tmp_path, Ports(4311, 4312, 4313))
    stack._save_meta({"running": False, "dask": True, "config": stack.config.model_dump(mode="json")})
    result = CliRunner().invoke(app, ["env", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "PREFECT_API_URL=http://127.0.0.1:4311/api\n" in result.stdout
    assert "CLAMP_SCHEDULER_ADDRESS=tcp://127.0.0.1:4313\n" in result.stdout
    result = CliRunner().invoke(app, ["env", "--state-dir", str(tmp_path), "--prefect-port", "4321"])
    assert "PREFECT_API_URL=http://127.0.0.1:4321/api\n" in result.stdout


@pytest.mark.parametrize("args", [[], ["up"], ["status"], ["down"], ["env"], ["certs"]])
def test_every_command_has_help(args):
    from typer.testing import CliRunner

    from infra.stack import app

    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout


def test_module_help_runs():
    import subprocess
    import sys

    from infra.stack import REPO

    result = subprocess.run(
        [sys.executable, "-m", "infra.stack", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for command in ("up", "status", "down", "--debug"):
        assert command in result.stdout


def test_status_of_a_stopped_stack(tmp_path):
    from typer.testing import CliRunner

    from infra.stack import app

    result = CliRunner().invoke(app, ["status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stdout == "stack is down\n"


def test_user_error_is_one_line_and_exit_2(tmp_path):
    from typer.testing import CliRunner

    from infra.stack import app

    with _busy_socket() as s:
        busy = s.getsockname()[1]
        result = CliRunner().invoke(app, ["up", "--state-dir", str(tmp_path), "--prefect-port", str(busy)])
    assert result.exit_code == 2
    assert result.stderr == f"error: port(s) {busy} already in use on 127.0.0.1\n"
    assert result.stdout == ""
    assert not list(tmp_path.glob("*.pid"))


@pytest.mark.parametrize("args", [["--prefect-port", "70000"], ["--dask-workers", "0"], ["--timeout", "0"]])
def test_bad_option_is_one_line_naming_the_field(tmp_path, args):
    from typer.testing import CliRunner

    from infra.stack import app

    result = CliRunner().invoke(app, ["up", "--state-dir", str(tmp_path), *args])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid StackConfig setting ")
    field = {"--prefect-port": "prefect_port", "--dask-workers": "dask_workers", "--timeout": "start_timeout"}[args[0]]
    assert field in lines[0]


def test_debug_shows_the_user_error(tmp_path):
    from typer.testing import CliRunner

    from infra.stack import app

    with _busy_socket() as s:
        result = CliRunner().invoke(
            app, ["--debug", "up", "--state-dir", str(tmp_path), "--mlflow-port", str(s.getsockname()[1])]
        )
    assert isinstance(result.exception, StackError)
    assert result.exit_code != 2


def test_internal_error_is_not_a_user_error(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from infra.stack import app

    def broken(self):
        raise KeyError("bug")

    monkeypatch.setattr(Stack, "status", broken)
    result = CliRunner().invoke(app, ["status", "--state-dir", str(tmp_path)])
    assert isinstance(result.exception, KeyError)
    assert "error:" not in result.stderr
