"""MIDI-route views (clamp.data.views): a build with `midi_views` stores each train tune as a user's
MIDI file of it would be prepared; training draws that view with probability `midi_view`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from clamp.abc.render import abc_to_midi
from clamp.config import BuildConfig, SourceSpec
from clamp.data.build import build_dataset
from clamp.data.prepare import PrepareConfig, prepare_table
from clamp.data.records import RAW_SCHEMA
from clamp.data.shards import read_table, row_patches
from clamp.data.torch_dataset import ShardDataset
from clamp.data.views import MIDI_VIEW
from clamp.errors import UserError
from clamp.train.data import music_batch

TUNES = {
    "jig.abc": "X:1\nT:The First Jig\nR:jig\nM:6/8\nL:1/8\nK:D\n|:dAF DFA|dAF GFE|dAF DFA|GFE D3:|\n",
    "reel.abc": "X:1\nT:A Reel\nR:reel\nM:C|\nL:1/8\nK:G\n|:GABc dBGB|cBAG FGAB|GABc dBGB|AGFA G4:|\n",
    "waltz.abc": "X:1\nT:A Waltz\nR:waltz\nM:3/4\nL:1/4\nK:C\n|:C E G|c3|B G E|C3:|\n",
    "hornpipe.abc": 'X:1\nT:A Hornpipe\nR:hornpipe\nM:4/4\nL:1/16\nK:A\n"A"A2c2e2a2 "E"g2e2c2B2|"A"A4 A4 A8|]\n',
    # only rests: abc2midi writes a MIDI file with no notes, so it has no MIDI route
    "silence.abc": "X:1\nT:Silence\nM:4/4\nL:1/8\nK:C\nz8|z8|z8|z8|\n",
}


def _cfg(out: Path, src: Path, cache: Path, midi_views: bool) -> BuildConfig:
    return BuildConfig(
        name="views",
        output_dir=out,
        cache_dir=cache,
        sources=[SourceSpec(kind="local", path=str(src))],
        decontaminate=False,
        data_docs=False,
        valid_fraction=0.0,
        test_fraction=0.0,
        holdout_collections=[],
        midi_views=midi_views,
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("views-src")
    for name, text in TUNES.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory, source):
    out, cache = tmp_path_factory.mktemp("views-out"), tmp_path_factory.mktemp("views-cache")
    cfg = _cfg(out, source, cache, midi_views=True)
    return cfg, build_dataset(cfg)


def _user_midi_patches(abc: str, cfg: BuildConfig) -> bytes:
    """What the build makes of the tune's MIDI file given as a record of its own: the oracle."""
    raw = pa.table(
        {
            "id": ["user"],
            "source": ["user"],
            "format": ["midi"],
            "content": [abc_to_midi(abc)],
            "texts": [[]],
            "metadata": ["{}"],
            "provenance": ["{}"],
            "license": [""],
        },
        schema=RAW_SCHEMA,
    )
    prepared, bad = prepare_table(raw, PrepareConfig.from_build(cfg).model_copy(update={"conversion_cache_dir": None}))
    assert bad.num_rows == 0, bad.to_pylist()
    return prepared.column("patch_bytes")[0].as_py()


def test_each_train_tune_gets_the_patches_its_midi_file_would_get(built):
    cfg, summary = built
    manifest = json.loads((cfg.dataset_dir / "manifest.json").read_text())
    files = manifest["views"][MIDI_VIEW]
    views = pa.concat_tables([read_table(cfg.dataset_dir / f["path"]) for f in files])
    shards = pa.concat_tables([read_table(cfg.dataset_dir / s["path"]) for s in manifest["shards"]])
    abc_of = dict(zip(shards.column("id").to_pylist(), shards.column("abc").to_pylist(), strict=True))
    # 5 train tunes; the silent one has no MIDI route
    assert summary.splits == {"train": 5}
    counts = summary.views[MIDI_VIEW]
    assert {k: counts[k] for k in ("train_rows", "rows", "failed", "converted")} == {
        "train_rows": 5,
        "rows": 4,
        "failed": 1,
        "converted": 5,
    }
    assert sorted(views.column("id").to_pylist()) == sorted(i for i, a in abc_of.items() if "Silence" not in a)
    for row, row_id in enumerate(views.column("id").to_pylist()):
        assert row_patches(views, row).tobytes() == _user_midi_patches(abc_of[row_id], cfg), row_id
    # the view is another input: the hornpipe's chord symbols and L:1/16 do not survive the MIDI route
    shard_row = shards.column("id").to_pylist().index(next(i for i, a in abc_of.items() if "Hornpipe" in a))
    view_row = views.column("id").to_pylist().index(shards.column("id")[shard_row].as_py())
    assert row_patches(views, view_row).tobytes() != row_patches(shards, shard_row).tobytes()


