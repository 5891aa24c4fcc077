"""build-dataset as small idempotent steps over Arrow files.

    sources --ingest--> input chunks --prepare (parallel)--> prepared chunks
            --plan (global: decontaminate, dedup, split, cut into shards)-->
            shard plans --write_shard (parallel: contract, atomic write)--> shards
            [--views (parallel): each train tune's MIDI route, when `midi_views`-->]
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

import contextvars
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa

from clamp.abc.patching import PATCH_SIZE, get_patch_mode
from clamp.config import BuildConfig
from clamp.data.executors import Executor, InProcessExecutor, PoolExecutor
from clamp.data.finalize import BuildSummary, docs_name, finalize, load_reference
from clamp.data.groups import (
    split_of,
)
from clamp.data.ingest import crawl_in_rounds, crawl_jobs, ingest, iter_ingest, iter_records
from clamp.data.layout import (
    DatasetLayout,
    check_dataset_claim,
    claim_dataset,
    fingerprint_of,
    prepared_paths_for,
)
from clamp.data.lock import check_unlocked, dataset_lock
from clamp.data.plan import PlanResult, ShardPlan, plan_shards
from clamp.data.prepare import (
    PREPARE_VERSION,
    PREPARED_SCHEMA,
    QUARANTINE_SCHEMA,
    PrepareConfig,
    prepare_table,
)
from clamp.data.records import RAW_SCHEMA, RawRecord
from clamp.data.shards import (
    SHARD_SCHEMA,
    file_sha256,
    patches_array,
    read_table,
    shard_name,
    stats_path,
    write_atomic,
    write_json_atomic,
)
from clamp.data.views import write_chord_views, write_midi_views
from clamp.errors import DiskFullError
from clamp.text.captions import CAPTIONS_VERSION

log = logging.getLogger("clamp.data.build")
T = TypeVar("T")


# --- prepare (parallel unit) ----------------------------------------------------------------
def prepare_chunk(input_path: Path, layout: DatasetLayout, pcfg: PrepareConfig) -> dict:
    """Convert, clean, normalize and patch one input chunk (skipped when already done)."""
    out, quarantine, stats_file = prepared_paths_for(input_path, layout)
    semantic = pcfg.semantic()
    fingerprint = fingerprint_of(file_sha256(input_path), semantic, PREPARE_VERSION, CAPTIONS_VERSION)
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
    docs = layout.docs_dir / docs_name(path.name) if cfg.data_docs else None
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
                "content": pa.array(
                    [a.encode("utf-8", errors="surrogateescape") for a in bad.column("abc").to_pylist()],
                    type=pa.large_binary(),
                ),
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


# --- the stage list -----------------------------------------------------------------------------
def ingest_sources(cfg: BuildConfig, records: Iterable[RawRecord] | None = None) -> list[Path]:
    """Stage `ingest`: every source (or the given records) into input chunks."""
    layout = DatasetLayout(cfg.dataset_dir)
    return ingest(
        records if records is not None else iter_records(cfg), layout, cfg.chunk_size, cfg.chunk_max_conversions
    )


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

    jobs = crawl_jobs(cfg) if records is None else []
    # web sources split into shares: crawled in parallel (in rounds) while ingest reads their files
    crawl = CrawlStage(executor, jobs, seconds) if jobs else None
    pcfg = PrepareConfig.from_build(cfg)
    if records is None and any(spec.kind == "web" for spec in cfg.sources):
        # a crawl streams: each input chunk is prepared while ingest still crawls (or reads) the next
        inputs, chunk_stats = _ingest_and_prepare(cfg, executor, layout, pcfg, seconds, crawl)
        if crawl is not None:
            crawl.join()  # the crawl's own error, if it failed
    else:
        with timed("ingest"):
            inputs = executor.run("ingest", ingest_sources, cfg, records)
        log.info("ingested %d input chunks", len(inputs))
        with timed("prepare"):
            chunk_stats = executor.map("prepare", prepare_chunk, inputs, layout=layout, pcfg=pcfg)
    with timed("plan"):
        plan = executor.run("plan", plan_build, cfg, inputs)
    log.info("kept %d of %d prepared rows in %d shards", plan.kept, plan.prepared, len(plan.shards))
    prepared = [prepared_paths_for(p, layout)[0] for p in inputs]
    with timed("write_shards"):
        shard_stats = executor.map(
            "write_shards", write_shard, plan.shards, prepared_chunks=prepared, layout=layout, cfg=cfg
        )
    view_stats: list[dict] = []
    if cfg.midi_views:  # each train tune's MIDI route: a second view training can draw
        with timed("views"):
            view_stats = executor.map("views", write_midi_views, shard_stats, layout=layout, cfg=cfg)
    if cfg.chord_views:  # each train tune with a chord symbol per bar (as-written builds only)
        with timed("chord_views"):
            view_stats += executor.map("chord_views", write_chord_views, shard_stats, layout=layout, cfg=cfg)
    return executor.run("finalize", finalize, layout, cfg, chunk_stats, plan, shard_stats, seconds, view_stats)


class CrawlStage:
    """The `crawl` stage in a thread of the build's process (`crawl_in_rounds` through the
    executor), so that ingest reads the shares' files as they are stored, while `running()`."""

    def __init__(self, executor: Executor, jobs: list, seconds: dict[str, float]) -> None:
        self.error: BaseException | None = None
        # a copy of this thread's context: under Prefect it holds the flow run the crawl tasks join
        context = contextvars.copy_context()
        self.thread = threading.Thread(
            target=context.run, args=(self._crawl, executor, jobs, seconds), name="crawl-stage", daemon=True
        )
        self.thread.start()

    def _crawl(self, executor: Executor, jobs: list, seconds: dict[str, float]) -> None:
        start = time.perf_counter()
        try:
            crawl_in_rounds(executor, jobs)
        except BaseException as exc:  # re-raised in the build's thread by join()
            self.error = exc
        finally:
            seconds["crawl"] = time.perf_counter() - start

    def running(self) -> bool:
        return self.thread.is_alive()

    def join(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


def _ingest_and_prepare(
    cfg: BuildConfig,
    executor: Executor,
    layout: DatasetLayout,
    pcfg: PrepareConfig,
    seconds: dict[str, float],
    crawl: CrawlStage | None = None,
) -> tuple[list[Path], list[dict]]:
    """Ingest in this process, each chunk handed to prepare as soon as it is written. Seconds:
    `ingest` until the last chunk is written, `prepare` the wait for the rest after it."""
    inputs: list[Path] = []
    start = time.perf_counter()
    records = iter_records(cfg, crawl.running if crawl is not None else None)

    def arriving() -> Iterator[Path]:
        for path in iter_ingest(records, layout, cfg.chunk_size, cfg.chunk_max_conversions):
            inputs.append(path)
            yield path
        seconds["ingest"] = time.perf_counter() - start

    chunk_stats = executor.map_stream("prepare", prepare_chunk, arriving(), layout=layout, pcfg=pcfg)
    seconds["prepare"] = time.perf_counter() - start - seconds["ingest"]
    log.info("ingested and prepared %d input chunks, streaming", len(inputs))
    return inputs, chunk_stats


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
