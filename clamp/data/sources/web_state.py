"""The crawler's state in SQLite: the frontier, what each URL gave (validators, content
hashes), the pass in progress, committed after every URL so a crawl resumes where it stopped."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from clamp.data.records import RawRecord

log = logging.getLogger("clamp.data.web")
SCHEMA_VERSION = 1


# --------------------------------------------------------------------------------------------- state


@dataclass
class CrawlItem:
    url: str
    depth: int
    referrer: str
    text: str
    seq: int = 0  # its place in the frontier: each host's URLs are fetched in this order


class CrawlState:
    """The crawl state in SQLite. Every mutation of one URL is one transaction (``with self.db``),
    made by the thread that opened it; fetch threads only read, each on its own connection
    (`reader_validators`). Write-ahead logging lets them read while the owner commits, and
    `synchronous=NORMAL` keeps every commit across a killed process (not a power cut)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._readers = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        with self.db:
            self.db.executescript(
                """
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS frontier (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT, url TEXT NOT NULL UNIQUE,
                    depth INTEGER NOT NULL, referrer TEXT NOT NULL, text TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS visited (url TEXT PRIMARY KEY, outcome TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS hashes (sha256 TEXT PRIMARY KEY, url TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS validators (
                    url TEXT PRIMARY KEY, etag TEXT, last_modified TEXT);
                CREATE TABLE IF NOT EXISTS pages (url TEXT PRIMARY KEY, links TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS gone (url TEXT PRIMARY KEY, status INTEGER NOT NULL);
                CREATE TABLE IF NOT EXISTS handoff (
                    url TEXT PRIMARY KEY, depth INTEGER NOT NULL, referrer TEXT NOT NULL, text TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS records (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, format TEXT NOT NULL,
                    content BLOB NOT NULL, texts TEXT NOT NULL, metadata TEXT NOT NULL,
                    provenance TEXT NOT NULL);
                """
            )
            version = self.get_meta("schema_version")
            if version is None:
                self.set_meta("schema_version", str(SCHEMA_VERSION))
            elif int(version) != SCHEMA_VERSION:
                raise RuntimeError(f"crawl state {path} has schema {version}, expected {SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()
        for connection in self._reader_connections:
            connection.close()

    def reader_validators(self, url: str) -> tuple[str | None, str | None]:
        """`validators`, callable from any thread (a read-only connection per thread)."""
        db = getattr(self._readers, "db", None)
        if db is None:
            db = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
            self._readers.db = db
            self._reader_connections.append(db)
        row = db.execute("SELECT etag, last_modified FROM validators WHERE url = ?", (url,)).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def frontier_size(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM frontier").fetchone()[0])

    def visited_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM visited").fetchone()[0])

    def start_pass(self, seeds: list[str]) -> int:
        """Forget the visited set of the previous pass and queue the seeds (hashes/validators stay)."""
        with self.db:
            number = int(self.get_meta("pass") or "0") + 1
            self.db.execute("DELETE FROM visited")
            self.db.execute("DELETE FROM frontier")
            self.db.execute("DELETE FROM handoff")  # links to other shares: found again in this pass
            for seed in seeds:
                self._enqueue(seed, 0, "", "")
            self.set_meta("pass", str(number))
        return number

    def clear_frontier(self) -> None:
        with self.db:
            self.db.execute("DELETE FROM frontier")

    def handoffs(self) -> list[tuple[str, int, str, str]]:
        """(url, depth, referrer, text) of the links this share found to another share's hosts."""
        rows = self.db.execute("SELECT url, depth, referrer, text FROM handoff ORDER BY rowid")
        return [(url, int(depth), referrer, text) for url, depth, referrer, text in rows]

    def drop_handoffs(self, urls: Sequence[str]) -> None:
        with self.db:
            self.db.executemany("DELETE FROM handoff WHERE url = ?", [(u,) for u in urls])

    def accept(self, items: Sequence[tuple[str, int, str, str]]) -> int:
        """Queue links another share handed over, in this share's current pass; URLs it queued or
        visited already are ignored. Returns how many were newly queued."""
        with self.db:
            queued = [self._enqueue(url, depth, referrer, text) for url, depth, referrer, text in items]
        return sum(item is not None for item in queued)

    def stored_records(self, source: str, after: int = 0) -> Iterator[tuple[int, RawRecord]]:
        """(seq, record) of the downloads kept so far, in the order they were committed."""
        rows = self.db.execute(f"{_RECORDS_AFTER} ORDER BY seq", (after,))
        for row in rows:
            yield _stored_record(row, source)

    def frontier_items(self) -> list[CrawlItem]:
        rows = self.db.execute("SELECT url, depth, referrer, text, seq FROM frontier ORDER BY seq")
        return [CrawlItem(url, int(depth), referrer, text, int(seq)) for url, depth, referrer, text, seq in rows]

    def in_frontier(self, url: str) -> bool:
        return self.db.execute("SELECT 1 FROM frontier WHERE url = ?", (url,)).fetchone() is not None

    def is_gone(self, url: str) -> bool:
        """Whether an earlier pass got 404 or 410 for `url` (kept across passes, unlike `visited`)."""
        return self.db.execute("SELECT 1 FROM gone WHERE url = ?", (url,)).fetchone() is not None

    def hash_seen(self, sha256: str) -> bool:
        return self.db.execute("SELECT 1 FROM hashes WHERE sha256 = ?", (sha256,)).fetchone() is not None

    def validators(self, url: str) -> tuple[str | None, str | None]:
        row = self.db.execute("SELECT etag, last_modified FROM validators WHERE url = ?", (url,)).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def page_links(self, url: str) -> list[tuple[str, str]] | None:
        row = self.db.execute("SELECT links FROM pages WHERE url = ?", (url,)).fetchone()
        return None if row is None else [(u, t) for u, t in json.loads(row[0])]

    def finish(
        self,
        item: CrawlItem,
        outcome: str,
        *,
        final_url: str | None = None,
        sha256: str | None = None,
        validators: tuple[str | None, str | None] = (None, None),
        page_links: list[tuple[str, str]] | None = None,
        enqueue: Sequence[tuple[str, int, str, str]] = (),
        hand_off: Sequence[tuple[str, int, str, str]] = (),
        gone_status: int | None = None,
        record: RawRecord | None = None,
    ) -> list[CrawlItem]:
        """Everything learnt from one frontier URL, committed atomically; returns the URLs newly queued."""
        with self.db:
            self.db.execute("DELETE FROM frontier WHERE url = ?", (item.url,))
            self.db.execute("INSERT OR REPLACE INTO visited (url, outcome) VALUES (?, ?)", (item.url, outcome))
            if final_url is not None and final_url != item.url:
                self.db.execute("DELETE FROM frontier WHERE url = ?", (final_url,))
                self.db.execute("INSERT OR REPLACE INTO visited (url, outcome) VALUES (?, ?)", (final_url, outcome))
            key = final_url or item.url
            if sha256 is not None:
                self.db.execute("INSERT OR IGNORE INTO hashes (sha256, url) VALUES (?, ?)", (sha256, key))
            etag, last_modified = validators
            if etag or last_modified:
                self.db.execute(
                    "INSERT OR REPLACE INTO validators (url, etag, last_modified) VALUES (?, ?, ?)",
                    (key, etag, last_modified),
                )
            if gone_status is not None:  # a 404 or 410 is not asked again in later passes
                self.db.execute("INSERT OR REPLACE INTO gone (url, status) VALUES (?, ?)", (item.url, gone_status))
            if page_links is not None:
                self.db.execute(
                    "INSERT OR REPLACE INTO pages (url, links) VALUES (?, ?)", (key, json.dumps(page_links))
                )
            if record is not None:  # kept in the same transaction: a committed download is a stored one
                self.db.execute(
                    "INSERT INTO records (id, format, content, texts, metadata, provenance) VALUES (?, ?, ?, ?, ?, ?)",
                    (record.id, record.format, record.content, json.dumps(record.texts),
                     json.dumps(record.metadata), record.provenance),
                )  # fmt: skip
            # links to hosts of another share, kept for the build to hand over (`accept`) after this round
            self.db.executemany("INSERT OR IGNORE INTO handoff (url, depth, referrer, text) VALUES (?, ?, ?, ?)",
                                hand_off)  # fmt: skip
            queued = (self._enqueue(url, depth, referrer, text) for url, depth, referrer, text in enqueue)
            return [item for item in queued if item is not None]

    def _enqueue(self, url: str, depth: int, referrer: str, text: str) -> CrawlItem | None:
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO frontier (url, depth, referrer, text) "
            "SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM visited WHERE url = ?)",
            (url, depth, referrer, text, url),
        )
        return CrawlItem(url, depth, referrer, text, int(cursor.lastrowid or 0)) if cursor.rowcount == 1 else None


_RECORD_COLUMNS = "SELECT seq, id, format, content, texts, metadata, provenance FROM records"
_RECORDS_AFTER = f"{_RECORD_COLUMNS} WHERE seq > ?"


def _stored_record(row: tuple, source: str) -> tuple[int, RawRecord]:
    seq, id_, fmt, content, texts, metadata, provenance = row
    return int(seq), RawRecord(id_, source, fmt, bytes(content), json.loads(texts), json.loads(metadata), provenance)


class StoredRecords:
    """The downloads a crawl state keeps, read through one read-only connection: what a reader in
    another thread or process sees of a crawl that is still writing (nothing before the state
    exists, or before its tables do)."""

    def __init__(self, path: Path, source: str) -> None:
        self.path, self.source = path, source
        self._db: sqlite3.Connection | None = None

    def _rows(self, sql: str, args: tuple) -> list[tuple]:
        if self._db is None:
            if not self.path.is_file():
                return []
            self._db = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:  # created, its tables not yet
            if "no such table" in str(exc):
                return []
            raise

    def after(self, seq: int, limit: int) -> list[tuple[int, RawRecord]]:
        """Up to `limit` (seq, record) committed after `seq`, in commit order."""
        rows = self._rows(f"{_RECORDS_AFTER} ORDER BY seq LIMIT ?", (seq, limit))
        return [_stored_record(row, self.source) for row in rows]

    def at(self, seq: int) -> RawRecord | None:
        rows = self._rows(f"{_RECORD_COLUMNS} WHERE seq = ?", (seq,))
        return _stored_record(rows[0], self.source)[1] if rows else None

    def count_through(self, seq: int) -> int:
        """How many records were committed up to `seq`, inclusive."""
        rows = self._rows("SELECT COUNT(*) FROM records WHERE seq <= ?", (seq,))
        return int(rows[0][0]) if rows else 0

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
