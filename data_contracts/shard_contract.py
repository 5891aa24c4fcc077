"""The shard contract: two Great Expectations suites run on every shard before it is written.

- `shard_records`: row-wise expectations. A row that fails one goes to the quarantine with
  the expectation's name as its reason; the shard is written without it.
- `shard_table`: table-level expectations (schema, size, uniqueness). A failure means the
  pipeline itself is wrong, so the shard is not written and the flow fails with a message
  naming the expectation.

GX 1.x validates pandas, so the runner builds a small frame of the columns and derived
values (list lengths, patch bounds) instead of converting nested patch arrays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# "heldout": rows of held-out collections and their tune groups, never trained on (clamp.data.groups)
SPLITS = ["train", "valid", "test", "heldout"]
# Control characters other than tab and newline are not ABC.
ABC_CHARSET_REGEX = r"^[^\x00-\x08\x0b-\x1f\x7f]*$"


class ShardContractError(RuntimeError):
    """A table-level expectation failed; the message names it."""


@dataclass
class ContractResult:
    success: bool
    row_failures: dict[int, str] = field(default_factory=dict)  # row index -> reason
    table_failures: list[str] = field(default_factory=list)
    statistics: dict[str, int] = field(default_factory=dict)
    docs_index: str | None = None


def contract_frame(table: pa.Table, vocab_size: int) -> pd.DataFrame:
    """Columns the expectations look at, derived from a shard table."""
    patches = table.column("patches").combine_chunks()
    flat = patches.flatten().flatten().to_numpy(zero_copy_only=False)
    offsets = patches.offsets.to_numpy()
    max_ids = np.zeros(len(table), dtype=np.int64)
    nonempty = offsets[1:] > offsets[:-1]
    if flat.size:
        starts = offsets[:-1][nonempty] * 64
        max_ids[nonempty] = np.maximum.reduceat(flat.astype(np.int64), starts)
    return pd.DataFrame(
        {
            "id": table.column("id").to_pylist(),
            "abc": table.column("abc").to_pylist(),
            "n_texts": pc.list_value_length(table.column("texts")).to_numpy(zero_copy_only=False),
            "n_patches": table.column("n_patches").to_numpy(),
            "patch_rows": np.diff(offsets),
            "patch_max_id": max_ids,
            "n_chars": table.column("n_chars").to_numpy(),
            "content_hash": table.column("content_hash").to_pylist(),
            "split": table.column("split").to_pylist(),
        }
    )


def table_frame(table: pa.Table) -> pd.DataFrame:
    """The shard's own columns, with list columns replaced by their lengths."""
    data = {}
    for name in table.schema.names:
        column = table.column(name)
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            data[name] = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        elif name in ("id", "content_hash", "split"):
            data[name] = column.to_pylist()
        else:
            data[name] = np.zeros(len(table), dtype=np.int8)  # presence is what the table suite checks
    return pd.DataFrame(data)


def _suites(gx, gxe, max_patches: int, vocab_size: int, expected_columns: list[str], max_rows: int):
    records = gx.ExpectationSuite(name="shard_records")
    for column in ("id", "abc", "content_hash", "split"):
        records.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=column))
    records.add_expectation(gxe.ExpectColumnValuesToMatchRegex(column="abc", regex=ABC_CHARSET_REGEX))
    records.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="n_texts", min_value=1))
    records.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="n_patches", min_value=1, max_value=max_patches))
    records.add_expectation(gxe.ExpectColumnPairValuesToBeEqual(column_A="n_patches", column_B="patch_rows"))
    records.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(column="patch_max_id", min_value=0, max_value=vocab_size - 1)
    )
    records.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="n_chars", min_value=1))
    records.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="split", value_set=SPLITS))

    table = gx.ExpectationSuite(name="shard_table")
    table.add_expectation(gxe.ExpectTableColumnsToMatchOrderedList(column_list=expected_columns))
    table.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=1, max_value=max_rows))
    table.add_expectation(gxe.ExpectColumnValuesToBeUnique(column="id"))
    table.add_expectation(gxe.ExpectColumnValuesToBeUnique(column="content_hash"))
    return records, table


def _expectation_name(er) -> str:
    cfg = er.expectation_config
    kwargs = cfg.kwargs
    col = kwargs.get("column") or "/".join(str(kwargs[k]) for k in ("column_A", "column_B") if k in kwargs)
    return f"{cfg.type}({col})" if col else cfg.type


def validate_shard(
    table: pa.Table,
    *,
    max_patches: int,
    vocab_size: int,
    max_rows: int,
    expected_columns: list[str],
    docs_dir: str | Path | None = None,
) -> ContractResult:
    """Run both suites on one shard table; builds Data Docs into `docs_dir` when given."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}
    if docs_dir is not None:
        ctx.add_data_docs_site(
            "shards",
            {
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(Path(docs_dir).resolve()),
                },
            },
        )
    asset = ctx.data_sources.add_pandas(name="shards").add_dataframe_asset(name="shard")
    batch = asset.add_batch_definition_whole_dataframe("whole")
    records_suite, table_suite = _suites(gx, gxe, max_patches, vocab_size, expected_columns, max_rows)
    result = ContractResult(success=True)
    # The table suite runs first: the row-wise frame can only be derived from the right schema.
    for suite in (table_suite, records_suite):
        if result.table_failures:
            break
        frame = table_frame(table) if suite is table_suite else contract_frame(table, vocab_size)
        suite = ctx.suites.add(suite)
        vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=suite.name, data=batch, suite=suite))
        actions = [gx.checkpoint.UpdateDataDocsAction(name="docs")] if docs_dir is not None else []
        checkpoint = ctx.checkpoints.add(
            gx.Checkpoint(
                name=f"{suite.name}_checkpoint",
                validation_definitions=[vd],
                actions=actions,
                result_format={"result_format": "COMPLETE"},
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": frame})
        for vr in run.run_results.values():
            for er in vr.results:
                if er.success:
                    continue
                name = _expectation_name(er)
                if suite.name == "shard_records":
                    for idx in er.result.get("unexpected_index_list") or []:
                        result.row_failures.setdefault(int(idx), f"contract:{name}")
                else:
                    result.table_failures.append(name)
    result.success = not result.table_failures
    result.statistics = {"rows": table.num_rows, "failed_rows": len(result.row_failures)}
    if docs_dir is not None:
        result.docs_index = str(Path(docs_dir) / "index.html")
    return result
