"""The global stage of a build: every prepared row decontaminated against the benchmarks,
deduplicated, given its split (grouped by tune) and cut into shard plans."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from clamp.abc.normalize import normalize_abc
from clamp.abc.notation import canonical_abc
from clamp.config import BuildConfig
from clamp.data.clean import content_hash
from clamp.data.dedup import NUM_PERM, ReferenceIndex, find_near_duplicates
from clamp.data.groups import (
    GROUPING_VERSION,
    assign_splits,
    group_rows,
    grouping_stats,
    melody_signature,
    row_title,
    title_key,
)
from clamp.data.layout import DatasetLayout, fingerprint_of
from clamp.data.shards import (
    SHARD_SCHEMA_VERSION,
    file_sha256,
    read_table,
    write_atomic,
)

log = logging.getLogger("clamp.data.build")


# --- plan (global) ----------------------------------------------------------------------------
@dataclass
class ShardPlan:
    index: int
    members: list[tuple[int, int]]  # (prepared chunk index, row index)
    fingerprint: str
    splits: list[str] | None = None  # each member's split, decided in plan; None: `split_of` of each row


@dataclass
class PlanResult:
    shards: list[ShardPlan]
    duplicates_exact: int
    duplicates_near: int
    decontaminated_exact: int
    decontaminated_near: int
    decontaminated_by_benchmark: dict[str, int]
    kept: int
    prepared: int
    decontamination: str  # "done" or why it was skipped
    grouping: dict = field(default_factory=dict)  # `clamp.data.groups.grouping_stats`, plus `split_by`


def split_settings(cfg: BuildConfig) -> dict:
    """The settings that decide the splits; part of the shard and dataset fingerprints."""
    return {
        "split_by": cfg.split_by,
        "valid_fraction": cfg.valid_fraction,
        "test_fraction": cfg.test_fraction,
        "melody_group_threshold": cfg.melody_group_threshold,
        "title_group_cap": cfg.title_group_cap,
        "holdout_collections": sorted(cfg.holdout_collections),
        "grouping_version": GROUPING_VERSION,
        # an as-written dataset splits by the canonical form's hash (`split_hash`); a key only
        # there, so canonical datasets keep their fingerprints
        **({"split_key": "canonical"} if cfg.notation == "as-written" else {}),
    }


def split_hash(abc: str, own_hash: str, notation: str) -> str:
    """The hash a row's split is drawn from: the content hash of its canonical form, however the
    dataset is written, so that a tune is in the same split of a canonical and an as-written
    build (the notation ablation compares them on the same valid and test tunes). It is the
    row's own hash in a canonical dataset."""
    return own_hash if notation == "canonical" else content_hash(normalize_abc(canonical_abc(abc)))


def plan_splits(
    prepared_chunks: list[Path], where: list[tuple[int, int]], kept: np.ndarray, hashes: list[str], cfg: BuildConfig
) -> tuple[list[str], dict]:
    """The split of every kept row (in `kept` order) and the grouping statistics.

    Reads `source_format`, `abc`, `texts` and `metadata` of the kept rows, one prepared chunk
    at a time, and keeps per row only a title key, a melody signature and whether it is in a
    held-out collection (`clamp/data/groups.py`)."""
    n = len(kept)
    title_keys: list[str | None] = [None] * n
    signatures = np.zeros((n, NUM_PERM), dtype=np.uint32)
    has_melody = np.zeros(n, dtype=bool)
    heldout = np.zeros(n, dtype=bool)
    kept_hashes = [hashes[i] for i in kept]
    holdout = set(cfg.holdout_collections)
    by_chunk: dict[int, list[int]] = {}
    for k, i in enumerate(kept):
        by_chunk.setdefault(where[i][0], []).append(k)
    for c, ks in sorted(by_chunk.items()):
        t = read_table(prepared_chunks[c], ["source_format", "abc", "texts", "metadata"])
        t = t.take(pa.array([where[kept[k]][1] for k in ks], type=pa.int64()))
        for k, fmt, abc, texts, meta in zip(
            ks,
            t.column("source_format").to_pylist(),
            t.column("abc").to_pylist(),
            t.column("texts").to_pylist(),
            t.column("metadata").to_pylist(),
            strict=True,
        ):
            title_keys[k] = title_key(row_title(texts, fmt))
            kept_hashes[k] = split_hash(abc, kept_hashes[k], cfg.notation)
            sig = melody_signature(abc)
            if sig is not None:
                signatures[k], has_melody[k] = sig, True
            if holdout:
                heldout[k] = _collection(meta) in holdout
    groups = group_rows(
        kept_hashes, title_keys, signatures, has_melody, cfg.melody_group_threshold, cfg.title_group_cap
    )
    splits = assign_splits(groups.labels, kept_hashes, heldout, cfg.valid_fraction, cfg.test_fraction, cfg.split_by)
    stats = grouping_stats(groups, kept_hashes, splits, heldout, cfg.valid_fraction, cfg.test_fraction)
    return splits, {"split_by": cfg.split_by, **stats}


def _collection(metadata: str) -> str | None:
    try:
        labels = json.loads(metadata).get("labels") or {}
        return labels.get("collection") if isinstance(labels, dict) else None
    except (ValueError, AttributeError):
        return None


