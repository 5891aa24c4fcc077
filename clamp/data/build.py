"""build-dataset as small idempotent steps over Arrow files.

    sources --ingest--> input chunks --prepare (parallel)--> prepared chunks
            --plan (global: decontaminate, dedup, split, cut into shards)-->
            shard plans --write_shard (parallel: contract, atomic write)--> shards
            --finalize--> manifest.json, summary.json, quarantine, Data Docs

Each parallel step is one unit of work whose stats file is its completion marker, so a
rerun skips finished units. The stages are listed once, in `run_build`; an `Executor` decides
where they run: in this process (`InProcessExecutor`), in a process pool (`PoolExecutor`), or
as Prefect tasks on Dask (`flows.build_dataset.PrefectExecutor`). See docs/architecture.md.

`run_build` holds the dataset's lock (`clamp.data.lock`) for the whole build; finalize switches
the manifest atomically and deletes the old shard set only after it; a write that finds the disk
full fails in one line and leaves no partial file (docs/reliability.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa

from clamp.abc.patching import PATCH_SIZE, get_patch_mode
from clamp.config import BuildConfig, SourceSpec
from clamp.data.dedup import NUM_PERM, ReferenceIndex, find_near_duplicates
from clamp.data.executors import Executor, InProcessExecutor, PoolExecutor
from clamp.data.groups import (
    GROUPING_VERSION,
    assign_splits,
    group_rows,
    grouping_stats,
    melody_signature,
    row_title,
    split_of,
    title_key,
)
from clamp.data.lock import check_unlocked, dataset_lock
from clamp.data.prepare import (
    PREPARE_VERSION,
    PREPARED_SCHEMA,
    QUARANTINE_SCHEMA,
    PrepareConfig,
    caption_counts,
    prepare_table,
)
from clamp.data.records import RAW_SCHEMA, RawRecord, batched
from clamp.data.shards import (
    SHARD_SCHEMA,
    SHARD_SCHEMA_VERSION,
    file_sha256,
    patches_array,
    read_table,
    shard_name,
    stats_path,
    write_atomic,
    write_bytes_atomic,
    write_json_atomic,
)
from clamp.errors import DiskFullError, UserError
from clamp.text.captions import CAPTIONS_VERSION

log = logging.getLogger("clamp.data.build")
T = TypeVar("T")


class ReconciliationError(RuntimeError):
    """Counts do not add up: records were lost or double-counted."""


@dataclass(frozen=True)
class DatasetLayout:
    root: Path

    @property
    def input_dir(self) -> Path:
        return self.root / "_work" / "input"

    @property
    def prepared_dir(self) -> Path:
        return self.root / "_work" / "prepared"

    @property
    def shards_dir(self) -> Path:
        return self.root / "shards"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def dedup_dir(self) -> Path:
        return self.root / "dedup"

    @property
    def docs_dir(self) -> Path:
        return self.root / "data_docs"

    @property
    def build_config_file(self) -> Path:
        return self.root / "build_config.json"

    def inside(self, path: Path) -> Path:
        """`path`, after checking it lies in this dataset: a build deletes nothing outside it."""
        if not Path(path).resolve().is_relative_to(self.root.resolve()):
            raise RuntimeError(f"refusing to touch {path}: outside the dataset folder {self.root}")
        return Path(path)


# --- the dataset folder's identity ------------------------------------------------------------
def check_dataset_claim(layout: DatasetLayout, cfg: BuildConfig, overwrite: bool = False) -> bool:
    """Whether this build may write into `layout.root`; True when `overwrite` must empty it first.

    A dataset folder is built from one set of sources (`build_config.json` records them and
    their fingerprint). Building other sources into it would mix two datasets (and finalize
    would delete the first one's shards as stale), so it is refused with a `UserError`
    unless `overwrite`. Folders written before this record existed (they hold a manifest or
    a work folder) are adopted as they are. Reads only: entry points call it before starting.
    """
    root = layout.root
    if not root.is_dir() or not any(root.iterdir()):
        return False
    if layout.build_config_file.is_file():
        old = json.loads(layout.build_config_file.read_text(encoding="utf-8"))
        same = old.get("sources_fingerprint") == cfg.sources_fingerprint()
    else:  # written before this record existed, or not a dataset folder at all
        kinds = _legacy_source_kinds(layout)
        same = kinds is not None and kinds <= {s.kind for s in cfg.sources}
        what = f"{', '.join(sorted(kinds))}, recorded before source fingerprints" if kinds else "not a dataset folder"
        old = {"config": {"sources": what}}
    if same:
        return False
    if not overwrite:
        was = _describe_sources(old.get("config", {}).get("sources"))
        now = _describe_sources(cfg.model_dump(mode="json")["sources"])
        raise UserError(
            f"{root} holds a dataset built from other sources ({was}) than this build ({now}):"
            " choose another name, or pass --overwrite to replace it"
        )
    return True


def claim_dataset(layout: DatasetLayout, cfg: BuildConfig, overwrite: bool = False) -> None:
    """`check_dataset_claim`, then empty the folder if overwriting, and record the sources.

    Overwriting keeps `manifest.json` and the shards it lists: readers may be reading them, and
    the old dataset stays whole until finalize switches the manifest and deletes them."""
    if check_dataset_claim(layout, cfg, overwrite):
        log.warning("--overwrite: emptying %s (its manifest and listed shards go after the new manifest)", layout.root)
        _empty_except(layout, layout.root, _listed_files(layout))
    record = {"sources_fingerprint": cfg.sources_fingerprint(),
              "config": cfg.model_dump(mode="json", exclude=set(BuildConfig.RUNTIME_FIELDS))}
    write_json_atomic(record, layout.build_config_file)


def _listed_files(layout: DatasetLayout) -> set[Path]:
    """`manifest.json` and the shard files it lists (absolute paths), if there is a manifest."""
    manifest_file = layout.root / "manifest.json"
    try:
        shards = json.loads(manifest_file.read_text(encoding="utf-8")).get("shards", [])
    except (OSError, ValueError, AttributeError):
        return set()
    listed = {manifest_file.absolute()}
    for entry in shards if isinstance(shards, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            listed.add((layout.root / entry["path"]).absolute())
    return listed


def _empty_except(layout: DatasetLayout, folder: Path, keep: set[Path]) -> None:
    """Delete everything in `folder` but the paths in `keep` (and the folders holding them)."""
    import shutil

    for child in folder.iterdir():
        layout.inside(child)
        here = child.absolute()
        if here in keep:
            continue
        if child.is_dir() and not child.is_symlink():
            if any(k.is_relative_to(here) for k in keep):
                _empty_except(layout, child, keep)
            else:
                shutil.rmtree(child)
        else:
            child.unlink()


def _legacy_source_kinds(layout: DatasetLayout) -> set[str] | None:
    """The source kinds of a dataset written before `build_config.json` existed, read from
    its first shard or input chunk (every row names its source); None when there is none."""
    candidates = sorted(layout.shards_dir.glob("shard-*.arrow"))[:1] + sorted(layout.input_dir.glob("chunk-*.arrow"))[:1]
    for path in candidates:
        try:
            return set(read_table(path, ["source"]).column("source").to_pylist())
        except (OSError, KeyError, pa.ArrowException):
            continue
    return None


def _describe_sources(sources: object) -> str:
    if not isinstance(sources, list):
        return str(sources)
    return ", ".join(
        s.get("kind", "?") + (f" {s['path']}" if s.get("path") else "") + (f" {','.join(s['seeds'])}" if s.get("seeds") else "")
        for s in sources if isinstance(s, dict)
    )


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


# --- sources ------------------------------------------------------------------------------
def iter_source(spec: SourceSpec, cache_dir: Path) -> Iterator[RawRecord]:
    if spec.kind == "music21":
        from clamp.data.sources.corpus import iter_corpus

        yield from iter_corpus(tuple(spec.formats), spec.limit, spec.path_filter, cache_dir)
    elif spec.kind == "local":
        from clamp.data.sources.local import iter_local

        if not spec.path:
            raise ValueError("a local source needs `path`")
        yield from iter_local(spec.path, spec.limit, spec.license)
    elif spec.kind == "web":
        yield from iter_web(spec, cache_dir)
    else:  # pragma: no cover - pydantic rejects other kinds
        raise ValueError(f"unknown source kind {spec.kind}")


def iter_web(spec: SourceSpec, cache_dir: Path) -> Iterator[RawRecord]:
    """Crawled files, split into tunes like local ABC files.

    The crawler yields each new file once (its state persists), so every crawled record is
    stored in the cache as it arrives and the source replays the whole store in crawl order:
    a rebuild sees the same records plus whatever is new.
    """
    from clamp.abc.tunes import split_tunes
    from clamp.data.records import records_to_table, table_to_records
    from clamp.data.sources.web import CrawlConfig, Crawler

    state = cache_dir / "crawl" / _fingerprint(spec.seeds, spec.allowed_hosts)[:12]
    store = state / "records"
    store.mkdir(parents=True, exist_ok=True)
    config = CrawlConfig(
        seeds=spec.seeds,
        allowed_hosts=spec.allowed_hosts,
        max_depth=spec.max_depth,
        per_host_delay_s=spec.per_host_delay_s,
        max_pages=spec.max_pages,
        state_dir=state,
    )
    seq = len(list(store.glob("*.arrow")))
    for record in Crawler(config).crawl():
        write_atomic(records_to_table([record]), store / f"{seq:08d}.arrow")
        seq += 1
    count = 0
    for part in sorted(store.glob("*.arrow")):
        for record in table_to_records(read_table(part)):
            pieces = [record]
            if record.format == "abc" and b"\0" not in record.content:
                tunes = split_tunes(record.content.decode("utf-8", errors="surrogateescape"))
                if len(tunes) > 1:
                    pieces = [
                        RawRecord(**{**asdict(record), "id": f"{record.id}#{i}", "content": t.encode("utf-8", errors="surrogateescape")})
                        for i, t in enumerate(tunes, start=1)
                    ]
            for piece in pieces:
                yield piece
                count += 1
                if spec.limit is not None and count >= spec.limit:
                    return


def iter_records(cfg: BuildConfig) -> Iterator[RawRecord]:
    for spec in cfg.sources:
        yield from iter_source(spec, cfg.cache_dir)


# --- ingest -------------------------------------------------------------------------------
def ingest(
    records: Iterable[RawRecord], layout: DatasetLayout, chunk_size: int, max_conversions: int | None = None
) -> list[Path]:
    """Stream records into fixed-size input chunk files; identical chunks are left untouched."""
    layout.input_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for i, table in enumerate(batched(records, chunk_size, max_conversions)):
        path = layout.input_dir / f"chunk-{i:05d}.arrow"
        data = _ipc_bytes(table)
        if not path.is_file() or path.read_bytes() != data:
            write_bytes_atomic(data, path)
        paths.append(path)
    for stale in sorted(layout.input_dir.glob("chunk-*.arrow"))[len(paths) :]:
        layout.inside(stale).unlink()  # the input shrank since the last run
    return paths


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


# --- prepare (parallel unit) ----------------------------------------------------------------
def prepare_config(cfg: BuildConfig) -> PrepareConfig:
    return PrepareConfig(
        patch_mode=cfg.patch_mode,
        notation=cfg.notation,
        max_patches=cfg.max_patches,
        max_record_bytes=cfg.max_record_bytes,
        conversion_timeout_s=cfg.conversion_timeout_s,
        conversion_cache_dir=str(cfg.cache_dir / "conversions"),
    )


def prepared_paths_for(input_path: Path, layout: DatasetLayout) -> tuple[Path, Path, Path]:
    stem = input_path.stem
    base = layout.prepared_dir
    return base / f"{stem}.arrow", base / f"{stem}.quarantine.arrow", base / f"{stem}.stats.json"


def prepare_chunk(input_path: Path, layout: DatasetLayout, pcfg: PrepareConfig) -> dict:
    """Convert, clean, normalize and patch one input chunk (skipped when already done)."""
    out, quarantine, stats_file = prepared_paths_for(input_path, layout)
    semantic = {k: v for k, v in asdict(pcfg).items() if k != "conversion_cache_dir"}
    fingerprint = _fingerprint(file_sha256(input_path), semantic, PREPARE_VERSION, CAPTIONS_VERSION)
    if stats_file.is_file() and out.is_file() and quarantine.is_file():
        done = json.loads(stats_file.read_text())
        if done.get("fingerprint") == fingerprint:
            return {**done, "skipped": True}
    start = time.perf_counter()
    raw = read_table(input_path)
    prepared, bad = prepare_table(raw, pcfg)
    write_atomic(prepared, out)
    write_atomic(bad, quarantine)
    formats = Counter(raw.column("format").to_pylist())
    stats = {
        "chunk": input_path.stem,
        "fingerprint": fingerprint,
        "records_in": raw.num_rows,
        "prepared": prepared.num_rows,
        "quarantined": bad.num_rows,
        "formats": dict(sorted(formats.items())),
        "converted": sum(n for f, n in formats.items() if f != "abc"),
        "seconds": round(time.perf_counter() - start, 3),
    }
    write_json_atomic(stats, stats_file)
    return {**stats, "skipped": False}


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
    }


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
    holdout = set(cfg.holdout_collections)
    by_chunk: dict[int, list[int]] = {}
    for k, i in enumerate(kept):
        by_chunk.setdefault(where[i][0], []).append(k)
    for c, ks in sorted(by_chunk.items()):
        t = read_table(prepared_chunks[c], ["source_format", "abc", "texts", "metadata"])
        t = t.take(pa.array([where[kept[k]][1] for k in ks], type=pa.int64()))
        for k, fmt, abc, texts, meta in zip(ks, t.column("source_format").to_pylist(), t.column("abc").to_pylist(),
                                            t.column("texts").to_pylist(), t.column("metadata").to_pylist(), strict=True):
            title_keys[k] = title_key(row_title(texts, fmt))
            sig = melody_signature(abc)
            if sig is not None:
                signatures[k], has_melody[k] = sig, True
            if holdout:
                heldout[k] = _collection(meta) in holdout
    kept_hashes = [hashes[i] for i in kept]
    groups = group_rows(kept_hashes, title_keys, signatures, has_melody, cfg.melody_group_threshold, cfg.title_group_cap)
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
        raw = np.frombuffer(mh.buffers()[1], dtype=np.uint32)[mh.offset * 64 : (mh.offset + len(mh)) * 64] if len(mh) else np.zeros(0, np.uint32)
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
        fp = _fingerprint(
            [ids[i] + ":" + hashes[i] for i in kept[start : start + cfg.shard_size]],
            [chunk_hashes[c] for c in sorted({m[0] for m in members})],
            cfg.valid_fraction, cfg.test_fraction, cfg.max_patches, cfg.patch_mode, SHARD_SCHEMA_VERSION,
            split_settings(cfg), shard_splits,
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
        decontamination="done" if reference is not None else (
            "skipped: decontaminate=false" if not cfg.decontaminate else "skipped: no benchmarks directory"),
        grouping=grouping,
    )


_DUP_SCHEMA = pa.schema([("id", pa.string()), ("kind", pa.string()), ("duplicate_of", pa.string()), ("similarity", pa.float64())])
_DECON_SCHEMA = pa.schema([("id", pa.string()), ("kind", pa.string()), ("benchmark_item", pa.string()), ("similarity", pa.float64())])


# --- write shard (parallel unit) ------------------------------------------------------------
def assemble_shard(plan: ShardPlan, prepared_chunks: list[Path], cfg: BuildConfig) -> pa.Table:
    """The shard table for a plan, in plan order."""
    by_chunk: dict[int, list[int]] = {}
    for c, r in plan.members:
        by_chunk.setdefault(c, []).append(r)
    pieces = []
    for c in sorted(by_chunk):
        t = read_table(prepared_chunks[c])
        pieces.append(t.take(pa.array(by_chunk[c], type=pa.int64())))
    prepared = pa.concat_tables(pieces) if pieces else PREPARED_SCHEMA.empty_table()
    patch_bytes = prepared.column("patch_bytes").to_pylist()
    hashes = prepared.column("content_hash").to_pylist()
    if plan.splits is not None:  # the plan's splits, in the order the rows were read above
        planned = dict(zip(plan.members, plan.splits, strict=True))
        splits = [planned[(c, r)] for c in sorted(by_chunk) for r in by_chunk[c]]
    else:
        splits = [split_of(h, cfg.valid_fraction, cfg.test_fraction) for h in hashes]
    return pa.table(
        {
            "id": prepared.column("id"),
            "source": prepared.column("source"),
            "source_format": prepared.column("source_format"),
            "abc": prepared.column("abc"),
            "texts": prepared.column("texts"),
            "metadata": prepared.column("metadata"),
            "provenance": prepared.column("provenance"),
            "license": prepared.column("license"),
            "patches": patches_array(patch_bytes),
            "n_patches": pa.array([len(b) // PATCH_SIZE for b in patch_bytes], type=pa.int32()),
            "n_chars": prepared.column("n_chars"),
            "content_hash": prepared.column("content_hash"),
            "split": pa.array(splits, type=pa.string()),
        },
        schema=SHARD_SCHEMA,
    )


def write_shard(plan: ShardPlan, prepared_chunks: list[Path], layout: DatasetLayout, cfg: BuildConfig) -> dict:
    """Assemble, validate (data contract) and atomically write one shard; skipped when done."""
    from data_contracts import ShardContractError, validate_shard

    path = layout.shards_dir / shard_name(plan.index, plan.fingerprint)
    marker = stats_path(path)
    if marker.is_file() and path.is_file():
        done = json.loads(marker.read_text())
        if done.get("fingerprint") == plan.fingerprint:
            return {**done, "skipped": True}
    start = time.perf_counter()
    table = assemble_shard(plan, prepared_chunks, cfg)
    mode = get_patch_mode(cfg.patch_mode)
    docs = layout.docs_dir / _docs_name(path.name) if cfg.data_docs else None
    result = validate_shard(
        table,
        max_patches=cfg.max_patches,
        vocab_size=mode.vocab_size,
        max_rows=cfg.shard_size,
        expected_columns=SHARD_SCHEMA.names,
        docs_dir=docs,
    )
    if not result.success:
        raise ShardContractError(f"{path.name} failed the shard contract: {', '.join(result.table_failures)}")
    quarantine_path = layout.quarantine_dir / f"contract-{path.stem}.arrow"
    bad_rows = sorted(result.row_failures)
    bad = table.take(pa.array(bad_rows, type=pa.int64()))
    write_atomic(
        pa.table(
            {
                "id": bad.column("id"),
                "source": bad.column("source"),
                "format": bad.column("source_format"),
                "stage": pa.array(["contract"] * len(bad_rows), type=pa.string()),
                "reason": pa.array([result.row_failures[i] for i in bad_rows], type=pa.string()),
                "detail": pa.array([""] * len(bad_rows), type=pa.string()),
                "provenance": bad.column("provenance"),
                "content": pa.array([a.encode("utf-8", errors="surrogateescape") for a in bad.column("abc").to_pylist()], type=pa.large_binary()),
            },
            schema=QUARANTINE_SCHEMA,
        ),
        quarantine_path,
    )
    if bad_rows:
        keep = np.setdiff1d(np.arange(table.num_rows), np.array(bad_rows))
        table = table.take(pa.array(keep, type=pa.int64()))
    write_atomic(table, path)
    n_patches = table.column("n_patches").to_numpy()
    n_chars = table.column("n_chars").to_numpy()
    splits = Counter(table.column("split").to_pylist())
    stats = {
        "shard": path.name,
        "fingerprint": plan.fingerprint,
        "rows": table.num_rows,
        "contract_quarantined": len(bad_rows),
        "contract_reasons": dict(Counter(result.row_failures.values())),
        "patches": int(n_patches.sum()),
        "chars": int(n_chars.sum()),
        "splits": dict(sorted(splits.items())),
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "seconds": round(time.perf_counter() - start, 3),
    }
    write_json_atomic(stats, marker)
    return {**stats, "skipped": False}


# --- finalize -----------------------------------------------------------------------------
@dataclass
class BuildSummary:
    name: str
    dataset_dir: str
    patch_mode: str
    records_in: int
    rows_written: int
    quarantined: int
    duplicates: int
    decontaminated: int
    quarantine_reasons: dict[str, int]
    duplicates_by_kind: dict[str, int]
    decontaminated_by_benchmark: dict[str, int]
    decontamination: str
    formats_in: dict[str, int]
    converted: int
    splits: dict[str, int]
    shards: int
    shards_skipped: int
    chunks_skipped: int
    patches: int
    chars: int
    patches_per_char: float
    median_patches: float
    median_patches_per_char: float
    seconds: dict[str, float] = field(default_factory=dict)
    throughput: dict[str, float] = field(default_factory=dict)
    # captions (docs/shard-schema.md, "Captions and labels"): share of written rows with 3 or
    # more text candidates, distinct caption sentences in the shards, and prepared rows whose
    # analysis failed (they kept their cleaned raw texts only)
    caption_coverage: float = 0.0
    distinct_captions: int = 0
    caption_failures: int = 0
    # the split by tune group (docs/shard-schema.md, "Split assignment"): `split_by`, groups of
    # more than one row, groups the per-row rule split across splits (`crossed_before`) and the
    # build's split (`crossed_after`), rows moved, held-out rows; counted in plan, before the contract
    grouping: dict[str, int | str] = field(default_factory=dict)

    def reconcile(self) -> None:
        accounted = self.rows_written + self.quarantined + self.duplicates + self.decontaminated
        if accounted != self.records_in:
            raise ReconciliationError(
                f"records in {self.records_in} != written {self.rows_written} + quarantined {self.quarantined}"
                f" + duplicates {self.duplicates} + decontaminated {self.decontaminated} (= {accounted})"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def finalize(
    layout: DatasetLayout,
    cfg: BuildConfig,
    chunk_stats: list[dict],
    plan: PlanResult,
    shard_stats: list[dict],
    seconds: dict[str, float],
) -> BuildSummary:
    """Write the consolidated quarantine, manifest and summary; check the counts reconcile."""
    q_parts = [read_table(prepared_paths_for(layout.input_dir / f"{s['chunk']}.arrow", layout)[1]) for s in chunk_stats]
    q_parts += [read_table(layout.quarantine_dir / f"contract-{Path(s['shard']).stem}.arrow") for s in shard_stats]
    quarantine = pa.concat_tables(q_parts) if q_parts else QUARANTINE_SCHEMA.empty_table()
    write_atomic(quarantine, layout.quarantine_dir / "quarantine.arrow")
    reasons = Counter(quarantine.column("reason").to_pylist())

    lengths: list[np.ndarray] = []
    ratios: list[np.ndarray] = []
    with_three_texts = 0
    caption_keys: set[bytes] = set()
    for s in shard_stats:
        t = read_table(layout.shards_dir / s["shard"], ["n_patches", "n_chars", "texts", "metadata"])
        p, c = t.column("n_patches").to_numpy(), t.column("n_chars").to_numpy()
        lengths.append(p)
        ratios.append(p / np.maximum(c, 1))
        rich, keys = _caption_stats(t)
        with_three_texts += rich
        caption_keys |= keys
    all_p = np.concatenate(lengths) if lengths else np.zeros(0)
    all_r = np.concatenate(ratios) if ratios else np.zeros(0)
    patches = sum(s["patches"] for s in shard_stats)
    chars = sum(s["chars"] for s in shard_stats)
    formats: Counter[str] = Counter()
    for s in chunk_stats:
        formats.update(s["formats"])
    splits: Counter[str] = Counter()
    for s in shard_stats:
        splits.update(s["splits"])
    records_in = sum(s["records_in"] for s in chunk_stats)
    rows_written = sum(s["rows"] for s in shard_stats)
    summary = BuildSummary(
        name=cfg.name,
        dataset_dir=str(layout.root),
        patch_mode=cfg.patch_mode,
        records_in=records_in,
        rows_written=rows_written,
        quarantined=quarantine.num_rows,
        duplicates=plan.duplicates_exact + plan.duplicates_near,
        decontaminated=plan.decontaminated_exact + plan.decontaminated_near,
        quarantine_reasons=dict(reasons.most_common()),
        duplicates_by_kind={"exact": plan.duplicates_exact, "near": plan.duplicates_near},
        decontaminated_by_benchmark=plan.decontaminated_by_benchmark,
        decontamination=plan.decontamination,
        formats_in=dict(sorted(formats.items())),
        converted=sum(s["converted"] for s in chunk_stats),
        splits=dict(sorted(splits.items())),
        shards=len(shard_stats),
        shards_skipped=sum(1 for s in shard_stats if s.get("skipped")),
        chunks_skipped=sum(1 for s in chunk_stats if s.get("skipped")),
        patches=patches,
        chars=chars,
        patches_per_char=round(patches / chars, 4) if chars else 0.0,
        median_patches=float(statistics.median(all_p)) if len(all_p) else 0.0,
        median_patches_per_char=round(float(statistics.median(all_r)), 4) if len(all_r) else 0.0,
        seconds={k: round(v, 2) for k, v in seconds.items()},
        throughput={
            f"{k}_records_per_s": round(records_in / v, 1) for k, v in seconds.items() if v > 0 and records_in
        },
        caption_coverage=round(with_three_texts / rows_written, 4) if rows_written else 0.0,
        distinct_captions=len(caption_keys),
        caption_failures=sum(
            caption_counts(prepared_paths_for(layout.input_dir / f"{s['chunk']}.arrow", layout)[0])["caption_failures"]
            for s in chunk_stats
        ),
        grouping=dict(plan.grouping),
    )
    summary.reconcile()
    manifest = {
        "name": cfg.name,
        "schema_version": SHARD_SCHEMA_VERSION,
        "schema": [f"{f.name}: {f.type}" for f in SHARD_SCHEMA],
        "patch_mode": cfg.patch_mode,
        "notation": cfg.notation,
        "max_patches": cfg.max_patches,
        "vocab_size": get_patch_mode(cfg.patch_mode).vocab_size,
        "rows": summary.rows_written,
        "splits": summary.splits,
        "split": split_settings(cfg),
        "shards": [
            {"path": f"shards/{s['shard']}", "rows": s["rows"], "sha256": s["sha256"], "bytes": s["bytes"]}
            for s in shard_stats
        ],
    }
    manifest["fingerprint"] = _fingerprint(manifest["shards"], cfg.patch_mode, cfg.max_patches, cfg.notation,
                                           manifest["split"])
    # the switch: one atomic rename replaces the old shard list by the new one. Only after it
    # may the shards that only the old manifest lists go.
    write_json_atomic(manifest, layout.root / "manifest.json")
    remove_unlisted_shards(layout, {s["shard"] for s in shard_stats})
    write_json_atomic(summary.to_dict(), layout.root / "summary.json")
    if cfg.data_docs:
        _write_docs_index(layout, shard_stats)
    return summary


def _caption_stats(shard: pa.Table) -> tuple[int, set[bytes]]:
    """(rows of the shard with 3 or more text candidates, 8-byte keys of its captions).

    A row's captions are its last `n_captions` texts (the count is in its metadata JSON);
    they are kept as BLAKE2b digests so that a large dataset's distinct count stays small.
    """
    rich = 0
    keys: set[bytes] = set()
    for texts, meta in zip(shard.column("texts").to_pylist(), shard.column("metadata").to_pylist(), strict=True):
        rich += len(texts) >= 3
        try:
            n = int(json.loads(meta).get("n_captions", 0))
        except (ValueError, AttributeError, TypeError):
            n = 0
        if n > 0:
            keys.update(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest() for t in texts[-n:])
    return rich, keys


def _docs_name(shard_file: str) -> str:
    """A shard's Data Docs folder, `shard-00003`: by position, so a rebuild replaces it in place
    (Data Docs are a report, not data a reader must see whole)."""
    return shard_file.split(".")[0][: len("shard-00000")]


def _write_docs_index(layout: DatasetLayout, shard_stats: list[dict]) -> None:
    items = "\n".join(
        f'<li><a href="{_docs_name(s["shard"])}/index.html">{s["shard"]}</a>: {s["rows"]} rows,'
        f" {s['contract_quarantined']} quarantined by the contract</li>"
        for s in shard_stats
    )
    html = f"<!doctype html><title>Data Docs</title><h1>Shard contract results</h1><ul>\n{items}\n</ul>\n"
    write_bytes_atomic(html.encode("utf-8"), layout.docs_dir / "index.html")


def load_reference(cfg: BuildConfig) -> tuple[ReferenceIndex | None, dict]:
    if not cfg.decontaminate:
        return None, {"skipped": "decontaminate=false"}
    if cfg.benchmarks_dir is None or not Path(cfg.benchmarks_dir).is_dir():
        log.warning("no benchmarks directory (set CLAMP_BENCHMARKS_DIR): decontamination skipped")
        return None, {"skipped": "no benchmarks directory"}
    from clamp.data.decontam import load_reference_index

    return load_reference_index(Path(cfg.benchmarks_dir), cfg.cache_dir, cfg.notation)


# --- the stage list -----------------------------------------------------------------------------
def ingest_sources(cfg: BuildConfig, records: Iterable[RawRecord] | None = None) -> list[Path]:
    """Stage `ingest`: every source (or the given records) into input chunks."""
    layout = DatasetLayout(cfg.dataset_dir)
    return ingest(records if records is not None else iter_records(cfg), layout, cfg.chunk_size, cfg.chunk_max_conversions)


def plan_build(cfg: BuildConfig, inputs: list[Path]) -> PlanResult:
    """Stage `plan`: decontaminate against the benchmarks, dedup, split and cut into shards."""
    layout = DatasetLayout(cfg.dataset_dir)
    reference, _ = load_reference(cfg)
    # shards of an earlier plan stay until finalize has switched the manifest (readers may use them)
    return plan_shards([prepared_paths_for(p, layout)[0] for p in inputs], layout, cfg, reference)


def run_build(
    cfg: BuildConfig,
    executor: Executor | None = None,
    records: Iterable[RawRecord] | None = None,
    overwrite: bool = False,
) -> BuildSummary:
    """Build the dataset: the one list of stages, run by `executor` (default: in this process).

    The dataset's lock is held from before the first write to after the manifest switch, in the
    process that calls this (for the Prefect flow: the flow run), whatever executor runs the stages.
    """
    layout = DatasetLayout(cfg.dataset_dir)
    with dataset_lock(layout.root):
        try:
            return _run_stages(cfg, executor or InProcessExecutor(), layout, records, overwrite)
        except OSError as exc:  # a write outside the shard helpers (caches, Data Docs) found no room
            error = DiskFullError.wrap(exc, exc.filename or f"a file of {layout.root} or its caches")
            if error is None:
                raise
            raise error from exc


def _run_stages(
    cfg: BuildConfig, executor: Executor, layout: DatasetLayout, records: Iterable[RawRecord] | None, overwrite: bool
) -> BuildSummary:
    claim_dataset(layout, cfg, overwrite)
    seconds: dict[str, float] = {}

    @contextmanager
    def timed(stage: str) -> Iterator[None]:
        t = time.perf_counter()
        yield
        seconds[stage] = time.perf_counter() - t

    with timed("ingest"):
        inputs = executor.run("ingest", ingest_sources, cfg, records)
    log.info("ingested %d input chunks", len(inputs))
    with timed("prepare"):
        chunk_stats = executor.map("prepare", prepare_chunk, inputs, layout=layout, pcfg=prepare_config(cfg))
    with timed("plan"):
        plan = executor.run("plan", plan_build, cfg, inputs)
    log.info("kept %d of %d prepared rows in %d shards", plan.kept, plan.prepared, len(plan.shards))
    prepared = [prepared_paths_for(p, layout)[0] for p in inputs]
    with timed("write_shards"):
        shard_stats = executor.map("write_shards", write_shard, plan.shards, prepared_chunks=prepared, layout=layout, cfg=cfg)
    return executor.run("finalize", finalize, layout, cfg, chunk_stats, plan, shard_stats, seconds)


def build_dataset(
    cfg: BuildConfig,
    records: Iterable[RawRecord] | None = None,
    executor: Executor | None = None,
    overwrite: bool = False,
) -> BuildSummary:
    """Build without Prefect: in this process, or with `executor=PoolExecutor(n)`."""
    return run_build(cfg, executor, records, overwrite)


def check_dataset_lock(layout: DatasetLayout) -> None:
    """Refuse at once (`DatasetLockedError`) if another build holds the dataset; writes nothing.
    Entry points call it before slow start-ups; `run_build` takes the lock itself."""
    check_unlocked(layout.root)


def remove_unlisted_shards(layout: DatasetLayout, listed: set[str]) -> None:
    """After the manifest switch: delete the shards it does not list (an earlier plan's, or the
    overwritten dataset's) with their markers and contract quarantine, the Data Docs of shards
    no longer planned, and the temporary files a killed build left. Runs under the dataset lock."""
    import shutil

    for path in sorted(layout.shards_dir.glob("shard-*.arrow")):
        if path.name not in listed:
            layout.inside(path).unlink()
            stats_path(path).unlink(missing_ok=True)
            (layout.quarantine_dir / f"contract-{path.stem}.arrow").unlink(missing_ok=True)
    docs = {_docs_name(name) for name in listed}
    for folder in sorted(layout.docs_dir.glob("shard-*")) if layout.docs_dir.is_dir() else []:
        if folder.is_dir() and folder.name not in docs:
            shutil.rmtree(layout.inside(folder))
    # `clamp.io.atomic_path` temporaries in the build's own folders and files: under the lock, no
    # build writes them now (`clamp search` writes its cache at the top level: left alone)
    own = [layout.shards_dir, layout.quarantine_dir, layout.dedup_dir, layout.root / "_work"]
    leftovers = [t for d in own if d.is_dir() for t in d.rglob(".*.tmp-*")]
    for name in ("manifest.json", "summary.json", layout.build_config_file.name):
        leftovers += layout.root.glob(f".{name}.tmp-*")
    for stale in leftovers:
        if stale.is_file():
            layout.inside(stale).unlink(missing_ok=True)


__all__ = [
    "RAW_SCHEMA",
    "BuildSummary",
    "DatasetLayout",
    "PlanResult",
    "ShardPlan",
    "Executor",
    "InProcessExecutor",
    "PoolExecutor",
    "build_dataset",
    "check_dataset_claim",
    "check_dataset_lock",
    "claim_dataset",
    "ingest_sources",
    "plan_build",
    "run_build",
    "finalize",
    "ingest",
    "load_reference",
    "plan_shards",
    "prepare_chunk",
    "write_shard",
]
