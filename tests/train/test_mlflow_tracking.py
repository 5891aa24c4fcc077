"""A real MLflow store (SQLite + artifact folder in a temp dir) receives a full training run."""

from __future__ import annotations

import json

import pytest

from clamp.train.config import TrainConfig
from clamp.train.run import train


@pytest.fixture()
def mlflow_env(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "mlflow"


def test_training_run_is_logged_with_lineage_and_registered(tiny_dataset, tmp_path, mlflow_env):
    import mlflow
    from mlflow import MlflowClient

    cfg = TrainConfig(
        objective="clamp",
        dataset_dir=str(tiny_dataset),
        output_dir=str(tmp_path / "run"),
        preset="tiny",
        steps=6,
        batch_size=4,
        log_every=2,
        checkpoint_every=0,
        projection_dim=16,
        tracking_dir=str(mlflow_env),
        experiment="test-clamp",
        register_as="clamp-tiny-test",
    )
    result = train(cfg)
    assert result["model_dir"] and result["steps"] == 6
    mlflow.set_tracking_uri(f"sqlite:///{mlflow_env / 'mlflow.db'}")
    client = MlflowClient()
    run = client.get_run(result["run_id"])
    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    assert run.data.tags["dataset_fingerprint"] == manifest["fingerprint"]
    assert run.data.tags["objective"] == "clamp" and run.data.tags["git_commit"]
    assert run.data.params["train.preset"] == "tiny" and run.data.params["music.hidden_size"] == "32"
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in losses] == [2, 4, 6]
    assert {"lr", "temperature", "samples_per_s", "patches_per_s"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/config.json", "model/model.safetensors"} <= artifacts
    versions = client.search_model_versions("name='clamp-tiny-test'")
    assert [v.run_id for v in versions] == [run.info.run_id]
    # the experiment opens on its runs in MLflow 3's UI, not on the GenAI overview
    assert client.get_experiment_by_name("test-clamp").tags["mlflow.experimentKind"] == "custom_model_development"
    assert "engine.py" not in run.data.tags["mlflow.source.name"]
    # the dataset is an MLflow dataset input (the UI's Dataset column and filter), not only a tag
    [given] = run.inputs.dataset_inputs
    assert (given.dataset.name, given.dataset.digest) == (manifest["name"], manifest["fingerprint"])
    assert json.loads(given.dataset.source) == {"uri": str(tiny_dataset.resolve())}
    assert [(t.key, t.value) for t in given.tags] == [("mlflow.data.context", "training")]
    found = client.search_runs([run.info.experiment_id], f"dataset.digest = '{manifest['fingerprint']}'")
    assert [r.info.run_id for r in found] == [run.info.run_id]
    # what the main job prints: the runs view of the experiment, not the UI's front page
    from clamp.tracking import runs_url

    assert (
        runs_url("test-clamp", f"sqlite:///{mlflow_env / 'mlflow.db'}")
        == f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs"
    )


def test_a_flow_records_itself_as_the_entry_point():
    import clamp.tracking as tracking

    try:
        tracking.set_entry_point("flows.train:pretrain_mmm")
        assert tracking.entry_point() == "flows.train:pretrain_mmm"
    finally:
        tracking.set_entry_point("")
    assert tracking.entry_point()  # the program and its sub-command


def test_char_ablation_and_no_text_dropout_train(tiny_dataset, tmp_path):
    cfg = TrainConfig(
        objective="clamp",
        dataset_dir=str(tiny_dataset),
        output_dir=str(tmp_path / "char"),
        preset="tiny",
        input_kind="char",
        text_dropout=False,
        steps=3,
        batch_size=4,
        checkpoint_every=0,
        projection_dim=16,
        mlflow=False,
    )
    result = train(cfg)
    assert result["steps"] == 3
    from clamp.model.clamp_model import ClampModel

    model = ClampModel.from_pretrained(result["model_dir"])
    assert model.config.music.input_kind == "char"
