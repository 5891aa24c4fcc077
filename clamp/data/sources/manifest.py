"""A manifest of music files and their texts, the way img2dataset takes a table of `url, caption`.

The manifest is a Parquet, CSV or JSONL file with one row per music file:

- `url` (http or https) or `path` (a local file, relative to the manifest's folder): where the
  file is; a row may have either;
- text columns (`text_columns`; default: whichever of `caption`, `text`, `title`,
  `description` exist): the row's texts, in that order;
- every other column: metadata of the record.

URLs are fetched with the web crawler's politeness and limits (robots.txt, the per-host delay,
retries with backoff, the byte cap; `clamp.data.sources.web_fetch.PoliteFetcher`), many hosts at
once (`concurrency`, default 16) and each host's rows one after another, a window of rows ahead
of the records yielded. Each URL row's outcome is kept in
`<cache>/manifest/<fingerprint>/rows.sqlite` (`RowStore`), so a rerun reads finished rows from
there: a fetched file, or a failure that repeats (a 404, robots, too large). A timeout, a 5xx
or a dropped connection is not kept, so the next run asks again. Rows that give no file are
counted by reason in `ManifestStats` and logged; they are not records.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from clamp.config import SourceSpec
from clamp.data.layout import fingerprint_of
from clamp.data.records import FORMAT_BY_SUFFIX, RawRecord, table_to_records
from clamp.data.shards import read_table
from clamp.errors import UserError

SOURCE = "manifest"
DEFAULT_TEXT_COLUMNS = ("caption", "text", "title", "description")
WINDOW = 256  # rows fetched ahead of the ones yielded: the build gets records while the rest download
# failures that say something of the row, kept across runs; anything else is asked again
PERMANENT_FAILURES = frozenset(
    {"missing_file", "unsupported_format", "robots", "too_large", "redirect_loop", "http_404", "http_410",
     "http_400", "http_401", "http_403", "invalid_url", "not_music"}
)  # fmt: skip
log = logging.getLogger("clamp.data.manifest")


@dataclass
class ManifestStats:
    rows: int = 0
    records: int = 0
    from_cache: int = 0  # rows whose outcome an earlier run kept
    failed: dict[str, int] = field(default_factory=dict)  # reason -> rows

    def fail(self, reason: str) -> None:
        self.failed[reason] = self.failed.get(reason, 0) + 1


def read_manifest(path: str | Path) -> pa.Table:
    """The manifest as a table; a missing or unreadable file is a one-line `UserError`."""
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson
    import pyarrow.parquet as pq

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"manifest not found: {path}")
    readers = {".parquet": pq.read_table, ".csv": pcsv.read_csv, ".jsonl": pjson.read_json, ".json": pjson.read_json}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise UserError(f"manifest {path}: use a .parquet, .csv or .jsonl file, not {path.suffix or 'no suffix'}")
    try:
        table = reader(str(path))
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        raise UserError(f"manifest {path} cannot be read: {' '.join(str(exc).split())[:200]}") from None
    if "url" not in table.column_names and "path" not in table.column_names:
        raise UserError(f"manifest {path} needs a `url` or a `path` column (it has {', '.join(table.column_names)})")
    return table


class RowStore:
    """What each URL row gave, kept across runs in SQLite: its record, or a failure that repeats.

    One commit per row, in write-ahead logging with `synchronous=NORMAL`: a killed run keeps every
    row it committed (a power cut may lose the last ones, which are then fetched again), where an
    fsynced file per row cost 3.3 ms. Fetch threads write through one connection, a row at a time
    under a lock. Stores written before it (a `<row>.arrow` or `<row>.failed` file per row) are
    still read."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.lock = threading.Lock()
        self.db = sqlite3.connect(folder / "rows.sqlite", check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        with self.db:
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS rows (row INTEGER PRIMARY KEY, reason TEXT, id TEXT, format TEXT,"
                " content BLOB, texts TEXT, metadata TEXT, provenance TEXT, license TEXT)"
            )

    def keep_record(self, row: int, record: RawRecord) -> None:
        values = (row, None, record.id, record.format, record.content, json.dumps(record.texts),
                  json.dumps(record.metadata, sort_keys=True), record.provenance, record.license)  # fmt: skip
        with self.lock, self.db:
            self.db.execute("INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)

    def keep_failure(self, row: int, reason: str) -> None:
        with self.lock, self.db:
            self.db.execute("INSERT OR REPLACE INTO rows (row, reason) VALUES (?, ?)", (row, reason))

    def done(self, row: int) -> bool:
        """Whether the row's outcome is kept, without reading its file's bytes."""
        with self.lock:
            kept = self.db.execute("SELECT 1 FROM rows WHERE row = ?", (row,)).fetchone() is not None
        legacy = self.folder / f"{row:09d}"
        return kept or legacy.with_suffix(".arrow").is_file() or legacy.with_suffix(".failed").is_file()

    def outcome(self, row: int) -> tuple[RawRecord | None, str | None] | None:
        """(record, None) or (None, reason) for a kept row; None when nothing is kept."""
        with self.lock:
            found = self.db.execute(
                "SELECT reason, id, format, content, texts, metadata, provenance, license FROM rows WHERE row = ?",
                (row,),
            ).fetchone()
        if found is not None:
            reason, rid, fmt, content, texts, metadata, provenance, license_ = found
            if reason is not None:
                return None, reason
            record = RawRecord(
                id=rid, source=SOURCE, format=fmt, content=content, texts=json.loads(texts),
                metadata=json.loads(metadata), provenance=provenance, license=license_,
            )  # fmt: skip
            return record, None
        legacy = self.folder / f"{row:09d}"
        if legacy.with_suffix(".arrow").is_file():
            return next(iter(table_to_records(read_table(legacy.with_suffix(".arrow"))))), None
        if legacy.with_suffix(".failed").is_file():
            return None, json.loads(legacy.with_suffix(".failed").read_text())["reason"]
        return None

    def close(self) -> None:
        self.db.close()


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def iter_manifest(spec: SourceSpec, cache_dir: Path, stats: ManifestStats | None = None) -> Iterator[RawRecord]:
    """One record per row whose file was found, in manifest order (`spec.limit` caps them)."""
    if not spec.path:
        raise UserError("a manifest source needs `path`: the manifest file")
    manifest = Path(spec.path).expanduser().resolve()
    table = read_manifest(manifest)
    stats = stats if stats is not None else ManifestStats()
    text_columns = spec.text_columns or [c for c in DEFAULT_TEXT_COLUMNS if c in table.column_names]
    unknown = [c for c in text_columns if c not in table.column_names]
    if unknown:
        raise UserError(f"manifest {manifest}: no column {unknown[0]!r} (text_columns)")
    meta_columns = [c for c in table.column_names if c not in ("url", "path", *text_columns)]
    folder = cache_dir / "manifest" / fingerprint_of(str(manifest), manifest.stat().st_mtime_ns, table.num_rows)[:12]
    store = RowStore(folder)
    fetcher = _Fetcher(spec, store, _hosts(table))
    rows = table.to_pylist()
    try:
        yield from _rows(rows, fetcher, store, manifest, text_columns, meta_columns, spec, stats)
    finally:
        fetcher.fetcher.close()
        store.close()
    log.info("manifest %s: %d rows, %d files, failures %s", manifest.name, stats.rows, stats.records, stats.failed)


def _rows(
    rows: list[dict],
    fetcher: _Fetcher,
    store: RowStore,
    manifest: Path,
    text_columns: list[str],
    meta_columns: list[str],
    spec: SourceSpec,
    stats: ManifestStats,
) -> Iterator[RawRecord]:
    """The records of the rows, a window at a time (the window's URLs fetched concurrently)."""
    for start in range(0, len(rows), WINDOW):
        window = list(enumerate(rows[start : start + WINDOW], start=start))
        described = {i: _describe(row, i, text_columns, meta_columns) for i, row in window}
        # the window's URL rows not in the cache, fetched concurrently (one host at a time per host)
        todo = [(i, _text(row.get("url"))) for i, row in window if _text(row.get("url"))]
        todo = [(i, url) for i, url in todo if not store.done(i)]
        fresh = fetcher.fetch_rows(todo, described, spec)
        for index, row in window:
            if spec.limit is not None and stats.records >= spec.limit:
                return
            stats.rows += 1
            texts, metadata = described[index]
            url, rel = _text(row.get("url")), _text(row.get("path"))
            record: RawRecord | None = None
            reason: str | None = None
            if url:  # fetched once: the outcome is kept, unless it may differ next time
                if index in fresh:
                    reason = fresh[index]
                else:
                    stats.from_cache += 1
                kept = store.outcome(index)
                if kept is not None:
                    record, reason = kept
            elif rel:  # a local file is read again on every run
                record, reason = _read_row(manifest.parent / rel, index, texts, metadata, spec)
            else:
                reason = "no_url_or_path"
            if record is None:
                stats.fail(reason or "failed")
                log.info("manifest row %d: %s", index, reason)
            else:
                stats.records += 1
                yield record


def _hosts(table: pa.Table) -> frozenset[str]:
    """The hosts of the manifest's URLs: a redirect may go from one to another, not elsewhere."""
    from clamp.data.sources.web_urls import host_of, normalize_url

    if "url" not in table.column_names:
        return frozenset()
    urls = (normalize_url(u) for u in table.column("url").to_pylist() if u)
    return frozenset(host_of(u) for u in urls if u is not None)


def _describe(row: dict, index: int, text_columns: list[str], meta_columns: list[str]) -> tuple[list[str], dict]:
    texts = [t for t in (_text(row.get(c)) for c in text_columns) if t]
    metadata = {c: _text(row.get(c)) for c in meta_columns if _text(row.get(c))}
    metadata["manifest_row"] = str(index)
    return texts, metadata


class _Fetcher:
    """Fetches URL rows on many hosts at once and each host's rows one after another, through
    one `PoliteFetcher` (its robots.txt, per-host delay and retries), so politeness is the crawler's."""

    def __init__(self, spec: SourceSpec, store: RowStore, hosts: frozenset[str]) -> None:
        from clamp.data.sources.web import DEFAULT_CONCURRENCY, CrawlConfig
        from clamp.data.sources.web_fetch import PoliteFetcher

        self.spec, self.store = spec, store
        self.concurrency = spec.concurrency or DEFAULT_CONCURRENCY
        config = CrawlConfig(
            seeds=["http://manifest.invalid/"], state_dir=store.folder, per_host_delay_s=spec.per_host_delay_s
        )
        self.fetcher = PoliteFetcher(config, hosts)

    def fetch_rows(self, todo: list[tuple[int, str]], described: dict, spec: SourceSpec) -> dict[int, str | None]:
        """Fetch `todo` (row index, url) and keep each outcome in the store; returns the reason
        of every row that gave no file (None for the rows that did)."""
        from concurrent.futures import ThreadPoolExecutor

        from clamp.data.sources.web_urls import host_of, normalize_url

        by_host: dict[str, list[tuple[int, str]]] = {}
        out: dict[int, str | None] = {}
        for index, url in todo:
            norm = normalize_url(url)
            if norm is None:
                out[index] = "invalid_url"
                self.store.keep_failure(index, "invalid_url")
                continue
            by_host.setdefault(host_of(norm), []).append((index, norm))

        def one_host(host: str) -> dict[int, str | None]:
            done: dict[int, str | None] = {}
            for index, url in by_host[host]:
                texts, metadata = described[index]
                record, reason = _fetch_row(self.fetcher, url, index, texts, metadata, spec)
                if record is not None:
                    self.store.keep_record(index, record)
                elif reason in PERMANENT_FAILURES:
                    self.store.keep_failure(index, reason)
                done[index] = reason
            return done

        if by_host:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(by_host))) as pool:
                for done in pool.map(one_host, list(by_host)):
                    out.update(done)
        return out


def _record(index: int, fmt: str, content: bytes, texts: list[str], metadata: dict, provenance: str, spec) -> RawRecord:
    return RawRecord(
        id=f"{SOURCE}:{index}",
        source=SOURCE,
        format=fmt,
        content=content,
        texts=texts,
        metadata=metadata,
        provenance=provenance,
        license=spec.license,
    )


def _read_row(path: Path, index: int, texts, metadata, spec) -> tuple[RawRecord | None, str | None]:
    fmt = FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        return None, "unsupported_format"
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return None, "missing_file"
    except OSError as exc:
        return None, f"unreadable_{type(exc).__name__}"
    return _record(index, fmt, content, texts, metadata, str(path), spec), None


def _fetch_row(fetcher, url: str, index: int, texts, metadata, spec) -> tuple[RawRecord | None, str | None]:
    fetched = fetcher.fetch_file(url)
    if isinstance(fetched, str):
        return None, fetched
    final_url, fmt, body, content_type = fetched
    meta = {**metadata, "url": final_url, "content_type": content_type}
    return _record(index, fmt, body, texts, meta, final_url, spec), None
