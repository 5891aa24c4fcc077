"""Reading the sources and writing their records, unchanged, into input chunks (the first
stage of a build).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa

from clamp.config import BuildConfig, SourceSpec
from clamp.data.layout import DatasetLayout, fingerprint_of
from clamp.data.records import RawRecord, batched
from clamp.data.shards import write_bytes_atomic, write_json_atomic

log = logging.getLogger("clamp.data.build")


# --- sources ------------------------------------------------------------------------------
def iter_source(spec: SourceSpec, cache_dir: Path, crawling: Callable[[], bool] | None = None) -> Iterator[RawRecord]:
    """The records of one source. `crawling()`: whether the build's `crawl` stage still runs, for
    a web source of several shares, whose files are then read as the shares store them."""
    if spec.kind == "music21":
        from clamp.data.sources.corpus import iter_corpus

        yield from iter_corpus(tuple(spec.formats), spec.limit, spec.path_filter, cache_dir)
    elif spec.kind == "local":
        from clamp.data.sources.local import iter_local

        if not spec.path:
            raise ValueError("a local source needs `path`")
        yield from iter_local(spec.path, spec.limit, spec.license)
    elif spec.kind == "web":
        yield from iter_web(spec, cache_dir, crawling)
    elif spec.kind == "manifest":
        from clamp.data.sources.manifest import iter_manifest

        yield from _limited(
            _split_abc_files(iter_manifest(spec.model_copy(update={"limit": None}), cache_dir)), spec.limit
        )
    else:  # pragma: no cover - pydantic rejects other kinds
        raise ValueError(f"unknown source kind {spec.kind}")


LAST_CRAWL = "last-crawl.json"  # the counts of a web source's latest crawl, in its state folder


def crawl_state_dir(spec: SourceSpec, cache_dir: Path) -> Path:
    return cache_dir / "crawl" / fingerprint_of(spec.seeds, spec.allowed_hosts)[:12]


def crawl_jobs(cfg: BuildConfig) -> list:
    """The `CrawlConfig` of every share of the web sources split into `shares` (the build's
    `crawl` stage); a web source of one share is crawled by ingest itself, streaming."""
    from clamp.data.sources.web import CrawlConfig

    jobs = []
    for spec in cfg.sources:
        if spec.kind == "web" and spec.shares > 1:
            base = CrawlConfig.from_source(spec, crawl_state_dir(spec, cfg.cache_dir))
            for i in range(spec.shares):
                update = {
                    "state_dir": base.state_dir / f"share-{i}",
                    "partition": (i, spec.shares),
                    "keep_records": True,
                }
                jobs.append(base.model_copy(update=update))
    return jobs


def crawl_share(config, round: int = 0) -> dict:
    """Crawl one share (one unit of the `crawl` stage: idempotent, resumable from its state):
    its downloads stay in its state for ingest to replay; returns and writes its counts (added
    to the earlier rounds' after the first)."""
    from clamp.data.sources.web import Crawler

    crawler = Crawler(config)
    for _ in crawler.crawl():
        pass  # committed in the share's state already
    return _write_counts(crawler, replayed=0, add_to_last=round > 0)


def crawl_in_rounds(executor, jobs: list) -> int:
    """The `crawl` stage: every share crawls its hosts; then the links each found to another
    share's hosts are handed over (`hand_over_links`), and the shares that got new URLs crawl
    again, until none does. Returns the number of rounds."""
    todo, rounds = list(range(len(jobs))), 0
    while todo:
        # map_stream: a PoolExecutor spawns its processes for it, which is safe from the thread the
        # build runs the rounds in (forking a process with running threads is not)
        executor.map_stream("crawl", crawl_share, [jobs[i] for i in todo], round=rounds)
        rounds += 1
        todo = hand_over_links(jobs)
        if todo:
            log.info("crawl round %d: %d share(s) got links from the others", rounds + 1, len(todo))
    return rounds


def hand_over_links(jobs: list) -> list[int]:
    """Move the links each share found to hosts of another share of its source into that share's
    frontier (in the build's process, between rounds, while no share runs). A link is dropped from
    its sender only after its receiver committed it, so a kill in between hands it over twice,
    which the receiver ignores. Returns the indices (in `jobs`) of the shares that got new URLs."""
    from clamp.data.sources.web import STATE_FILE, hosts_of_crawl, share_of_hosts
    from clamp.data.sources.web_state import CrawlState
    from clamp.data.sources.web_urls import host_of

    receivers: set[int] = set()
    by_source: dict[Path, dict[int, int]] = {}  # a source's state folder -> {share: index in jobs}
    for n, job in enumerate(jobs):
        by_source.setdefault(job.state_dir.parent, {})[job.partition[0]] = n
    for shares in by_source.values():
        first = jobs[next(iter(shares.values()))]
        owner = share_of_hosts(hosts_of_crawl(first), first.partition[1])
        states = {i: CrawlState(jobs[n].state_dir / STATE_FILE) for i, n in shares.items()}
        try:
            for sender in states.values():
                items = sender.handoffs()
                by_receiver: dict[int, list] = {}
                for item in items:
                    by_receiver.setdefault(owner[host_of(item[0])], []).append(item)
                for receiver, mine in sorted(by_receiver.items()):
                    if states[receiver].accept(mine):
                        receivers.add(shares[receiver])
                sender.drop_handoffs([i[0] for i in items])
        finally:
            for state in states.values():
                state.close()
    return sorted(receivers)


def _add_counts(total: dict, part: dict) -> dict:
    """Counts summed key by key (numbers, and dicts of numbers)."""
    for key, value in part.items():
        if isinstance(value, dict):
            merged = total.setdefault(key, {})
            for k, v in value.items():
                merged[k] = merged.get(k, 0) + v
        elif isinstance(value, int):
            total[key] = total.get(key, 0) + value
    return total


def _write_counts(crawler, replayed: int, add_to_last: bool = False) -> dict:
    """The counts of a crawl that ended, written beside its state for `acquisition_stats`
    (added to those written last when `add_to_last`: a later round of the same build)."""
    counts = {"hosts": len(crawler.allowed_hosts), "replayed": replayed, **asdict(crawler.stats)}
    path = crawler.config.state_dir / LAST_CRAWL
    if add_to_last and path.is_file():
        counts = {**_add_counts(json.loads(path.read_text()), counts), "hosts": counts["hosts"]}
    write_json_atomic(counts, path)
    return counts


def iter_web(spec: SourceSpec, cache_dir: Path, crawling: Callable[[], bool] | None = None) -> Iterator[RawRecord]:
    """Crawled files, split into tunes like local ABC files, streamed as the crawl goes.

    The crawl state keeps every download, committed with its URL (`CrawlConfig.keep_records`),
    so the source first replays what earlier runs stored, then yields each new file as it is
    fetched: a rebuild sees the same records plus whatever is new, and a build killed mid-crawl
    resumes with no file lost or stored twice. The crawl's counts go to `last-crawl.json` beside
    its state, for the build's summary (`acquisition_stats`); a terminal shows a progress bar.
    A source of several `shares` is crawled by the build's `crawl` stage: its shares' files are
    read as they are stored, while `crawling()` (`replay_shares`).
    """
    from clamp.data.sources.web import SOURCE, STATE_FILE, CrawlConfig, Crawler
    from clamp.data.sources.web_state import CrawlState

    state_dir = crawl_state_dir(spec, cache_dir)

    def replay(folder: Path) -> Iterator[RawRecord]:
        stored = CrawlState(folder / STATE_FILE)
        try:
            yield from (record for _, record in stored.stored_records(SOURCE))
        finally:
            stored.close()

    def crawled() -> Iterator[RawRecord]:
        if spec.shares > 1:
            with crawl_progress(sys.stderr.isatty(), label=f"{spec.shares} crawl shares") as show:
                for n, record in enumerate(replay_shares(state_dir, spec.shares, crawling or (lambda: False)), 1):
                    if show is not None:
                        show(None, 0, files=n)
                    yield record
            return
        replayed = 0
        for record in replay(state_dir):
            replayed += 1
            yield record
        crawler = Crawler(CrawlConfig.from_source(spec, state_dir).model_copy(update={"keep_records": True}))
        with crawl_progress(sys.stderr.isatty()) as show:
            crawler.on_progress = show
            yield from crawler.crawl()
        stats = crawler.stats
        _write_counts(crawler, replayed)
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(stats.texts_by_kind.items())) or "none"
        log.info(
            "crawl: %d URLs fetched, %d music files new; their texts by kind: %s",
            stats.fetched,
            stats.downloaded,
            kinds,
        )

    yield from _limited(_split_abc_files(crawled()), spec.limit)


