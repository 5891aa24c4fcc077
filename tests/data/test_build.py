"""build_dataset end to end on a fixture with every kind of record (no Prefect, no mocks)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from clamp.config import BuildConfig, SourceSpec
from clamp.data.build import build_dataset
from clamp.data.shards import load_manifest, read_dataset, read_table
from tests.data.fixture_corpus import make_fixture

# one build of a fixture with every kind of record, decontaminated against every benchmark
pytestmark = pytest.mark.slow

EXPECTED_REASONS = {
    "empty": 1,
    "binary": 1,
    "undecodable": 1,
    "header_only": 1,
    "too_large": 1,
    "control_characters": 1,
    "unparseable_musicxml": 1,
    "unparseable_midi": 1,
}


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory, benchmarks_dir) -> tuple[Path, dict]:
    from music21 import corpus

    root = tmp_path_factory.mktemp("fixture")
    wikimt = json.loads((benchmarks_dir / "wikimt" / "wikimusictext.json").read_text(encoding="utf-8"))
    expected = make_fixture(root, wikimt[3]["music"])
    (root / "bach.mxl").write_bytes(Path(corpus.getWork("bwv66.6")).read_bytes())
    return root, expected


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _cfg(out: Path, src: Path, cache: Path, benchmarks: Path) -> BuildConfig:
    return BuildConfig(
        name="fixture",
        output_dir=out,
        cache_dir=cache,
        sources=[SourceSpec(kind="local", path=str(src))],
        shard_size=2,
        chunk_size=4,
        benchmarks_dir=benchmarks,
        # every kept row in train, so split counts are predictable
        valid_fraction=0.0,
        test_fraction=0.0,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory, fixture_dir, cache_dir, benchmarks_dir):
    src, expected = fixture_dir
    out = tmp_path_factory.mktemp("out")
    cfg = _cfg(out, src, cache_dir, benchmarks_dir)
    return cfg, build_dataset(cfg), expected


def test_counts_reconcile_with_every_kind_of_bad_record(built):
    cfg, summary, expected = built
    assert summary.records_in == expected["records_in"]
    assert summary.quarantine_reasons == EXPECTED_REASONS
    assert summary.quarantined == expected["quarantined"]
    assert summary.duplicates_by_kind == {"exact": expected["duplicates_exact"], "near": expected["duplicates_near"]}
    assert summary.decontaminated == expected["decontaminated"]
    assert summary.decontaminated_by_benchmark == {"wikimt": 1}
    assert summary.rows_written == expected["written"]
    assert (
        summary.records_in == summary.rows_written + summary.quarantined + summary.duplicates + summary.decontaminated
    )
    assert summary.shards == 3  # 5 rows, shards of 2
    assert summary.splits == {"train": 5}
    # no two kept rows share a title key or a melody: no groups, nothing moved
    assert summary.grouping == {
        "split_by": "tune-group",
        "groups": 0,
        "grouped_rows": 0,
        "largest_group": 1,
        "title_keys": 0,
        "title_keys_capped": 0,
        "melody_pairs": 0,
        "crossed_before": 0,
        "crossed_after": 0,
        "rows_moved": 0,
        "heldout_rows": 0,
        "heldout_by_group": 0,
    }
    assert summary.caption_coverage == 1.0 and summary.caption_failures == 0 and summary.distinct_captions > 10


def test_nothing_is_lost(built):
    cfg, summary, _ = built
    root = cfg.dataset_dir
    quarantine = read_table(root / "quarantine" / "quarantine.arrow")
    assert sorted(quarantine.column("reason").to_pylist()) == sorted(EXPECTED_REASONS)
    huge = quarantine.filter(pa.compute.equal(quarantine.column("reason"), "too_large"))
    assert len(huge.column("content")[0].as_py()) > 1_000_000  # the content is kept, not dropped
    dups = read_table(root / "dedup" / "duplicates.arrow").to_pylist()
    assert {(d["id"], d["kind"], d["duplicate_of"]) for d in dups} == {
        ("local:z_copy.abc", "exact", "local:two_tunes.abc#1"),
        ("local:long_variant.abc", "near", "local:long.abc"),
    }
    decon = read_table(root / "dedup" / "decontaminated.arrow").to_pylist()
    assert [(d["id"], d["kind"], d["benchmark_item"]) for d in decon] == [("local:leak.abc", "exact", "wikimt:3")]


def test_shard_rows_have_texts_patches_and_metadata(built):
    cfg, _, _ = built
    table = read_dataset(cfg.dataset_dir)
    rows = {r["id"]: r for r in table.to_pylist()}
    assert set(rows) == {
        "local:accents.abc",
        "local:bach.mxl",
        "local:long.abc",
        "local:two_tunes.abc#1",
        "local:two_tunes.abc#2",
    }
    jig = rows["local:two_tunes.abc#1"]
    # the cleaned fields and source texts, then captions (docs/shard-schema.md, "Captions and labels")
    assert jig["texts"][:4] == ["Title: The First Jig", "Rhythm: jig", "Origin: Ireland", "Two tunes from a session"]
    assert jig["texts"][4] == "A jig in D major, in 6/8."
    assert json.loads(jig["metadata"])["license"] == "CC0"
    assert json.loads(jig["metadata"])["labels"] == {
        "tune_type": "jig",
        "key": "D major",
        "mode": "major",
        "meter": "6/8",
    }
    assert json.loads(jig["metadata"])["n_captions"] == len(jig["texts"]) - 4
    # header fields of the file header are inserted after X:, so L:1/8 is part of the music
    assert "L:1/8" in jig["abc"]
    assert len(jig["patches"]) == jig["n_patches"] and all(len(p) == 64 for p in jig["patches"])
    waltz = rows["local:accents.abc"]
    assert waltz["texts"][:3] == ["Title: Café Waltz", "Composer: José", "Rhythm: waltz"]
    assert "A slow waltz for a café" in waltz["texts"]
    assert json.loads(waltz["metadata"])["region"] == "south"
    bach = rows["local:bach.mxl"]
    assert bach["source_format"] == "mxl" and "K:" in bach["abc"] and bach["n_patches"] > 10


def test_pandas_and_manifest(built):
    cfg, summary, _ = built
    manifest = load_manifest(cfg.dataset_dir)
    assert manifest["rows"] == summary.rows_written
    assert [s["rows"] for s in manifest["shards"]] == [2, 2, 1]
    df = pd.read_feather(cfg.dataset_dir / manifest["shards"][0]["path"])
    assert list(df.columns)[:3] == ["id", "source", "source_format"]
    assert (cfg.dataset_dir / "data_docs" / "index.html").is_file()
    assert (cfg.dataset_dir / "data_docs" / "shard-00000" / "index.html").is_file()


def test_rerun_skips_finished_work_and_is_byte_identical(built, tmp_path, fixture_dir, cache_dir, benchmarks_dir):
    cfg, first, _ = built
    before = {p.name: p.read_bytes() for p in (cfg.dataset_dir / "shards").glob("*.arrow")}
    again = build_dataset(cfg)
    assert again.shards_skipped == again.shards == first.shards
    assert again.chunks_skipped == 4
    assert again.rows_written == first.rows_written
    # a fresh build elsewhere gives the same bytes
    src, _ = fixture_dir
    fresh = build_dataset(_cfg(tmp_path, src, cache_dir, benchmarks_dir))
    assert fresh.shards_skipped == 0
    after = {p.name: p.read_bytes() for p in (tmp_path / "fixture" / "shards").glob("*.arrow")}
    assert after == before


def test_torch_dataset_reads_the_shards(built):
    import torch

    from clamp.data.torch_dataset import ShardDataset

    cfg, summary, _ = built
    ds = ShardDataset(cfg.dataset_dir, split="train")
    assert len(ds) == summary.rows_written
    item = ds[0]
    assert item["patches"].dtype == torch.int64 and item["patches"].shape[1] == 64
    assert int(item["patches"].max()) < 98


def test_relative_output_dir_builds_with_data_docs(tmp_path, monkeypatch):
    """The default config uses relative paths; Data Docs and Dask workers need them resolved."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.abc").write_text("X:1\nT:A\nM:4/4\nK:C\n|CDEF GABc|cBAG FEDC|\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    cfg = BuildConfig(
        name="rel",
        output_dir="out",
        cache_dir=".cache",
        sources=[SourceSpec(kind="local", path="src")],
        decontaminate=False,
    )
    assert cfg.output_dir == tmp_path / "out"
    summary = build_dataset(cfg)
    assert summary.rows_written == 1
    assert (tmp_path / "out" / "rel" / "data_docs" / "shard-00000" / "index.html").is_file()
