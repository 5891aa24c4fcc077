"""Chord views and the notation-independent split (clamp.data.views, clamp.data.plan.split_hash):
an as-written build with `chord_views` stores each train tune without chord symbols as it reads
with one per bar; a canonical and an as-written build put every tune in the same split."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from clamp.config import BuildConfig, SourceSpec
from clamp.data.build import build_dataset
from clamp.data.clean import content_hash
from clamp.data.plan import split_hash
from clamp.data.prepare import PrepareConfig, patch_music
from clamp.data.shards import read_table, row_patches
from clamp.data.torch_dataset import ShardDataset
from clamp.data.views import CHORD_VIEW, MIDI_VIEW
from clamp.errors import ConfigError, UserError
from clamp.train.data import music_batch

JIG = "X:1\nT:The First Jig\nR:jig\nM:6/8\nL:1/8\nK:D\n|:dAF DFA|dAF GFE|dAF DFA|GFE D3:|\n"
WALTZ = "X:1\nT:A Waltz\nR:waltz\nM:3/4\nL:1/4\nK:C\n|:C E G|c3|B G E|C3:|\n"
TUNES = {
    "jig.abc": JIG,
    "waltz.abc": WALTZ,
    # has chord symbols: no view
    "hornpipe.abc": 'X:1\nT:A Hornpipe\nR:hornpipe\nM:4/4\nL:1/16\nK:A\n"A"A2c2e2a2 "E"g2e2c2B2|"A"A4 A4 A8|]\n',
    # no notes, so no bar gets a chord: no view
    "silence.abc": "X:1\nT:Silence\nM:4/4\nL:1/8\nK:C\nz8|z8|z8|z8|\n",
}
# the triad of the key covering most of each bar's note letters, ties to the tonic:
# jig bar 2 (d A F G F E): D-F#-A covers 4; waltz bar 3 (B G E): E-G-B covers all 3
JIG_WITH_CHORDS = JIG.replace("|:dAF DFA|dAF GFE|dAF DFA|GFE D3:|", '|:"D"dAF DFA|"D"dAF GFE|"D"dAF DFA|"D"GFE D3:|')
WALTZ_WITH_CHORDS = WALTZ.replace("|:C E G|c3|B G E|C3:|", '|:"C"C E G|"C"c3|"Em"B G E|"C"C3:|')


def _cfg(out: Path, src: Path, cache: Path, **fields) -> BuildConfig:
    return BuildConfig(
        **{
            "name": "chords",
            "output_dir": out,
            "cache_dir": cache,
            "sources": [SourceSpec(kind="local", path=str(src))],
            "decontaminate": False,
            "data_docs": False,
            "valid_fraction": 0.0,
            "test_fraction": 0.0,
            "holdout_collections": [],
            "midi_views": False,  # the chord view alone
            **fields,
        }
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    src = tmp_path_factory.mktemp("chords-src")
    for name, text in TUNES.items():
        (src / name).write_text(text, encoding="utf-8")
    out, cache = tmp_path_factory.mktemp("chords-out"), tmp_path_factory.mktemp("chords-cache")
    cfg = _cfg(out, src, cache, notation="as-written", chord_views=True)
    return cfg, build_dataset(cfg)


def test_each_train_tune_without_chords_gets_one_per_bar(built):
    cfg, summary = built
    manifest = json.loads((cfg.dataset_dir / "manifest.json").read_text())
    assert list(manifest["views"]) == [CHORD_VIEW]
    views = pa.concat_tables([read_table(cfg.dataset_dir / f["path"]) for f in manifest["views"][CHORD_VIEW]])
    shards = pa.concat_tables([read_table(cfg.dataset_dir / s["path"]) for s in manifest["shards"]])
    title_of = {
        i: a.split("\nT:")[1].split("\n")[0]
        for i, a in zip(shards.column("id").to_pylist(), shards.column("abc").to_pylist(), strict=True)
    }
    counts = summary.views[CHORD_VIEW]
    assert {k: counts[k] for k in ("train_rows", "rows", "failed", "converted")} == {
        "train_rows": 4,
        "rows": 2,
        "failed": 2,  # the hornpipe has chords, the silence no notes
        "converted": 2,
    }
    assert sorted(title_of[i] for i in views.column("id").to_pylist()) == ["A Waltz", "The First Jig"]
    pcfg = PrepareConfig.from_build(cfg)
    expected = {"The First Jig": JIG_WITH_CHORDS, "A Waltz": WALTZ_WITH_CHORDS}
    for row, row_id in enumerate(views.column("id").to_pylist()):
        assert row_patches(views, row).tobytes() == patch_music(expected[title_of[row_id]], pcfg)[2]
    # a rerun finds every view file done
    assert build_dataset(cfg).views[CHORD_VIEW]["converted"] == 0


def test_chord_views_need_a_dataset_written_as_written(tmp_path):
    with pytest.raises(ConfigError, match="chord_views needs notation: as-written"):
        BuildConfig.load(None, output_dir=str(tmp_path), chord_views=True)


def test_training_draws_the_chord_view_after_the_midi_route(built):
    cfg, _ = built
    ds = ShardDataset(cfg.dataset_dir, "train", views=(CHORD_VIEW,))
    assert ds.view_counts() == {CHORD_VIEW: 2}
    with pytest.raises(UserError, match="rebuild it with `clamp build --midi-views`"):
        ShardDataset(cfg.dataset_dir, "train", views=(MIDI_VIEW,))
    own, midi, chords = torch.full((3, 64), 1), torch.full((2, 64), 2), torch.full((4, 64), 3)
    item = {"patches": own, "views": {MIDI_VIEW: midi, CHORD_VIEW: chords}, "index": 0, "draw": 0}
    width = 8
    assert torch.equal(music_batch([item], width, chord_view=1.0)[0, :4], chords)
    assert torch.equal(music_batch([item], width, chord_view=0.0)[0, :3], own)
    # the MIDI route first: its draw is the one a run without chord views makes
    assert torch.equal(music_batch([item], width, midi_view=1.0, chord_view=1.0)[0, :2], midi)
    many = [item | {"draw": d, "views": {CHORD_VIEW: chords}} for d in range(400)]
    batch = music_batch(many, width, chord_view=0.5, seed=1)
    took = sum(int(batch[k, 3, 0]) == 3 for k in range(len(many)))
    assert 160 <= took <= 240
    assert torch.equal(music_batch(many, width, chord_view=0.5, seed=1), batch)


def test_the_split_hash_is_the_canonical_forms_whatever_the_notation():
    eighths = "X:1\nT:T\nM:C|\nL:1/8\nK:G\nGABc dBGB|\n"
    quarters = "X:1\nT:T\nM:2/2\nL:1/4\nK:G\nG/A/B/c/ d/B/G/B/|\n"  # the same notes
    own = [content_hash(t) for t in (eighths, quarters)]
    assert own[0] != own[1]
    as_written = [split_hash(t, h, "as-written") for t, h in zip((eighths, quarters), own, strict=True)]
    assert as_written[0] == as_written[1]
    assert split_hash(quarters, "own", "canonical") == "own"  # a canonical row's hash is already that form


def test_a_canonical_and_an_as_written_build_split_the_same_tunes(tmp_path):
    from clamp.abc.notation import rewrite_unit_length
    from clamp.abc.variants import add_chord_symbols
    from tests.conftest import write_tunes

    src = tmp_path / "src"
    write_tunes(src, 40)
    # written as sources write them: some in L:1/4, some with chord symbols
    for i, path in enumerate(sorted(src.glob("*.abc"))):
        text = path.read_text(encoding="utf-8")
        text = rewrite_unit_length(text, "1/4") if i % 2 else text
        path.write_text(add_chord_symbols(text) if i % 3 == 0 else text, encoding="utf-8")
    splits = {}
    for notation in ("canonical", "as-written"):
        cfg = _cfg(
            tmp_path / notation, src, tmp_path / "cache", notation=notation, valid_fraction=0.25, test_fraction=0.25
        )
        build_dataset(cfg)
        manifest = json.loads((cfg.dataset_dir / "manifest.json").read_text())
        table = pa.concat_tables([read_table(cfg.dataset_dir / s["path"], ["id", "split"]) for s in manifest["shards"]])
        splits[notation] = dict(zip(table.column("id").to_pylist(), table.column("split").to_pylist(), strict=True))
    assert len(splits["canonical"]) == 40
    assert splits["canonical"] == splits["as-written"]
    assert set(splits["canonical"].values()) == {"train", "valid", "test"}
