"""The split by tune group and the held-out collection (clamp/data/groups.py, plan_shards)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from clamp.config import BuildConfig
from clamp.data.groups import (
    TuneGroups,
    assign_splits,
    group_rows,
    grouping_stats,
    melody_links,
    melody_positions,
    melody_signature,
    melody_steps,
    row_title,
    split_of,
    title_key,
)

# --- title key -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "key"),
    [
        ("The Kesh", "kesh"),
        ("Kesh Jig, The", "kesh"),  # trailing article, then the tune type
        ("The Alhambra -- Reel", "alhambra"),
        ("Sally (reel)", "sally"),
        ("Lady Haddo's Strathspey.", "lady haddos"),
        ("Hicks' Hornpipe", "hicks"),
        ("The Boys of Ballisodare, 2nd setting", "boys of ballisodare"),
        ("Cronin's Hornpipe No. 2", "cronins"),
        ("Kesh Slip Jig", "kesh"),  # a two-word tune type
        ("Schloss in Östreich (2-26) S. 80", "schloss in oestreich"),  # as Essen writes it: Oestreich
        ("Café Waltz", "cafe"),
        # names no tune: no title group
        ("Untitled", None),
        ("Reel", None),
        ("The Reel", None),
        ("Reel No. 2", None),
        ("Tune number 5", None),
        ("Air", None),
        ("Lied", None),
        ("Chorale", None),
        ("12", None),
        ("", None),
        (None, None),
    ],
)
def test_title_key(title, key):
    assert title_key(title) == key


def test_row_title_is_the_first_title_candidate_of_abc_rows_only():
    texts = ["Title: The Ranting Highlandman.", "Title: The White Cockade", "A tune in G major."]
    assert row_title(texts) == "The Ranting Highlandman."
    assert row_title(["Rhythm: reel", "A reel in D major."]) is None
    # converted scores' titles are movement names ("Crucifixus"): not used
    assert row_title(["Title: Crucifixus"], source_format="humdrum") is None


# --- melody key ----------------------------------------------------------------------------
JIG_D = "X:1\nT:x\nM:6/8\nL:1/8\nK:D\n|:dAF DFA|dAF GFE|dAF DFA|GFE D3:|\n"
JIG_G = "X:1\nT:y\nM:6/8\nL:1/8\nK:G\n|:gdB GBd|gdB cBA|gdB GBd|cBA G3:|\n"  # the same, a fourth up


def test_melody_positions_read_notes_only():
    # C=0 ... B=6, lower case +7, ' +7, , -7; chord symbols, decorations, grace notes and
    # inline fields are not notes
    assert melody_positions("X:1\nT:t\nK:C\n\"Am\"A,2 !trill!B, {c}d' [K:D] ^c'|z2 x|\n") == [-2, -1, 15, 14]
    # only the first voice; field lines (lyrics) skipped
    assert melody_positions("X:1\nK:C\nV:1\nCDE|\nw: la la la\nV:2\nGAB|\nV:1\nFGA|\n") == [0, 1, 2, 3, 4, 5]
    assert melody_positions("X:1\nK:C\n[V:1] C D [V:2] E F [V:1] G|\n") == [0, 1, 4]


def test_a_transposed_tune_has_the_same_steps_and_signature():
    # d A F D F A = 8 5 3 1 3 5; g d B G B d = 11 8 6 4 6 8: the same steps
    steps = [-3, -2, -2, 2, 2, 3, -3, -2, 1, -1, -1, 6, -3, -2, -2, 2, 2, -1, -1, -1, -1]
    assert melody_steps(JIG_D) == steps
    assert melody_steps(JIG_G) == steps
    assert np.array_equal(melody_signature(JIG_D), melody_signature(JIG_G))
    # an accidental or another key signature does not change the steps
    assert melody_steps(JIG_D.replace("K:D", "K:Dm").replace("|:dAF", "|:d^AF")) == steps


def test_short_tunes_have_no_melody_key():
    assert melody_signature("X:1\nK:C\nCDEF GABc|cBAG FED|\n") is None  # 15 notes
    assert melody_signature("X:1\nK:C\nCDEF GABc|cBAG FEDC|\n") is not None  # 16


def _reel(seed: int) -> str:
    rng = random.Random(seed)
    bars = ["".join(rng.choice("CDEFGABcdefg") for _ in range(8)) for _ in range(16)]
    return "X:1\nK:G\n" + "|".join(bars) + "|\n"


def test_melody_links_join_settings_and_not_unrelated_tunes():
    a, b, c = _reel(1), _reel(2), _reel(3)
    a_transposed = a.translate(str.maketrans("CDEFGABcdefg", "DEFGABcdefga"))  # a step up
    a_edited = a.replace("|", "|G", 1)  # one note more in the second bar
    tunes = [a, b, c, a_transposed, a_edited]
    sigs = np.stack([melody_signature(t) for t in tunes])
    links = melody_links(sigs, np.ones(len(tunes), bool), [f"h{i}" for i in range(len(tunes))], 0.6)
    assert {(i, j) for i, j, _ in links} == {(0, 3), (0, 4), (3, 4)}
    assert [s for i, j, s in links if (i, j) == (0, 3)] == [1.0]


# --- groups and splits (hand-made hashes) --------------------------------------------------
# test_fraction 0.1, valid 0: a hash starting below 0x19999999 is test, the rest train
H = {
    "kesh1": "10" + "0" * 30,  # u 0.0625: test
    "kesh2": "f0" + "0" * 30,  # u 0.9375: train
    "solo": "08" + "0" * 30,  # test, alone
    "maggie_oneill": "e0" + "0" * 30,  # train by its hash, but an O'Neill's tune
    "maggie_other": "d0" + "0" * 30,  # train; same title as the O'Neill's tune
    "reel1": "01" + "0" * 30,  # test; generic title: no group
    "reel2": "ff" + "0" * 30,  # train; generic title: no group
}
TITLES = {
    "kesh1": "The Kesh",
    "kesh2": "Kesh Jig, The",
    "solo": "Banish Misfortune",
    "maggie_oneill": "Drowsy Maggie",
    "maggie_other": "Drowsy Maggie (reel)",
    "reel1": "Reel",
    "reel2": "Reel No. 2",
}


def _group(names: list[str]) -> tuple[TuneGroups, list[str], np.ndarray]:
    hashes = [H[n] for n in names]
    keys = [title_key(TITLES[n]) for n in names]
    groups = group_rows(hashes, keys, np.zeros((len(names), 64), np.uint32), np.zeros(len(names), bool), 0.6)
    heldout = np.array([n == "maggie_oneill" for n in names])
    return groups, hashes, heldout


def test_settings_of_one_tune_share_a_split_and_the_counts_are_right():
    names = list(H)
    groups, hashes, heldout = _group(names)
    assert [split_of(h, 0.0, 0.1) for h in hashes] == ["test", "train", "test", "train", "train", "test", "train"]
    splits = assign_splits(groups.labels, hashes, heldout, 0.0, 0.1)
    got = dict(zip(names, splits, strict=True))
    assert got["kesh1"] == got["kesh2"] and got["kesh1"] in {"test", "train"}
    assert got["maggie_oneill"] == got["maggie_other"] == "heldout"
    assert (got["solo"], got["reel1"], got["reel2"]) == ("test", "test", "train")  # alone: own split
    stats = grouping_stats(groups, hashes, splits, heldout, 0.0, 0.1)
    assert stats == {
        "groups": 2,
        "grouped_rows": 4,
        "largest_group": 2,
        "title_keys": 2,
        "title_keys_capped": 0,
        "melody_pairs": 0,
        "crossed_before": 1,  # the Kesh settings: test and train by their own hashes
        "crossed_after": 0,
        "rows_moved": 3,  # one Kesh setting, and both Drowsy Maggies (to heldout)
        "heldout_rows": 2,
        "heldout_by_group": 1,
    }
    # the old rule is still there, and held-out rows stay held out under it
    assert assign_splits(groups.labels, hashes, heldout, 0.0, 0.1, split_by="row") == [
        "test",
        "train",
        "test",
        "heldout",
        "train",
        "test",
        "train",
    ]


def test_groups_do_not_depend_on_row_order():
    names = list(H)
    groups, hashes, heldout = _group(names)
    splits = dict(zip(names, assign_splits(groups.labels, hashes, heldout, 0.0, 0.1), strict=True))
    back = names[::-1]
    g2, h2, held2 = _group(back)
    assert dict(zip(back, assign_splits(g2.labels, h2, held2, 0.0, 0.1), strict=True)) == splits


def test_a_title_shared_by_more_rows_than_the_cap_groups_nothing():
    hashes = [f"{i:02x}" + "0" * 30 for i in range(5)]
    groups = group_rows(hashes, ["kesh"] * 5, np.zeros((5, 64), np.uint32), np.zeros(5, bool), 0.6, title_cap=4)
    assert groups.labels.tolist() == [0, 1, 2, 3, 4] and groups.title_keys_capped == 1
    groups = group_rows(hashes, ["kesh"] * 5, np.zeros((5, 64), np.uint32), np.zeros(5, bool), 0.6, title_cap=5)
    assert len(set(groups.labels.tolist())) == 1


def test_large_groups_land_in_test_no_more_often_than_small_ones():
    # the smallest of 40 uniform hashes is below 0.05 with probability 1 - 0.95**40 = 87 %: a
    # group's split must not come from its smallest hash
    rng = random.Random(0)
    n_groups, size = 200, 40
    hashes = [f"{rng.getrandbits(128):032x}" for _ in range(n_groups * size)]
    keys = [f"tune {g}" for g in range(n_groups) for _ in range(size)]
    groups = group_rows(
        hashes, keys, np.zeros((len(hashes), 64), np.uint32), np.zeros(len(hashes), bool), 0.6, title_cap=size
    )
    splits = assign_splits(groups.labels, hashes, np.zeros(len(hashes), bool), 0.02, 0.05)
    per_group = [splits[g * size] for g in range(n_groups)]
    assert per_group.count("test") / n_groups < 0.12  # about 0.05


# --- the plan: prepared rows to shard splits ----------------------------------------------
KESH = "X:1\nT:The Kesh\nR:jig\nM:6/8\nL:1/8\nK:G\n|:G3 GAB|A3 ABd|edd gdd|edB dBA|G3 GAB|A3 ABd|edd gdB|AGF G3:|\n"
KESH_SETTINGS = [  # the same tune, other ornaments: another content hash
    KESH.replace("T:The Kesh", "T:Kesh Jig, The").replace("G3 GAB|A3", f"G2{n} GAB|A3")
    for n in ("G", "B", "A", "F", "E", "D")
]
MAGGIE = (
    "X:1\nT:Drowsy Maggie\nB:O'Neill's 1001\nR:reel\nM:4/4\nL:1/8\nK:Edor\n"
    "|:E2BE dEBE|E2BE AFDF|E2BE dEBE|BABc dAFD:|\n|:d2fd c2ec|defg afge|d2fd c2ec|BABc dAFD:|\n"
)
# the same reel a fourth up, under another title and in no collection: linked by its melody
MAGGIE_A = (
    "X:1\nT:Maggie's Dream\nR:reel\nM:4/4\nL:1/8\nK:Ador\n"
    "|:A2eA gAeA|A2eA dBGB|A2eA gAeA|edef gdBG:|\n|:g2bg f2af|gabc' d'bc'a|g2bg f2af|edef gdBG:|\n"
)
WALTZ = "X:1\nT:Cafe Waltz\nR:waltz\nM:3/4\nL:1/8\nK:C\n|:C2 E2 G2|c6|B2 G2 E2|C6|D2 F2 A2|d6|c2 A2 F2|D6:|\n"


def _prepare(tmp: Path, tunes: dict[str, str]) -> tuple[list[Path], dict[str, str]]:
    from clamp.data.prepare import PrepareConfig, prepare_table
    from clamp.data.records import RawRecord, records_to_table
    from clamp.data.shards import write_atomic

    raw = records_to_table(
        [RawRecord(f"local:{name}.abc", "local", "abc", abc.encode()) for name, abc in tunes.items()]
    )
    prepared, bad = prepare_table(raw, PrepareConfig())
    assert bad.num_rows == 0
    half = prepared.num_rows // 2  # two chunks, so rows are found across chunks
    paths = [tmp / "chunk-00000.arrow", tmp / "chunk-00001.arrow"]
    write_atomic(prepared.slice(0, half), paths[0])
    write_atomic(prepared.slice(half), paths[1])
    hashes = dict(
        zip(
            [i.split(":")[1][:-4] for i in prepared.column("id").to_pylist()],
            prepared.column("content_hash").to_pylist(),
            strict=True,
        )
    )
    return paths, hashes


def _plan(tmp: Path, chunks: list[Path], **fields):
    from clamp.data.build import DatasetLayout, plan_shards

    cfg = BuildConfig(
        name="groups",
        output_dir=tmp,
        decontaminate=False,
        data_docs=False,
        shard_size=3,
        valid_fraction=0.0,
        test_fraction=0.5,
        **fields,
    )
    return cfg, plan_shards(chunks, DatasetLayout(cfg.dataset_dir), cfg, None)


def _row_splits(plan, chunks: list[Path], cfg) -> dict[str, str]:
    from clamp.data.build import assemble_shard

    out: dict[str, str] = {}
    for shard in plan.shards:
        t = assemble_shard(shard, chunks, cfg)
        out.update(
            zip([i.split(":")[1][:-4] for i in t.column("id").to_pylist()], t.column("split").to_pylist(), strict=True)
        )
    return out


def test_plan_keeps_settings_together_and_holds_out_a_collection(tmp_path):
    # test_fraction 0.5: a hash starting with 0-7 is test, 8-f train. Pick a second Kesh
    # setting that the per-row rule puts in the other split than the first.
    probe, probe_hashes = _prepare(
        tmp_path / "probe", {"kesh": KESH, **{f"s{i}": t for i, t in enumerate(KESH_SETTINGS)}}
    )
    first = split_of(probe_hashes["kesh"], 0.0, 0.5)
    other = next(
        KESH_SETTINGS[i] for i in range(len(KESH_SETTINGS)) if split_of(probe_hashes[f"s{i}"], 0.0, 0.5) != first
    )
    tunes = {"kesh": KESH, "kesh2": other, "maggie": MAGGIE, "maggie_a": MAGGIE_A, "waltz": WALTZ}
    chunks, hashes = _prepare(tmp_path / "prepared", tunes)
    old = {n: split_of(h, 0.0, 0.5) for n, h in hashes.items()}
    assert old["kesh"] != old["kesh2"]

    cfg, plan = _plan(tmp_path, chunks)
    splits = _row_splits(plan, chunks, cfg)
    assert splits["kesh"] == splits["kesh2"] in {"test", "train"}
    assert splits["maggie"] == splits["maggie_a"] == "heldout"  # O'Neill's, and its transposed setting
    assert splits["waltz"] == old["waltz"]
    assert "heldout" not in {s for n, s in splits.items() if not n.startswith("maggie")}
    moved_kesh = 1  # one of the two settings changed split
    assert plan.grouping == {
        "split_by": "tune-group",
        "groups": 2,
        "grouped_rows": 4,
        "largest_group": 2,
        "title_keys": 1,
        "title_keys_capped": 0,
        "melody_pairs": 2,  # the Maggies (transposed), and the Kesh settings (one note apart) by melody too
        "crossed_before": 1 + (old["maggie"] != old["maggie_a"]),
        "crossed_after": 0,
        "rows_moved": moved_kesh + 2,
        "heldout_rows": 2,
        "heldout_by_group": 1,
    }

    # the old rule, without a held-out collection, gives every row its own split back
    cfg_row, plan_row = _plan(tmp_path, chunks, split_by="row", holdout_collections=[])
    assert _row_splits(plan_row, chunks, cfg_row) == old
    assert plan_row.grouping["crossed_after"] == plan_row.grouping["crossed_before"] == plan.grouping["crossed_before"]
    # the grouping settings are part of every shard's fingerprint
    _, plan_strict = _plan(tmp_path, chunks, melody_group_threshold=0.95)
    fps = [[s.fingerprint for s in p.shards] for p in (plan, plan_row, plan_strict)]
    assert all(a != b for a, b in zip(fps[0], fps[2], strict=True)) and all(
        a != b for a, b in zip(fps[0], fps[1], strict=True)
    )


def test_held_out_rows_pass_the_contract_and_training_never_reads_them(tmp_path):
    from clamp.config import SourceSpec
    from clamp.data.build import build_dataset
    from clamp.data.shards import load_manifest
    from clamp.data.torch_dataset import ShardDataset

    src = tmp_path / "src"
    src.mkdir()
    for name, abc in {"maggie": MAGGIE, "maggie_a": MAGGIE_A, "waltz": WALTZ, "kesh": KESH}.items():
        (src / f"{name}.abc").write_text(abc, encoding="utf-8")
    cfg = BuildConfig(
        name="held",
        output_dir=tmp_path / "out",
        cache_dir=tmp_path / "cache",
        decontaminate=False,
        data_docs=False,
        sources=[SourceSpec(kind="local", path=str(src))],
        valid_fraction=0.0,
        test_fraction=0.0,
    )
    summary = build_dataset(cfg)
    assert summary.splits == {"heldout": 2, "train": 2}
    assert summary.quarantined == 0
    assert summary.grouping["heldout_rows"] == 2 and summary.grouping["crossed_after"] == 0
    assert json.loads((cfg.dataset_dir / "summary.json").read_text())["grouping"] == summary.grouping
    manifest = load_manifest(cfg.dataset_dir)
    assert manifest["splits"] == {"heldout": 2, "train": 2}
    assert manifest["split"]["holdout_collections"] == ["O'Neill's Music of Ireland"]
    train = ShardDataset(cfg.dataset_dir, split="train")
    assert sorted(train[i]["id"] for i in range(len(train))) == ["local:kesh.abc", "local:waltz.abc"]