def test_a_rerun_converts_nothing_and_a_build_without_views_removes_them(built, tmp_path_factory, source):
    cfg, first = built
    again = build_dataset(cfg)
    assert again.views[MIDI_VIEW]["converted"] == 0  # every view file skipped
    assert again.views[MIDI_VIEW]["rows"] == 4
    # a fresh dataset folder, same cache: the tunes come from the cache
    out2 = tmp_path_factory.mktemp("views-out2")
    cached = build_dataset(_cfg(out2, source, cfg.cache_dir, midi_views=True))
    assert cached.views[MIDI_VIEW] | {"seconds": 0} == {
        "train_rows": 5,
        "rows": 4,
        "failed": 1,
        "converted": 0,
        "seconds": 0,
    }
    with_views = json.loads((out2 / "views" / "manifest.json").read_text())
    plain = build_dataset(_cfg(out2, source, cfg.cache_dir, midi_views=False))
    assert plain.views == {}
    manifest = json.loads((out2 / "views" / "manifest.json").read_text())
    assert "views" not in manifest
    assert not list((out2 / "views" / "views").glob("*.arrow"))
    assert manifest["fingerprint"] != with_views["fingerprint"]
    assert manifest["shards"] == with_views["shards"]


def test_training_reads_the_view_with_its_probability(built, tmp_path_factory, source):
    cfg, _ = built
    ds = ShardDataset(cfg.dataset_dir, "train", views=(MIDI_VIEW,))
    assert ds.view_counts() == {MIDI_VIEW: 4}
    items = [ds[i] | {"index": i, "draw": 0} for i in range(len(ds))]
    silent = next(i for i, it in enumerate(items) if MIDI_VIEW not in it["views"])
    width = 64

    def rows(batch: torch.Tensor, i: int, n: int) -> torch.Tensor:
        return batch[i, :n]

    always = music_batch(items, width, midi_view=1.0)
    never = music_batch(items, width, midi_view=0.0)
    for i, it in enumerate(items):
        own = it["patches"][:width]
        view = it["views"].get(MIDI_VIEW, it["patches"])[:width]
        assert torch.equal(rows(never, i, len(own)), own)
        assert torch.equal(rows(always, i, len(view)), view)  # the silent tune keeps its own patches
    assert torch.equal(rows(always, silent, len(items[silent]["patches"])), items[silent]["patches"][:width])
    # half of many draws take the view; the same (seed, draw, item) draws the same
    many = [items[0] | {"draw": d} for d in range(400)]
    view0 = items[0]["views"][MIDI_VIEW][:width]
    first = music_batch(many, width, midi_view=0.5, seed=3)
    took = sum(torch.equal(first[k, : len(view0)], view0) for k in range(len(many)))
    assert 160 <= took <= 240
    assert torch.equal(music_batch(many, width, midi_view=0.5, seed=3), first)


def test_training_on_a_dataset_without_views_says_how_to_get_them(tmp_path_factory, source, built):
    cfg, _ = built
    out = tmp_path_factory.mktemp("no-views")
    build_dataset(_cfg(out, source, cfg.cache_dir, midi_views=False))
    with pytest.raises(UserError, match="rebuild it with `clamp build --midi-views`"):
        ShardDataset(out / "views", "train", views=(MIDI_VIEW,))
