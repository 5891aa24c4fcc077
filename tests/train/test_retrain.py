"""Champion/challenger retraining on a real MLflow registry (SQLite store in a temp dir)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from clamp.config import BuildConfig, SourceSpec
from clamp.data.build import build_dataset
from clamp.workflows.retrain import RetrainConfig, apply_decision, champion, retrain, should_promote
from tests.conftest import write_tunes

TRAIN = {"preset": "tiny", "steps": 3, "batch_size": 8, "projection_dim": 16, "checkpoint_every": 0}


@pytest.fixture()
def registry(tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("clamp-retrain", artifact_location=(tmp_path / "artifacts").as_uri())
    return MlflowClient(uri)


def test_should_promote_only_when_strictly_better():
    assert should_promote(None, 0.1)
    assert should_promote(0.5, 0.6)
    assert not should_promote(0.5, 0.5)
    assert not should_promote(0.5, 0.4)


def test_worse_challenger_keeps_the_alias_and_better_one_takes_it(registry):
    client = registry
    client.create_registered_model("m")
    v1 = client.create_model_version("m", source="file:///tmp/a").version
    v2 = client.create_model_version("m", source="file:///tmp/b").version
    v3 = client.create_model_version("m", source="file:///tmp/c").version
    assert apply_decision(client, "m", v1, None, 0.3)
    assert not apply_decision(client, "m", v2, 0.3, 0.2)  # worse
    assert not apply_decision(client, "m", v2, 0.3, 0.3)  # tie
    assert str(champion(client, "m").version) == str(v1)
    assert apply_decision(client, "m", v3, 0.3, 0.4)  # better
    assert str(champion(client, "m").version) == str(v3)


# three recipes whose order on the valid split is known: barely trained (valid tune-type accuracy
# 0.25 on the first build), trained (0.83), and wrecked by a huge learning rate (0.33), measured
# with these seeds; the rounds below check the decision against the metrics each round logs
WEAK = {**TRAIN, "steps": 1, "lr": 1e-6}
STRONG = {**TRAIN, "steps": 150, "lr": 2e-3, "batch_size": 16}
WRECKED = {**TRAIN, "steps": 10, "lr": 5.0}
METRIC = "valid-tune_type/zero_shot/accuracy"


@pytest.mark.slow
def test_retrain_rounds_bootstrap_nothing_changed_promoted_and_kept(tmp_path, registry, benchmarks_dir):
    src = tmp_path / "src"
    write_tunes(src, 60)
    cfg = BuildConfig(
        name="d",
        output_dir=tmp_path / "ds",
        cache_dir=tmp_path / "cache",
        sources=[SourceSpec(kind="local", path=str(src))],
        shard_size=16,
        decontaminate=False,
        data_docs=False,
        valid_fraction=0.3,
        test_fraction=0.0,
    )
    build_dataset(cfg)
    rcfg = RetrainConfig(
        dataset_dir=str(cfg.dataset_dir),
        model_name="clamp-test",
        out_dir=str(tmp_path / "retrain"),
        train=WEAK,
        benchmarks=["wikimt"],
        metric=METRIC,
        max_items=30,
    )

    first = retrain(rcfg)
    assert first.action == "bootstrap" and first.challenger_version == "1"
    assert str(champion(registry, "clamp-test").version) == "1"

    again = retrain(rcfg)
    assert again.action == "no-change"
    assert len(registry.search_model_versions("name='clamp-test'")) == 1  # nothing trained

    # new data, and a challenger (fine-tuned from the champion) that is better: it takes the alias
    write_tunes(src, 76, seed=1)
    assert build_dataset(cfg).rows_written > 60
    better = retrain(rcfg.model_copy(update={"train": STRONG}))
    assert better.challenger_metrics[METRIC] > better.champion_metrics[METRIC] + 0.2
    assert better.action == "promoted" and better.champion_version == "1" and better.challenger_version == "2"
    assert str(champion(registry, "clamp-test").version) == "2"

    # new data again, and a worse challenger: the champion keeps the alias
    write_tunes(src, 86, seed=2)
    build_dataset(cfg)
    worse = retrain(rcfg.model_copy(update={"train": WRECKED}))
    assert worse.challenger_metrics[METRIC] < worse.champion_metrics[METRIC] - 0.2
    assert worse.action == "kept-champion" and worse.champion_version == "2" and worse.challenger_version == "3"
    assert str(champion(registry, "clamp-test").version) == "2"

    decisions = registry.search_runs(
        [registry.get_experiment_by_name("clamp-retrain").experiment_id], filter_string="tags.kind = 'retrain-decision'"
    )
    assert sorted(r.data.tags["action"] for r in decisions) == ["bootstrap", "kept-champion", "promoted"]

    from clamp.cli import app

    out = CliRunner().invoke(app, ["lineage", "clamp-test", "3", "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.output)
    assert info["dataset_fingerprint"] == json.loads((cfg.dataset_dir / "manifest.json").read_text())["fingerprint"]
    assert info["git_commit"] and info["config"]["train.preset"] == "tiny" and info["training_run_id"]
    missing = CliRunner().invoke(app, ["lineage", "clamp-test", "99"])
    assert missing.exit_code == 2 and missing.output.startswith("error: no model version clamp-test/99")
