"""The manifest source: a table of (path or url, texts, metadata), as img2dataset takes one.

Local paths are real files; URLs are served by a real HTTP server on 127.0.0.1 started here."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clamp.config import BuildConfig, SourceSpec
from clamp.data.sources.manifest import ManifestStats, iter_manifest, read_manifest
from clamp.errors import UserError


def tune(i: int) -> str:
    return f"X:1\nT:Tune {i}\nM:6/8\nL:1/8\nK:D\n|:d2A B2A|{i % 7}d2f a2f:|\n"


class _Handler(BaseHTTPRequestHandler):
    hits: Counter = Counter()

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        _Handler.hits[self.path] += 1
        routes = {
            "/robots.txt": (200, "text/plain", b"User-agent: *\nDisallow: /private/\n"),
            "/tunes/kesh.abc": (200, "text/vnd.abc", b"X:1\nT:The Kesh\nR:jig\nM:6/8\nL:1/8\nK:G\nGAG GAB|\n"),
            "/tunes/two.abc": (200, "text/vnd.abc", b"X:1\nT:One\nK:G\nGAB|\n\nX:2\nT:Two\nK:D\nDEF|\n"),
            "/private/secret.abc": (200, "text/vnd.abc", b"X:1\nT:Secret\nK:C\nC|\n"),
            "/page.html": (200, "text/html", b"<html></html>"),
            "/down.abc": (503, "text/plain", b"down"),
        }
        status, ctype, body = routes.get(self.path, (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.hits = Counter()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _spec(path: Path, **kw) -> SourceSpec:
    return SourceSpec(kind="manifest", path=str(path), per_host_delay_s=0.0, **kw)


def test_ten_thousand_rows_of_local_files_from_parquet(tmp_path):
    n = 10_000
    files = tmp_path / "files"
    files.mkdir()
    rows = {"path": [], "caption": [], "composer": []}
    for i in range(n):
        name = f"t{i:05d}.abc" if i % 1000 else f"t{i:05d}.txt"  # every 1000th: not a music file
        if i % 500 != 7:  # every 500th (from 7): listed but missing
            (files / name).write_text(tune(i))
        rows["path"].append(f"files/{name}")
        rows["caption"].append(f"A jig, number {i}" if i % 2 else "")
        rows["composer"].append("Trad." if i % 3 == 0 else None)
    pq.write_table(pa.table(rows), tmp_path / "m.parquet")

    stats = ManifestStats()
    records = list(iter_manifest(_spec(tmp_path / "m.parquet"), tmp_path / "cache", stats))
    unsupported, missing = n // 1000, n // 500
    assert stats.failed == {"unsupported_format": unsupported, "missing_file": missing}
    assert stats.rows == n and stats.records == len(records) == n - unsupported - missing
    assert stats.records + sum(stats.failed.values()) == stats.rows  # counts reconcile
    r1 = records[0]  # row 1 (row 0 is the .txt)
    assert (r1.id, r1.format, r1.texts) == ("manifest:1", "abc", ["A jig, number 1"])
    assert r1.content == tune(1).encode() and r1.metadata == {"manifest_row": "1"}
    r3 = next(r for r in records if r.id == "manifest:3")
    assert r3.metadata == {"composer": "Trad.", "manifest_row": "3"} and r3.texts == ["A jig, number 3"]


@pytest.mark.slow
def test_urls_are_fetched_politely_and_only_transient_failures_are_asked_again(tmp_path, server):
    lines = [
        {"url": f"{server}/tunes/kesh.abc", "title": "The Kesh", "description": "A jig in G."},
        {"url": f"{server}/tunes/two.abc", "title": "Two tunes"},
        {"url": f"{server}/private/secret.abc", "title": "disallowed by robots.txt"},
        {"url": f"{server}/gone.abc", "title": "404"},
        {"url": f"{server}/page.html", "title": "not music"},
        {"url": f"{server}/down.abc", "title": "503 on every try"},
        {"title": "neither"},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(__import__("json").dumps(x) for x in lines) + "\n")
    spec = _spec(manifest)
    from clamp.data.ingest import iter_source

    first = list(iter_source(spec, tmp_path / "cache"))
    assert [r.id for r in first] == ["manifest:0", "manifest:1#1", "manifest:1#2"]  # two tunes in one file
    assert first[0].texts == ["The Kesh", "A jig in G."]
    assert first[0].metadata["url"] == f"{server}/tunes/kesh.abc"
    assert _Handler.hits["/private/secret.abc"] == 0
    assert _Handler.hits["/down.abc"] == 1 + 3  # the crawler's retries
    _Handler.hits.clear()
    stats = ManifestStats()
    again = list(iter_manifest(spec, tmp_path / "cache", stats))
    assert [r.id for r in again] == ["manifest:0", "manifest:1"]
    # kept: the files, the 404, robots and not-music; asked again: only the 503
    assert dict(_Handler.hits) == {"/down.abc": 4, "/robots.txt": 1}
    assert stats.failed == {"robots": 1, "http_404": 1, "not_music": 1, "http_503": 1, "no_url_or_path": 1}
    assert stats.from_cache == 5


@pytest.mark.slow
def test_a_manifest_source_builds_a_dataset(tmp_path):
    from clamp.data.build import build_dataset

    (tmp_path / "a.abc").write_text(tune(1))
    (tmp_path / "b.abc").write_text(tune(2))
    (tmp_path / "m.csv").write_text("path,caption,origin\na.abc,A jig from Kerry,Ireland\nb.abc,Another jig,\n")
    cfg = BuildConfig(name="m", output_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                      sources=[_spec(tmp_path / "m.csv")], decontaminate=False, data_docs=False,
                      valid_fraction=0.0, test_fraction=0.0)  # fmt: skip
    summary = build_dataset(cfg)
    assert summary.rows_written == 2


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [("m.tsv", "x", "use a .parquet, .csv or .jsonl file"), ("m.csv", "caption\nhello\n", "needs a `url` or a `path`"),
     ("m.jsonl", "{not json\n", "cannot be read")],
)  # fmt: skip
def test_a_bad_manifest_is_one_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(UserError, match=message):
        read_manifest(tmp_path / name)


class _SlowHandler(BaseHTTPRequestHandler):
    """Answers every .abc after 0.2 s, counting the requests in flight per server and overall."""

    lock = threading.Lock()
    in_flight: Counter = Counter()
    peak: Counter = Counter()

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        import time

        key = self.server.server_address[1]
        if self.path == "/robots.txt":
            body = b"User-agent: *\n"
        else:
            with self.lock:
                self.in_flight[key] += 1
                self.in_flight["all"] += 1
                self.peak[key] = max(self.peak[key], self.in_flight[key])
                self.peak["all"] = max(self.peak["all"], self.in_flight["all"])
            time.sleep(0.2)
            with self.lock:
                self.in_flight[key] -= 1
                self.in_flight["all"] -= 1
            body = b"X:1\nT:t\nK:G\nGAB|\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/vnd.abc")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.slow
def test_hosts_are_fetched_at_once_and_each_host_one_request_at_a_time(tmp_path):
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler) for _ in range(3)]
    for s in servers:
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        ports = [s.server_address[1] for s in servers]
        urls = [f"http://127.0.0.1:{p}/t{i}.abc" for i in range(4) for p in ports]
        pq.write_table(
            pa.table({"url": urls, "caption": [f"tune {i}" for i in range(len(urls))]}), tmp_path / "m.parquet"
        )
        records = list(iter_manifest(_spec(tmp_path / "m.parquet"), tmp_path / "cache"))
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()
    assert [r.id for r in records] == [f"manifest:{i}" for i in range(12)]  # manifest order, whatever finished first
    assert [r.texts for r in records] == [[f"tune {i}"] for i in range(12)]
    assert _SlowHandler.peak["all"] >= 2  # hosts at once
    assert all(_SlowHandler.peak[p] == 1 for p in ports)  # never two requests to one host at once


def test_the_row_store_keeps_records_and_failures_across_runs(tmp_path):
    import json

    from clamp.data.records import RawRecord
    from clamp.data.sources.manifest import RowStore

    record = RawRecord(
        id="manifest:3", source="manifest", format="midi", content=b"MThd\x00\xff", texts=["A reel"],
        metadata={"url": "http://a.test/x.mid", "manifest_row": "3"}, provenance="http://a.test/x.mid", license="CC0",
    )  # fmt: skip
    store = RowStore(tmp_path)
    store.keep_record(3, record)
    store.keep_failure(4, "http_404")
    store.close()
    (tmp_path / "000000005.failed").write_text(json.dumps({"reason": "robots"}))  # a store of an older version
    again = RowStore(tmp_path)
    assert again.outcome(3) == (record, None)
    assert again.outcome(4) == (None, "http_404")
    assert again.outcome(5) == (None, "robots")
    assert again.outcome(6) is None and not again.done(6) and again.done(5)
