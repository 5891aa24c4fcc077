"""The CPU recipe's pieces: a locked text tower with cached features, validation during
training (MRR, alignment, uniformity), the best model kept, early stopping, progress lines."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from clamp.train.config import TrainConfig
from clamp.train.validate import retrieval, space_geometry
from tests.conftest import build_tunes_dataset


@pytest.fixture(scope="module")
def split_dataset(tmp_path_factory) -> Path:
    """90 tunes with a valid split (about a fifth)."""
    summary = build_tunes_dataset(tmp_path_factory.mktemp("split-data"), 90, "split", shard_size=64, valid_fraction=0.2)
    assert summary.splits.get("valid", 0) >= 8
    return Path(summary.dataset_dir)


def _cfg(dataset: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        objective="clamp",
        dataset_dir=str(dataset),
        output_dir=str(out),
        preset="tiny",
        steps=8,
        batch_size=8,
        checkpoint_every=0,
        projection_dim=16,
        mlflow=False,
        cache_dir=str(out.parent / "cache"),
        progress="off",
    )
    return TrainConfig(**{**base, **kw})


def test_geometry_and_retrieval_hand_computed():
    e = torch.eye(3)
    same = space_geometry(e, e)
    assert same["alignment"] == 0.0
    assert same["mean_cosine"] == 0.0
    # orthonormal: every distinct pair at squared distance 2 -> log mean exp(-4) = -4
    assert same["uniformity"] == pytest.approx(-4.0)
    collapsed = space_geometry(torch.ones(4, 2) / math.sqrt(2), torch.eye(2)[[0, 0, 1, 1]])
    assert collapsed["mean_cosine"] == pytest.approx(1.0) and collapsed["uniformity"] == pytest.approx(0.0, abs=1e-6)
    # text 0 finds music 0 first; text 1 ranks music 1 second (behind music 0)
    text = torch.tensor([[1.0, 0.0], [0.8, 0.6]])
    music = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    r = retrieval(text, music)
    assert r["mrr"] == pytest.approx((1 + 1 / 2) / 2) and r["hit_at_1"] == 0.5 and r["hit_at_10"] == 1.0


def test_locked_tower_stays_frozen_and_its_features_are_cached(split_dataset, tmp_path, capsys):
    from clamp.model.clamp_model import ClampModel
    from clamp.model.text import load_text_encoder
    from clamp.train.run import train

    result = train(_cfg(split_dataset, tmp_path / "locked", text_tower="locked", eval_every=4, progress="lines"))
    trained = ClampModel.from_pretrained(result["model_dir"])
    pretrained, _ = load_text_encoder("all-MiniLM-L6-v2")
    for (name, a), b in zip(trained.text_encoder.state_dict().items(), pretrained.state_dict().values(), strict=False):
        assert torch.equal(a, b), name  # the tower is exactly the pretrained one
    caches = list((tmp_path / "cache" / "text-features").glob("*.npz"))
    assert len(caches) == 1
    assert result["validation_steps"] == [4, 8]
    err = capsys.readouterr().err
    assert "clamp tiny: step 8/8" in err and "valid MRR" in err
    first = re.search(r"text features \(locked tower\): (\d+) candidates, (\d+) computed", err)
    assert first and int(first[1]) == int(first[2]) > 0  # a fresh cache: every feature computed
    # a second run reads every feature from the cache
    again = train(_cfg(split_dataset, tmp_path / "again", text_tower="locked", progress="lines"))
    assert again["model_dir"]
    second = re.search(r"text features \(locked tower\): (\d+) candidates, (\d+) computed", capsys.readouterr().err)
    assert second and 0 < int(second[1]) <= int(first[1]) and second[2] == "0"  # no valid texts: fewer, all cached


@pytest.mark.slow
def test_train_tower_mode_trains_the_text_encoder(split_dataset, tmp_path):
    from clamp.model.clamp_model import ClampModel
    from clamp.model.text import load_text_encoder
    from clamp.train.run import train

    result = train(_cfg(split_dataset, tmp_path / "joint", text_tower="train", steps=3, lr=1e-3, text_lr=1e-3))
    trained = ClampModel.from_pretrained(result["model_dir"]).text_encoder.state_dict()
    pretrained = load_text_encoder("all-MiniLM-L6-v2")[0].state_dict()
    key = "embeddings.word_embeddings.weight"
    assert not torch.equal(trained[key], pretrained[key])


@pytest.mark.slow
def test_best_model_is_kept_and_early_stopping_stops(split_dataset, tmp_path):
    from clamp.train.run import train

    result = train(_cfg(split_dataset, tmp_path / "es", eval_every=1, steps=30, lr=1e-2, early_stopping_patience=2))
    steps = result["validation_steps"]
    assert result["early_stopped"] is True and len(steps) < 30
    mrrs = result["validation_mrr"]
    best = max(range(len(mrrs)), key=lambda i: (mrrs[i], -i))
    assert result["best_step"] == steps[best] and result["best_valid_mrr"] == pytest.approx(mrrs[best])
    assert steps[-1] - steps[best] == 2  # two evaluations without a better MRR, then stop
    assert all(m <= mrrs[best] for m in mrrs[best + 1 :])


@pytest.mark.slow
def test_time_budget_validates_then_stops_and_keeps_a_model(split_dataset, tmp_path):
    from clamp.train.run import train

    # a budget already spent at the first log: the run validates step 2 (not a multiple of
    # eval_every), stops there and still saves a model folder; the schedule planned 40 steps
    result = train(_cfg(split_dataset, tmp_path / "budget", steps=40, log_every=2, eval_every=10, max_minutes=1e-9))
    assert result["out_of_time"] is True and result["early_stopped"] is False
    assert result["validation_steps"] == [2] and result["best_step"] == 2
    assert result["model_dir"] and (Path(result["model_dir"]) / "model.safetensors").is_file()
    assert sorted(result["history"]) == [0, 1]
    # no budget: all 4 steps run
    full = train(_cfg(split_dataset, tmp_path / "nobudget", steps=4, log_every=2, eval_every=10))
    assert full["out_of_time"] is False and sorted(full["history"]) == [0, 1, 2, 3]