REPLAY_ORDER = "replay-order.sqlite3"  # the order a source's shares' files were first read in


def replay_shares(
    state_dir: Path, shares: int, crawling: Callable[[], bool], poll_s: float = 0.2, batch: int = 256
) -> Iterator[RawRecord]:
    """The files the shares of a web source stored, in an order every rebuild repeats.

    First those read by earlier builds, in the order they were read then (kept in REPLAY_ORDER);
    then each newer file of any share as soon as that share commits it, while `crawling()` says the
    crawl stage still runs (so the build streams), and whatever is left once it has ended. A file's
    place is committed before the file is yielded: a build killed at any point replays the same
    order, so its input chunks, and which of two duplicates is kept, do not depend on timing.
    """
    import sqlite3

    from clamp.data.sources.web import SOURCE, STATE_FILE
    from clamp.data.sources.web_state import StoredRecords

    stores = [StoredRecords(state_dir / f"share-{i}" / STATE_FILE, SOURCE) for i in range(shares)]
    state_dir.mkdir(parents=True, exist_ok=True)
    order = sqlite3.connect(state_dir / REPLAY_ORDER)
    # one commit per batch of files: write-ahead logging without a sync per commit keeps each across a
    # killed process (not a power cut) at 0.08 ms, against 2.4 ms fsynced (measured on this machine)
    order.execute("PRAGMA journal_mode=WAL")
    order.execute("PRAGMA synchronous=NORMAL")
    try:
        with order:
            order.execute("CREATE TABLE IF NOT EXISTS replayed (n INTEGER PRIMARY KEY AUTOINCREMENT, "
                          "share INTEGER NOT NULL, seq INTEGER NOT NULL, UNIQUE (share, seq))")  # fmt: skip
        last = [0] * shares
        logged = order.execute("SELECT share, seq FROM replayed ORDER BY n").fetchall()
        if not _order_matches(logged, stores):  # a share's state was deleted or replaced: start over
            log.warning("the replay order of %s does not match its shares' states: reset", state_dir)
            with order:
                order.execute("DELETE FROM replayed")
            logged = []
        for share, seq in logged:
            record = stores[share].at(seq)
            if record is not None:
                last[share] = max(last[share], seq)
                yield record
        while True:
            ended = not crawling()  # asked before reading: what a share committed before it ended is read
            new = 0
            for share, store in enumerate(stores):
                while rows := store.after(last[share], batch):
                    with order:  # the batch's places, committed before any of its files is yielded
                        order.executemany("INSERT OR IGNORE INTO replayed (share, seq) VALUES (?, ?)",
                                          [(share, seq) for seq, _ in rows])  # fmt: skip
                    last[share] = rows[-1][0]
                    new += len(rows)
                    yield from (record for _, record in rows)
            if ended:
                break
            if not new:
                time.sleep(poll_s)
    finally:
        order.close()
        for store in stores:
            store.close()