def plan_shards(
    prepared_chunks: list[Path],
    layout: DatasetLayout,
    cfg: BuildConfig,
    reference: ReferenceIndex | None,
) -> PlanResult:
    """Decontaminate, dedup (first occurrence wins) and cut the kept rows into shards."""
    ids: list[str] = []
    hashes: list[str] = []
    sig_parts: list[np.ndarray] = []
    where: list[tuple[int, int]] = []
    for ci, path in enumerate(prepared_chunks):
        t = read_table(path, ["id", "content_hash", "minhash"])
        ids += t.column("id").to_pylist()
        hashes += t.column("content_hash").to_pylist()
        mh = t.column("minhash").combine_chunks()
        raw = (
            np.frombuffer(mh.buffers()[1], dtype=np.uint32)[mh.offset * 64 : (mh.offset + len(mh)) * 64]
            if len(mh)
            else np.zeros(0, np.uint32)
        )
        sig_parts.append(raw.reshape(-1, 64).copy())
        where += [(ci, r) for r in range(t.num_rows)]
    n = len(ids)
    signatures = np.concatenate(sig_parts) if sig_parts else np.zeros((0, 64), np.uint32)
    status = np.zeros(n, dtype=np.int8)  # 0 kept, 1 decontaminated, 2 duplicate
    decon_rows: dict[str, list] = {"id": [], "kind": [], "benchmark_item": [], "similarity": []}
    by_benchmark: Counter[str] = Counter()
    decon_kinds: Counter[str] = Counter()
    if reference is not None:
        for i in range(n):
            match = reference.match(hashes[i], signatures[i], cfg.near_dup_threshold)
            if match:
                status[i] = 1
                name, kind, sim = match
                decon_rows["id"].append(ids[i])
                decon_rows["kind"].append(kind)
                decon_rows["benchmark_item"].append(name)
                decon_rows["similarity"].append(sim)
                by_benchmark[name.split(":", 1)[0]] += 1
                decon_kinds[kind] += 1
    dup_rows: dict[str, list] = {"id": [], "kind": [], "duplicate_of": [], "similarity": []}
    first_by_hash: dict[str, int] = {}
    exact = 0
    for i in range(n):
        if status[i]:
            continue
        first = first_by_hash.setdefault(hashes[i], i)
        if first != i:
            status[i] = 2
            exact += 1
            dup_rows["id"].append(ids[i])
            dup_rows["kind"].append("exact")
            dup_rows["duplicate_of"].append(ids[first])
            dup_rows["similarity"].append(1.0)
    near = find_near_duplicates(signatures, status == 0, cfg.near_dup_threshold)
    near_rows = np.flatnonzero(near.duplicate_of >= 0)
    for i in near_rows:
        status[i] = 2
        dup_rows["id"].append(ids[i])
        dup_rows["kind"].append("near")
        dup_rows["duplicate_of"].append(ids[near.duplicate_of[i]])
        dup_rows["similarity"].append(float(near.similarity[i]))
    write_atomic(pa.table(dup_rows, schema=_DUP_SCHEMA), layout.dedup_dir / "duplicates.arrow")
    write_atomic(pa.table(decon_rows, schema=_DECON_SCHEMA), layout.dedup_dir / "decontaminated.arrow")

    kept = np.flatnonzero(status == 0)
    # a row's split depends on the rows it is grouped with, so it is decided here, for all rows
    splits, grouping = plan_splits(prepared_chunks, where, kept, hashes, cfg)
    chunk_hashes = [file_sha256(p) for p in prepared_chunks]
    shards = []
    for s, start in enumerate(range(0, len(kept), cfg.shard_size)):
        members = [where[i] for i in kept[start : start + cfg.shard_size]]
        shard_splits = splits[start : start + cfg.shard_size]
        fp = fingerprint_of(
            [ids[i] + ":" + hashes[i] for i in kept[start : start + cfg.shard_size]],
            [chunk_hashes[c] for c in sorted({m[0] for m in members})],
            cfg.valid_fraction,
            cfg.test_fraction,
            cfg.max_patches,
            cfg.patch_mode,
            SHARD_SCHEMA_VERSION,
            split_settings(cfg),
            shard_splits,
        )
        shards.append(ShardPlan(s, members, fp, shard_splits))
    return PlanResult(
        shards=shards,
        duplicates_exact=exact,
        duplicates_near=len(near_rows),
        decontaminated_exact=decon_kinds["exact"],
        decontaminated_near=decon_kinds["near"],
        decontaminated_by_benchmark=dict(sorted(by_benchmark.items())),
        kept=len(kept),
        prepared=n,
        decontamination="done"
        if reference is not None
        else ("skipped: decontaminate=false" if not cfg.decontaminate else "skipped: no benchmarks directory"),
        grouping=grouping,
    )


_DUP_SCHEMA = pa.schema(
    [("id", pa.string()), ("kind", pa.string()), ("duplicate_of", pa.string()), ("similarity", pa.float64())]
)
_DECON_SCHEMA = pa.schema(
    [("id", pa.string()), ("kind", pa.string()), ("benchmark_item", pa.string()), ("similarity", pa.float64())]
)
