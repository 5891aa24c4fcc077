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


@pytest.mark.parametrize(
    "data,inner",
    [
        ({"train": {"stepz": 3}}, "train: invalid TrainConfig setting stepz: Extra inputs are not permitted"),
        (
            {"mmm": {"batch_size": 0}},
            "mmm: invalid TrainConfig setting batch_size: Input should be greater than or equal to 1",
        ),
    ],
)
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
        "n_workers": 1,
        "name": "other",
    }


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


# --- one style: pydantic models whose defaults are written once ------------------------------


def test_cli_help_is_the_config_fields_description_and_default():
    """Every `clamp train` option named after a TrainConfig field shows that field's description
    and default; no option repeats a default by hand."""
    import typer.main

    from clamp.cli import app
    from clamp.cli_common import field_help

    group = typer.main.get_command(app)
    train = group.commands["train"]
    renamed = {"dataset": "dataset_dir", "output": "output_dir"}
    checked = 0
    for param in train.params:
        if param.param_type_name != "option" or param.name in ("config", "help"):
            continue
        field = renamed.get(param.name, param.name)
        assert field in TrainConfig.model_fields, f"--{param.name} is not a TrainConfig field"
        assert param.help == field_help(TrainConfig, field)
        assert param.default is None, f"--{param.name} writes its own default"
        checked += 1
    assert checked >= 30
    assert field_help(TrainConfig, "steps") == "optimizer steps (default: 200)"
    assert field_help(TrainConfig, "mlflow") == "log to MLflow (default: on)"
    assert field_help(TrainConfig, "lr") == "peak learning rate (default: 0.001 for mmm, 0.0003 for clamp)"
    assert field_help(TrainConfig, "register_as") == "register the final model under this name"
    assert (
        field_help(AblationConfig, "seeds") == "comma-separated seeds, each a full pass over the cells (default: 0,1,2)"
    )


def test_prepare_and_crawl_configs_take_their_defaults_from_the_build():
    from pathlib import Path

    from clamp.config import SourceSpec
    from clamp.data.prepare import PrepareConfig
    from clamp.data.sources.web import CrawlConfig

    build = BuildConfig(max_patches=96, notation="as-written", cache_dir=Path("/tmp/c"), data_docs=False)
    prep = PrepareConfig.from_build(build)
    assert prep.semantic() == {
        "patch_mode": "clamp-v1",
        "notation": "as-written",
        "max_patches": 96,
        "max_record_bytes": 1_000_000,
        "conversion_timeout_s": 120.0,
    }
    assert prep.conversion_cache_dir == "/tmp/c/conversions"
    assert PrepareConfig().max_patches == BuildConfig().max_patches == 512
    spec = SourceSpec(kind="web", seeds=["http://127.0.0.1:1/"], max_depth=4, per_host_delay_s=0.0)
    crawl = CrawlConfig.from_source(spec, Path("/tmp/s"))
    assert (crawl.max_depth, crawl.per_host_delay_s, crawl.max_pages) == (4, 0.0, 10_000)
    assert CrawlConfig(seeds=["http://x/"], state_dir="/tmp/s").max_depth == SourceSpec(kind="web").max_depth
    for bad in ({"seeds": []}, {"seeds": ["http://x/"], "max_pages": 0}):
        with pytest.raises(ConfigError) as err:
            validated(CrawlConfig, {"state_dir": "/tmp/s", **bad})
        assert ("seeds" if not bad["seeds"] else "max_pages") in str(err.value)


def test_presets_are_validated_configs_and_copies():
    from clamp.model.config import PRESETS, music_preset

    small = music_preset("small", patch_mode="m3")
    assert (small.hidden_size, small.max_positions, small.patch_mode) == (256, 128, "m3")
    assert PRESETS["small"].patch_mode == "clamp-v1"  # the preset itself is untouched
    assert music_preset("m3-12l").patch_mode == "m3"
    with pytest.raises(Exception, match="num_heads"):
        music_preset("small", num_heads=3)


def test_a_dataset_cut_to_other_patch_counts_is_named_in_one_line():
    from clamp.model.config import music_preset
    from clamp.train.run import patch_budget_note

    small = music_preset("small")  # 128 positions
    longer = patch_budget_note({"max_patches": 512}, small)
    assert longer == (
        "note: the dataset keeps up to 512 patches per tune and this run reads the first 128; "
        "longer tunes are cut (train with --max-patches 512, or build with max_patches 128)"
    )
    shorter = patch_budget_note({"max_patches": 64}, small)
    assert shorter is not None and "positions past 64 are never trained" in shorter and "\n" not in shorter
    assert patch_budget_note({"max_patches": 128}, small) is None
    assert patch_budget_note({"max_patches": 512}, music_preset("small", input_kind="char")) is None
