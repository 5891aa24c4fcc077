"""The stack with `--postgres`: a PostgreSQL cluster of its own under the state folder holds the
Prefect server's and the MLflow server's data. The slow test starts the real services, runs a
build and the nightly retrain on them, and starts them again on the same data; the rest check
settings and environment without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.stack import PG_DATABASES, Ports, Stack, StackConfig, StackError, _running, postgres_bin_dir
from tests.conftest import StackDeployments, free_port, query_postgres
from tests.infra.test_stack_deployments import (
    airs_build,
    check_airs_dataset,
    dask_task_prefixes,
    nightly_retrain,
    run_names,
)


@pytest.mark.slow
def test_stack_with_postgres_runs_the_build_and_retrain_and_keeps_its_data(tmp_path, postgres_ready, benchmarks_dir):
    stack = Stack(tmp_path / "stack", Ports(free_port(), free_port(), free_port()))
    stack.up(dask=True, postgres=True)
    try:
        assert stack.status() == {
            "prefect-server": True,
            "mlflow-server": True,
            "prefect-worker": True,
            "dask-scheduler": True,
            "dask-workers": True,
            "postgres": True,
        }
        port = stack.config.postgres_port
        assert port is not None and Stack.open(tmp_path / "stack").config.postgres_port == port
        # Prefect's server keeps its data in PostgreSQL, not in a SQLite file under PREFECT_HOME
        assert query_postgres(stack, "prefect", "SELECT name FROM work_pool") == [("clamp-process",)]
        assert not list((tmp_path / "stack" / "prefect").glob("*.db"))
        from mlflow import MlflowClient

        MlflowClient(stack.env()["MLFLOW_TRACKING_URI"]).create_experiment("kept-across-restarts")
        assert ("kept-across-restarts",) in query_postgres(stack, "mlflow", "SELECT name FROM experiments")
        assert not (tmp_path / "stack" / "mlflow" / "mlflow.db").exists()
        # no secret in what a shell sources; the password file is private
        assert "pgpass" not in (tmp_path / "stack" / "env.sh").read_text()
        assert (stack.pg_dir / "pgpass").stat().st_mode & 0o077 == 0
        pid = int((tmp_path / "stack" / "postgres.pid").read_text())
        assert _running(pid)

        # The deployments that write every kind of row, run as on SQLite (test_stack_deployments.py):
        # a build on the stack's Dask (flow and task runs, artifacts) and the nightly retrain (MLflow
        # runs, metrics, the registry and its alias). The others only repeat these writes.
        runs = StackDeployments(stack)
        runs.deploy_all()
        build, out = airs_build(tmp_path), tmp_path / "out"
        on_dask = {"scheduler_address": stack.scheduler_address}
        runs.wait(
            runs.start("build-dataset/music21-corpus", {"name": "stack", "overrides": build, **on_dask}),
            runs.start("retrain/nightly", nightly_retrain(build, out)),
        )
        check_airs_dataset(Path(build["output_dir"]) / "stack")
        prefixes = dask_task_prefixes(stack)
        assert any("prepare" in p for p in prefixes) and any("write" in p for p in prefixes), prefixes
        names = run_names(stack)
        assert {n.split("-")[0] for n in names if n.startswith(("retrain-", "decision-"))} == {"retrain", "decision"}
        # ... and all of it is in PostgreSQL
        done = query_postgres(stack, "prefect", "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'")
        assert done[0][0] >= 2, done
        assert query_postgres(stack, "mlflow", "SELECT count(*) FROM runs")[0][0] >= len(names)
        aliases = query_postgres(stack, "mlflow", "SELECT name, alias, version FROM registered_model_aliases")
        assert aliases == [("clamp-stack", "champion", 1)], aliases
    finally:
        stack.down()
    assert not _running(pid)
    assert stack.status() == {}
    assert not list((tmp_path / "stack").glob("*.pid"))
    assert "received fast shutdown request" in (tmp_path / "stack" / "logs" / "postgres.log").read_text()

    # up again: the same cluster, with its data, on a new free port
    again = Stack(tmp_path / "stack", Ports(free_port(), free_port(), free_port()))
    again.up(postgres=True)
    try:
        assert again.status()["postgres"]
        from mlflow import MlflowClient

        client = MlflowClient(again.env()["MLFLOW_TRACKING_URI"])
        assert client.get_experiment_by_name("kept-across-restarts") is not None
        assert str(client.get_model_version_by_alias("clamp-stack", "champion").version) == "1"
    finally:
        again.down()


# --- fast: settings and environment (nothing is started) -------------------------------------
def test_postgres_port_must_differ_from_the_others():
    from clamp.errors import ConfigError

    with pytest.raises(ConfigError, match="postgres_port"):
        StackConfig.from_options(postgres_port=StackConfig().mlflow_port)
    with pytest.raises(ConfigError, match="postgres_port"):
        StackConfig.from_options(postgres_port=70000)


def test_postgres_environment_has_urls_without_passwords(tmp_path):
    stack = Stack(tmp_path, Ports(4331, 4332, 4333), config=StackConfig(postgres_port=4334))
    assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in stack.env()  # not started with --postgres
    stack._save_meta({"running": False, "postgres": True, "config": stack.config.model_dump(mode="json")})
    env = stack.env()
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == "postgresql+asyncpg://clamp@127.0.0.1:4334/prefect"
    assert env["PGPASSFILE"] == str(tmp_path.resolve() / "postgres" / "pgpass")
    assert stack.database_url("mlflow") == "postgresql+psycopg://clamp@127.0.0.1:4334/mlflow"
    script = stack.env_script()  # a shell talks to the servers, never to the database
    assert "PGPASSFILE" not in script and "postgresql" not in script
    assert PG_DATABASES == ("prefect", "mlflow")


def test_postgres_bin_dir(tmp_path):
    assert postgres_bin_dir(tmp_path) is None
    (tmp_path / "pg_ctl").touch()
    assert postgres_bin_dir(tmp_path) == tmp_path


def test_up_without_postgres_installed_is_a_clear_error_and_starts_nothing(tmp_path):
    stack = Stack(
        tmp_path / "s",
        Ports(free_port(), free_port(), free_port()),
        config=StackConfig(postgres_bin=tmp_path / "nowhere"),
    )
    with pytest.raises(StackError, match="PostgreSQL is not installed"):
        stack.up(postgres=True)
    assert not list((tmp_path / "s").glob("*.pid"))
    assert stack.status() == {}


def test_up_refuses_a_busy_postgres_port(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        stack = Stack(
            tmp_path / "s", Ports(free_port(), free_port(), free_port()), config=StackConfig(postgres_port=busy)
        )
        with pytest.raises(StackError, match=f"port\\(s\\) {busy} already in use"):
            stack.up(postgres=True)


def test_cli_passes_postgres_options(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from infra.stack import app

    seen = {}
    monkeypatch.setattr(Stack, "up", lambda self: seen.update(config=self.config))
    result = CliRunner().invoke(app, ["up", "--state-dir", str(tmp_path), "--postgres", "--postgres-port", "4339"])
    assert result.exit_code == 0, result.output
    assert seen["config"].postgres and seen["config"].postgres_port == 4339
    assert "PostgreSQL on 127.0.0.1:4339" in result.stdout
