"""Reading the sources and writing their records, unchanged, into input chunks (the first
stage of a build).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa

from clamp.config import BuildConfig, SourceSpec
from clamp.data.layout import DatasetLayout, fingerprint_of
from clamp.data.records import RawRecord, batched
from clamp.data.shards import (
    read_table,
    write_atomic,
    write_bytes_atomic,
)

log = logging.getLogger("clamp.data.build")


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
    elif spec.kind == "manifest":
        from clamp.data.sources.manifest import iter_manifest

        yield from _limited(
            _split_abc_files(iter_manifest(spec.model_copy(update={"limit": None}), cache_dir)), spec.limit
        )
    else:  # pragma: no cover - pydantic rejects other kinds
        raise ValueError(f"unknown source kind {spec.kind}")


def iter_web(spec: SourceSpec, cache_dir: Path) -> Iterator[RawRecord]:
    """Crawled files, split into tunes like local ABC files.

    The crawler yields each new file once (its state persists), so every crawled record is
    stored in the cache as it arrives and the source replays the whole store in crawl order:
    a rebuild sees the same records plus whatever is new.
    """
    from clamp.data.records import records_to_table, table_to_records
    from clamp.data.sources.web import CrawlConfig, Crawler

    state = cache_dir / "crawl" / fingerprint_of(spec.seeds, spec.allowed_hosts)[:12]
    store = state / "records"
    store.mkdir(parents=True, exist_ok=True)
    config = CrawlConfig.from_source(spec, state)
    seq = len(list(store.glob("*.arrow")))
    crawler = Crawler(config)
    for record in crawler.crawl():
        write_atomic(records_to_table([record]), store / f"{seq:08d}.arrow")
        seq += 1
    stats = crawler.stats
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(stats.texts_by_kind.items())) or "none"
    log.info(
        "crawl: %d URLs fetched, %d music files new; their texts by kind: %s", stats.fetched, stats.downloaded, kinds
    )
    stored = (record for part in sorted(store.glob("*.arrow")) for record in table_to_records(read_table(part)))
    yield from _limited(_split_abc_files(stored), spec.limit)


def _split_abc_files(records: Iterable[RawRecord]) -> Iterator[RawRecord]:
    """Each tune of a multi-tune ABC file as its own record (`<id>#<n>`), like local ABC files."""
    from clamp.abc.tunes import split_tunes

    for record in records:
        tunes = []
        if record.format == "abc" and b"\0" not in record.content:
            tunes = split_tunes(record.content.decode("utf-8", errors="surrogateescape"))
        if len(tunes) <= 1:
            yield record
            continue
        for i, tune in enumerate(tunes, start=1):
            content = tune.encode("utf-8", errors="surrogateescape")
            yield RawRecord(**{**asdict(record), "id": f"{record.id}#{i}", "content": content})


def _limited(records: Iterable[RawRecord], limit: int | None) -> Iterator[RawRecord]:
    for count, record in enumerate(records, start=1):
        yield record
        if limit is not None and count >= limit:
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