def _order_matches(logged: list[tuple[int, int]], stores: list) -> bool:
    """Whether every share still stores exactly the files logged for it up to its last logged one
    (files are never deleted from a state, and each share's are logged in their commit order)."""
    if any(share >= len(stores) for share, _ in logged):
        return False
    for share, store in enumerate(stores):
        seqs = [seq for s, seq in logged if s == share]
        if seqs and store.count_through(max(seqs)) != len(seqs):
            return False
    return True


@contextmanager
def crawl_progress(enabled: bool, label: str = "crawl") -> Iterator[Callable[..., None] | None]:
    """A rich progress line for a crawl (pages, music files, queued URLs), or None when off;
    `show(None, 0, files=n)` shows the files read so far from a crawl's shares instead."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn(label), BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, transient=False) as progress:
        bar = progress.add_task("", total=None)

        def show(stats, queued: int, files: int | None = None) -> None:
            if files is not None:
                progress.update(bar, completed=files, description=f"{files:,} music files read")
                return
            done = stats.fetched + stats.skipped_robots + stats.skipped_gone
            description = f"{done:,} pages, {stats.downloaded:,} music files, {queued:,} queued"
            progress.update(bar, completed=done, description=description)

        yield show


def acquisition_stats(cfg: BuildConfig) -> dict[str, dict]:
    """The latest crawl's counts of each web source ({first seed: counts}, shares summed), for
    the build's summary."""
    out: dict[str, dict] = {}
    for spec in cfg.sources:
        if spec.kind != "web":
            continue
        folder = crawl_state_dir(spec, cfg.cache_dir)
        folders = [folder / f"share-{i}" for i in range(spec.shares)] if spec.shares > 1 else [folder]
        parts = [json.loads(p.read_text()) for p in (f / LAST_CRAWL for f in folders) if p.is_file()]
        if not parts:
            continue
        total: dict = {"shares": len(parts)}
        for part in parts:
            _add_counts(total, part)
        name = spec.seeds[0] if len(spec.seeds) == 1 else f"{spec.seeds[0]} +{len(spec.seeds) - 1}"
        out[name] = total
    return out


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


def iter_records(cfg: BuildConfig, crawling: Callable[[], bool] | None = None) -> Iterator[RawRecord]:
    for spec in cfg.sources:
        yield from iter_source(spec, cfg.cache_dir, crawling)


# --- ingest -------------------------------------------------------------------------------
def ingest(
    records: Iterable[RawRecord], layout: DatasetLayout, chunk_size: int, max_conversions: int | None = None
) -> list[Path]:
    """Stream records into fixed-size input chunk files; identical chunks are left untouched."""
    return list(iter_ingest(records, layout, chunk_size, max_conversions))


def iter_ingest(
    records: Iterable[RawRecord], layout: DatasetLayout, chunk_size: int, max_conversions: int | None = None
) -> Iterator[Path]:
    """`ingest`, yielding each chunk's path as soon as the chunk is written."""
    layout.input_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    for i, table in enumerate(batched(records, chunk_size, max_conversions)):
        path = layout.input_dir / f"chunk-{i:05d}.arrow"
        data = _ipc_bytes(table)
        if not path.is_file() or path.read_bytes() != data:
            write_bytes_atomic(data, path)
        count += 1
        yield path
    for stale in sorted(layout.input_dir.glob("chunk-*.arrow"))[count:]:
        layout.inside(stale).unlink()  # the input shrank since the last run


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
