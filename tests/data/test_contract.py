"""The Great Expectations shard contract on hand-made shard tables."""

from __future__ import annotations

import pyarrow as pa
import pytest

from clamp.data.shards import SHARD_SCHEMA, patches_array
from data_contracts import validate_shard


def _row(i: int, **over) -> dict:
    patch = bytes([5] * 10 + [97] + [0] * 53)
    row = {
        "id": f"t:{i}",
        "source": "t",
        "source_format": "abc",
        "abc": "K:C\nCDEF|\n",
        "texts": ["Title: x"],
        "metadata": "{}",
        "provenance": "",
        "license": "",
        "patch_bytes": patch * 2,
        "n_patches": 2,
        "n_chars": 10,
        "content_hash": f"h{i}",
        "split": "train",
    }
    row.update(over)
    return row


def _table(rows: list[dict]) -> pa.Table:
    cols = {name: [r[name] for r in rows] for name in SHARD_SCHEMA.names if name != "patches"}
    cols["patches"] = patches_array([r["patch_bytes"] for r in rows])
    return pa.table({n: cols[n] for n in SHARD_SCHEMA.names}, schema=SHARD_SCHEMA)


def _validate(table: pa.Table, **kw):
    return validate_shard(table, max_patches=512, vocab_size=98, max_rows=10, expected_columns=SHARD_SCHEMA.names, **kw)


def test_good_shard_passes_and_writes_data_docs(tmp_path):
    # every split value, held-out rows included (docs/shard-schema.md, "Split assignment")
    rows = [_row(0), _row(1, split="valid"), _row(2, split="test"), _row(3, split="heldout")]
    result = _validate(_table(rows), docs_dir=tmp_path / "docs")
    assert result.success and result.row_failures == {} and result.table_failures == []
    assert (tmp_path / "docs" / "index.html").is_file()


def test_bad_rows_are_named_by_the_expectation_they_fail():
    bad_patch = bytes([120] + [0] * 63)  # id 120 is outside the 98-symbol vocabulary
    rows = [
        _row(0),
        _row(1, texts=[]),
        _row(2, patch_bytes=bad_patch, n_patches=1),
        _row(3, split="holdout"),
        _row(4, abc="K:C\nCD\x07EF|\n"),
        _row(5, n_patches=3),  # disagrees with the 2 patches stored
    ]
    result = _validate(_table(rows))
    assert result.success  # row failures quarantine rows; they do not fail the shard
    assert result.row_failures == {
        1: "contract:expect_column_values_to_be_between(n_texts)",
        2: "contract:expect_column_values_to_be_between(patch_max_id)",
        3: "contract:expect_column_values_to_be_in_set(split)",
        4: "contract:expect_column_values_to_match_regex(abc)",
        5: "contract:expect_column_pair_values_to_be_equal(n_patches/patch_rows)",
    }


def test_table_level_failures_fail_the_shard():
    dup = _validate(_table([_row(0), _row(1, id="t:0")]))
    assert not dup.success and dup.table_failures == ["expect_column_values_to_be_unique(id)"]
    too_many = _validate(_table([_row(i) for i in range(11)]))
    assert too_many.table_failures == ["expect_table_row_count_to_be_between"]
    renamed = _table([_row(0)]).rename_columns([*SHARD_SCHEMA.names[:-1], "fold"])
    assert _validate(renamed).table_failures == ["expect_table_columns_to_match_ordered_list"]


def test_write_shard_raises_a_message_naming_the_expectation(tmp_path):
    from clamp.config import BuildConfig
    from clamp.data.build import DatasetLayout, ShardPlan, write_shard

    # two prepared rows with the same id: a pipeline bug the table suite must catch
    from clamp.data.prepare import PrepareConfig, prepare_table
    from clamp.data.records import RawRecord, records_to_table
    from clamp.data.shards import write_atomic
    from data_contracts import ShardContractError

    tune = b"X:1\nT:A\nK:C\nCDEF|GABc|\n"
    raw = records_to_table(
        [RawRecord("same", "t", "abc", tune), RawRecord("same", "t", "abc", tune.replace(b"GABc", b"cBAG"))]
    )
    prepared, _ = prepare_table(raw, PrepareConfig())
    chunk = tmp_path / "prepared.arrow"
    write_atomic(prepared, chunk)
    cfg = BuildConfig(output_dir=tmp_path, name="x", shard_size=4, data_docs=False)
    with pytest.raises(
        ShardContractError,
        match=r"shard-00000-fp.arrow failed the shard contract: expect_column_values_to_be_unique\(id\)",
    ):
        write_shard(ShardPlan(0, [(0, 0), (0, 1)], "fp"), [chunk], DatasetLayout(cfg.dataset_dir), cfg)
    assert not list((cfg.dataset_dir / "shards").glob("shard-00000*.arrow"))
