"""Typed configuration: precedence (defaults < file < environment < given options) and
validation errors that name the field, for every config of the project."""

from __future__ import annotations

import pytest

from clamp.config import BuildConfig, ConfigError, validated
from clamp.eval.config import EvalConfig
from clamp.model.config import ClampConfig, MusicEncoderConfig
from clamp.train.config import DEFAULT_LR, TrainConfig
from clamp.workflows.ablations import AblationConfig
from clamp.workflows.retrain import RetrainConfig
from infra.stack import StackConfig


@pytest.mark.parametrize(
    ("cls", "data", "field"),
    [
        (BuildConfig, {"max_patches": 1}, "max_patches"),
        (BuildConfig, {"sources": [{"kind": "ftp"}]}, "sources.0.kind"),
        (BuildConfig, {"nmae": "typo"}, "nmae"),
        (TrainConfig, {"steps": 0}, "steps"),
        (TrainConfig, {"precision": "fp8"}, "precision"),
        (TrainConfig, {"preset": "huge"}, "preset"),
        (TrainConfig, {"device": "tpu"}, "device"),
        (MusicEncoderConfig, {"dropout": 1.5}, "dropout"),
        (MusicEncoderConfig, {"patch_mode": "bytes"}, "patch_mode"),
        (ClampConfig, {"projection_dim": 0}, "projection_dim"),
        (ClampConfig, {"music": {"num_layers": 0}}, "music.num_layers"),
        (EvalConfig, {"max_items": 0}, "max_items"),
        (EvalConfig, {"heldout_fields": ["tempo"]}, "heldout_fields.0"),
        (AblationConfig, {"mmm_steps": -1}, "mmm_steps"),
        (RetrainConfig, {"max_items": 0}, "max_items"),
        (StackConfig, {"prefect_port": 70000}, "prefect_port"),
    ],
)
def test_a_bad_value_names_its_field(cls, data, field):
    with pytest.raises(ConfigError) as err:
        validated(cls, data)
    message = str(err.value)
    assert message.startswith(f"invalid {cls.__name__} setting {field}:"), message
    assert "\n" not in message


@pytest.mark.parametrize("data,inner", [
    ({"train": {"stepz": 3}}, "train: invalid TrainConfig setting stepz: Extra inputs are not permitted"),
    ({"mmm": {"batch_size": 0}}, "mmm: invalid TrainConfig setting batch_size: Input should be greater than or equal to 1"),
])
def test_the_grids_training_settings_are_checked_before_it_starts(data, inner):
    with pytest.raises(ConfigError) as err:
        validated(AblationConfig, data)
    assert inner in str(err.value) and "\n" not in str(err.value)


def test_heads_must_divide_the_width():
    with pytest.raises(ConfigError, match="hidden_size 30 is not a multiple of num_heads 4"):
        validated(MusicEncoderConfig, {"hidden_size": 30, "num_heads": 4})


def test_build_config_precedence(tmp_path, monkeypatch):
    """defaults < file < CLAMP_<FIELD> < given options; None options never shadow the file."""
    monkeypatch.delenv("CLAMP_N_WORKERS", raising=False)
    path = tmp_path / "my.yaml"
    path.write_text("name: my-tunes\nn_workers: 3\nshard_size: 64\n")
    cfg = BuildConfig.load(path, name=None, n_workers=None)
    assert (cfg.name, cfg.n_workers, cfg.shard_size, cfg.max_patches) == ("my-tunes", 3, 64, 512)
    monkeypatch.setenv("CLAMP_N_WORKERS", "5")
    assert BuildConfig.load(path).n_workers == 5
    assert BuildConfig.load(path, n_workers=1, name="other").model_dump(include={"n_workers", "name"}) == {
        "n_workers": 1, "name": "other"}


def test_config_file_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        BuildConfig.load(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        BuildConfig.load(tmp_path / "bad.yaml")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        TrainConfig.load(tmp_path / "list.json")


def test_train_config_file_and_overrides(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("objective: mmm\nsteps: 40\nbatch_size: 8\n")
    cfg = TrainConfig.load(path, batch_size=4, lr=None)
    assert (cfg.objective, cfg.steps, cfg.batch_size) == ("mmm", 40, 4)
    assert cfg.lr == DEFAULT_LR["mmm"] == 1e-3  # the objective's default: one place for CLI and flows
    assert TrainConfig(objective="clamp").lr == DEFAULT_LR["clamp"] == 3e-4
    assert TrainConfig.load(path, lr=5e-4).lr == 5e-4


def test_model_defaults_live_in_the_model_config():
    assert TrainConfig().projection_dim == ClampConfig().projection_dim
    assert TrainConfig().text_model == ClampConfig().text_model
    assert TrainConfig().learnable_temperature == ClampConfig().learnable_temperature


def test_char_input_cannot_start_from_mmm():
    with pytest.raises(ConfigError, match="init_music_from needs the patch encoder"):
        validated(TrainConfig, {"input_kind": "char", "init_music_from": "outputs/mmm/model"})


def test_model_config_round_trips_through_json():
    cfg = ClampConfig(music=MusicEncoderConfig(hidden_size=64, num_heads=4), projection_dim=32)
    assert ClampConfig.from_dict(cfg.to_dict()) == cfg
