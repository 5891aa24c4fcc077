"""A manifest of music files and their texts, the way img2dataset takes a table of `url, caption`.

The manifest is a Parquet, CSV or JSONL file with one row per music file:

- `url` (http or https) or `path` (a local file, relative to the manifest's folder): where the
  file is; a row may have either;
- text columns (`text_columns`; default: whichever of `caption`, `text`, `title`,
  `description` exist): the row's texts, in that order;
- every other column: metadata of the record.

URLs are fetched with the web crawler's politeness and limits (robots.txt, the per-host delay,
retries with backoff, the byte cap; `clamp.data.sources.web.Crawler.fetch_file`). Each URL
row's outcome is kept in `<cache>/manifest/<fingerprint>/`, so a rerun reads finished rows from
there: a fetched file, or a failure that repeats (a 404, robots, too large). A timeout, a 5xx
or a dropped connection is not kept, so the next run asks again. Rows that give no file are
counted by reason in `ManifestStats` and logged; they are not records.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from clamp.config import SourceSpec
from clamp.data.layout import fingerprint_of
from clamp.data.records import FORMAT_BY_SUFFIX, RawRecord, records_to_table, table_to_records
from clamp.data.shards import read_table, write_atomic
from clamp.errors import UserError
from clamp.io import write_json_atomic

SOURCE = "manifest"
DEFAULT_TEXT_COLUMNS = ("caption", "text", "title", "description")
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
    store = cache_dir / "manifest" / fingerprint_of(str(manifest), manifest.stat().st_mtime_ns, table.num_rows)[:12]
    store.mkdir(parents=True, exist_ok=True)
    crawler = None
    for index, row in enumerate(table.to_pylist()):
        if spec.limit is not None and stats.records >= spec.limit:
            return
        stats.rows += 1
        texts = [t for t in (_text(row.get(c)) for c in text_columns) if t]
        metadata = {c: _text(row.get(c)) for c in meta_columns if _text(row.get(c))}
        metadata["manifest_row"] = str(index)
        url, rel = _text(row.get("url")), _text(row.get("path"))
        reason: str | None = None
        if url:  # fetched once: the outcome is kept, unless it may differ next time
            done = store / f"{index:09d}"
            record = _kept(done, stats)
            if record is None and done.with_suffix(".failed").is_file():
                reason = json.loads(done.with_suffix(".failed").read_text())["reason"]
                stats.from_cache += 1
            elif record is None:
                if crawler is None:
                    crawler = _fetcher(spec, table, store)
                record, reason = _fetch_row(crawler, url, index, texts, metadata, spec)
                if record is not None:
                    write_atomic(records_to_table([record]), done.with_suffix(".arrow"))
                elif reason in PERMANENT_FAILURES:
                    write_json_atomic({"reason": reason}, done.with_suffix(".failed"))
        elif rel:  # a local file is read again on every run
            record, reason = _read_row(manifest.parent / rel, index, texts, metadata, spec)
        else:
            record, reason = None, "no_url_or_path"
        if record is None:
            stats.fail(reason or "failed")
            log.info("manifest row %d: %s", index, reason)
        if record is not None:
            stats.records += 1
            yield record
    log.info("manifest %s: %d rows, %d files, failures %s", manifest.name, stats.rows, stats.records, stats.failed)


def _kept(done: Path, stats: ManifestStats) -> RawRecord | None:
    path = done.with_suffix(".arrow")
    if not path.is_file():
        return None
    stats.from_cache += 1
    return next(iter(table_to_records(read_table(path))))


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


def _fetcher(spec: SourceSpec, table: pa.Table, store: Path):
    from clamp.data.sources.web import CrawlConfig, Crawler
    from clamp.data.sources.web_urls import host_of, normalize_url

    urls = [u for u in (normalize_url(_text(v)) for v in table.column("url").to_pylist() if _text(v)) if u]
    hosts = sorted({host_of(u) for u in urls})
    config = CrawlConfig(
        seeds=urls[:1] or ["http://127.0.0.1/"],
        state_dir=store / "fetch",
        allowed_hosts=hosts or None,
        per_host_delay_s=spec.per_host_delay_s,
        sitemaps=False,
    )
    return Crawler(config)


def _fetch_row(crawler, url: str, index: int, texts, metadata, spec) -> tuple[RawRecord | None, str | None]:
    fetched = crawler.fetch_file(url)
    if isinstance(fetched, str):
        return None, fetched
    final_url, fmt, body, content_type = fetched
    meta = {**metadata, "url": final_url, "content_type": content_type}
    return _record(index, fmt, body, texts, meta, final_url, spec), None
