"""The web crawler against a fixture site on 127.0.0.1 (ThreadingHTTPServer in a thread)."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from clamp.data.records import RawRecord
from clamp.data.sources.web import CrawlConfig, Crawler
from clamp.data.sources.web_urls import detect_format, extract_links, normalize_url, retry_after_seconds

# ----------------------------------------------------------------------------------------- fixture site

TUNE_A = b"X:1\nT:Tune A\nK:C\nCDEF GABc|\n"
TUNE_B = b"X:2\nT:Tune B\nK:G\nGABc dedB|\n"
TUNE_D = b"X:4\nT:Tune D\nK:D\nDEFG ABcd|\n"
TUNE_E = b"X:5\nT:Tune E\nK:A\nABcd efga|\n"
TUNE_F = b"X:6\nT:Tune F\nK:F\nFGAB cdef|\n"
TUNE_G = b"X:7\nT:Tune G\nK:Bb\nBcde fgab|\n"
SLOW = b"X:8\nT:Slow\nK:C\nC4|\n"
FLAKY = b"X:9\nT:Flaky\nK:C\nD4|\n"
BUSY = b"X:10\nT:Busy\nK:C\nE4|\n"
SECRET = b"X:11\nT:Secret\nK:C\nF4|\n"
MIDI_C = b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60MTrk\x00\x00\x00\x04\x00\xff\x2f\x00"
MIDI_BY_TYPE = b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x00\x00\x00\x04\x00\xff\x2f\x00"
ETAG_E = '"e-v1"'
ETAG_LEVEL1 = 'W/"l1"'
LAST_MODIFIED_B = "Wed, 01 Jan 2025 00:00:00 GMT"

MAX_BYTES = 4000  # the crawl config's cap; /big.mid and /big-stream.mid exceed it

INDEX = """<!doctype html><html><head><title>Tunes</title></head><body>
<a href="#top">top</a>
<ul>
<li><a href="/tunes/a.abc">Tune A</a></li>
<li><a href="tunes/b.abc">Tune   <b>B</b></a></li>
<li><a href="/tunes/c.mid"><img src="/img/c.png" alt=""></a> <a href="/tunes/c.mid">Tune C (MIDI)</a></li>
<li><a href="/mirror/a-copy.abc">Tune A (mirror)</a></li>
<li><a href="/private/secret.abc">Secret tune</a></li>
<li><a href="/slow.abc">Slow tune</a></li>
<li><a href="/flaky.abc">Flaky tune</a></li>
<li><a href="/busy.abc">Busy tune</a></li>
<li><a href="/big.mid">Big</a></li>
<li><a href="/big-stream.mid">Big, streamed</a></li>
<li><a href="/loop-a">Loop</a></li>
<li><a href="/hop/0">Long redirect chain</a></li>
<li><a href="/go/tune-d">Tune D (redirect)</a></li>
<li><a href="/etag/e.abc">Tune E</a></li>
<li><a href="/download?id=7"></a></li>
<li><a href="/readme.txt">Read me</a></li>
<li><a href="/missing.abc">Missing</a></li>
<li><a href="/level1.html">More tunes</a></li>
<li><a href="/go/secret">Secret, via a redirect</a></li>
<li><a href="/go/away">Elsewhere</a></li>
<li><a href="/tunes/a.abc#second-verse">Tune A again</a></li>
<li><a href="http://example.invalid/offsite.abc">Offsite</a></li>
<li><a href="mailto:someone@example.invalid">Mail</a></li>
<li><a href="/img/logo.png"><img src="/img/logo.png"></a></li>
</ul></body></html>
"""
LEVEL1 = (
    '<html><body><a href="/level2.html">Deeper</a> <a href="/tunes/f.abc">Tune F</a> '
    '<a href="/tunes/a.abc">A</a></body></html>'
)
LEVEL2 = '<html><body><a href="/level3.html">Deepest</a> <a href="/tunes/g.abc">Tune G</a></body></html>'
LEVEL3 = '<html><body><a href="/tunes/g.abc">Tune G</a></body></html>'
SMALL = '<html><body><a href="/tunes/a.abc">A</a><a href="/tunes/b.abc">B</a><a href="/tunes/f.abc">F</a></body></html>'

ABC_TYPE = "text/vnd.abc; charset=utf-8"
STATIC: dict[str, tuple[str, bytes]] = {
    "/robots.txt": ("text/plain", b"User-agent: *\nDisallow: /private/\nSitemap: /maps/index.xml\n"),
    "/maps/index.xml": (
        "application/xml",
        b'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<sitemap><loc>/maps/tunes.xml</loc></sitemap></sitemapindex>",
    ),
    "/maps/tunes.xml": (
        "text/xml",
        b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<url><loc>/tunes/g.abc</loc></url><url><loc> /orphan.abc?a=1&amp;b=2 </loc></url></urlset>",
    ),
    "/orphan.abc?a=1&b=2": (ABC_TYPE, b"X:1\nT:Orphan\nK:D\nDFA|\n"),
    "/": ("text/html; charset=utf-8", INDEX.encode()),
    "/level2.html": ("text/html", LEVEL2.encode()),
    "/level3.html": ("text/html", LEVEL3.encode()),
    "/small/index.html": ("text/html", SMALL.encode()),
    "/tunes/a.abc": (ABC_TYPE, TUNE_A),
    "/mirror/a-copy.abc": (ABC_TYPE, TUNE_A),
    "/tunes/c.mid": ("audio/midi", MIDI_C),
    "/tunes/d.abc": (ABC_TYPE, TUNE_D),
    "/tunes/f.abc": (ABC_TYPE, TUNE_F),
    "/tunes/g.abc": (ABC_TYPE, TUNE_G),
    "/private/secret.abc": (ABC_TYPE, SECRET),
    "/download?id=7": ("audio/midi", MIDI_BY_TYPE),
    "/readme.txt": ("text/plain", b"Nothing to see here.\n"),
}
REDIRECTS = {
    "/loop-a": "/loop-b",
    "/loop-b": "/loop-a",
    "/go/tune-d": "/tunes/d.abc",
    "/go/secret": "/private/secret.abc",  # disallowed by robots.txt: never followed
    "/go/away": "http://example.invalid/offsite.abc",  # leaves the allowed hosts: never followed
}


@dataclass
class Hit:
    t: float  # time.monotonic() when the request arrived
    path: str
    headers: dict[str, str]


@dataclass
class FixtureSite:
    base: str = ""
    slow_times: int = 1  # /slow.abc sleeps past the client timeout on its first `slow_times` requests
    slow_sleep_s: float = 0.8
    log: list[Hit] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base + path

    def paths(self) -> list[str]:
        with self.lock:
            return [h.path for h in self.log]

    def hits(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.log if h.path == path]

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()


class Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        site = self.server.site
        with site.lock:
            site.log.append(Hit(time.monotonic(), self.path, {k.lower(): v for k, v in self.headers.items()}))
            site.counts[self.path] += 1
            n = site.counts[self.path]
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the crawler timed out, left
            self._route(site, self.path, n)

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = headers or {}
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers and status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _route(self, site: FixtureSite, path: str, n: int) -> None:
        if path in STATIC:
            ctype, body = STATIC[path]
            self._send(200, body, {"Content-Type": ctype})
        elif path in REDIRECTS:
            self._send(302, headers={"Location": REDIRECTS[path]})
        elif path.startswith("/hop/"):
            self._send(302, headers={"Location": f"/hop/{int(path[5:]) + 1}"})
        elif path == "/tunes/b.abc":
            if self.headers.get("If-Modified-Since") == LAST_MODIFIED_B:
                self._send(304)
            else:
                self._send(200, TUNE_B, {"Content-Type": ABC_TYPE, "Last-Modified": LAST_MODIFIED_B})
        elif path == "/etag/e.abc":
            if self.headers.get("If-None-Match") == ETAG_E:
                self._send(304, headers={"ETag": ETAG_E})
            else:
                self._send(200, TUNE_E, {"Content-Type": ABC_TYPE, "ETag": ETAG_E})
        elif path == "/level1.html":
            if self.headers.get("If-None-Match") == ETAG_LEVEL1:
                self._send(304, headers={"ETag": ETAG_LEVEL1})
            else:
                self._send(200, LEVEL1.encode(), {"Content-Type": "text/html", "ETag": ETAG_LEVEL1})
        elif path == "/slow.abc":
            if n <= site.slow_times:
                time.sleep(site.slow_sleep_s)
            self._send(200, SLOW, {"Content-Type": ABC_TYPE})
        elif path == "/flaky.abc":
            if n == 1:
                self._send(500, b"oops", {"Content-Type": "text/plain"})
            else:
                self._send(200, FLAKY, {"Content-Type": ABC_TYPE})
        elif path == "/busy.abc":
            if n == 1:
                self._send(429, b"slow down", {"Content-Type": "text/plain", "Retry-After": "0"})
            else:
                self._send(200, BUSY, {"Content-Type": ABC_TYPE})
        elif path == "/big.mid":
            self._send(200, b"MThd" + b"\x00" * (2 * MAX_BYTES), {"Content-Type": "audio/midi"})
        elif path == "/big-stream.mid":
            # No Content-Length: HTTP/1.0, the body ends when the connection closes.
            self.send_response(200)
            self.send_header("Content-Type", "audio/midi")
            self.end_headers()
            self.wfile.write(b"MThd" + b"\x00" * (2 * MAX_BYTES))
        else:
            self._send(404, b"not found", {"Content-Type": "text/plain"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    site: FixtureSite

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a sleeping /slow.abc handler writing to a socket the crawler already closed


@pytest.fixture
def site() -> Iterator[FixtureSite]:
    server = _Server(("127.0.0.1", 0), Handler)
    fixture = FixtureSite(base=f"http://127.0.0.1:{server.server_address[1]}")
    server.site = fixture
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fixture
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def config(site: FixtureSite, state_dir: Path, **overrides: Any) -> CrawlConfig:
    settings: dict[str, Any] = {
        "seeds": [site.url("/")],
        "state_dir": state_dir,
        "max_depth": 2,
        "max_bytes": MAX_BYTES,
        "per_host_delay_s": 0.0,
        "timeout_s": 0.3,
        "max_retries": 2,
        "backoff_base_s": 0.01,
        "max_redirects": 5,
        "sitemaps": False,  # the hand-computed request logs below follow links only
    }
    settings.update(overrides)
    return CrawlConfig(**settings)


# Hand-computed: what a full crawl of the fixture site from "/" with max_depth=2 yields.
EXPECTED_PATHS = {
    "/tunes/a.abc",
    "/tunes/b.abc",
    "/tunes/c.mid",
    "/slow.abc",
    "/flaky.abc",
    "/busy.abc",
    "/tunes/d.abc",  # via /go/tune-d
    "/etag/e.abc",
    "/download?id=7",
    "/tunes/f.abc",  # depth 2, linked from /level1.html
}


def urls(site: FixtureSite, paths: set[str]) -> set[str]:
    return {site.url(p) for p in paths}


# ----------------------------------------------------------------------------------------- tests


def test_full_crawl(site: FixtureSite, tmp_path: Path) -> None:
    crawler = Crawler(config(site, tmp_path / "state"))
    records = list(crawler.crawl())
    got = [r.metadata["url"] for r in records]

    assert set(got) == urls(site, EXPECTED_PATHS)
    assert len(got) == len(set(got))
    s = crawler.stats
    assert s.downloaded == 10
    # index, 19 URLs requested from it (26 anchors, 20 distinct queued URLs, /private/ skipped), level1,
    # level2, f.abc
    assert s.fetched == 22
    assert s.skipped_robots == 2  # /private/secret.abc, and again as the target of /go/secret
    assert s.skipped_duplicate == 1  # /mirror/a-copy.abc == /tunes/a.abc
    assert s.skipped_too_large == 2
    assert s.redirect_loops == 1
    assert s.not_modified == 0
    assert s.ignored == 1  # readme.txt
    assert s.retries == 3  # slow (timeout), flaky (500), busy (429)
    assert s.errors == {"too_many_redirects": 1, "http_404": 1, "offsite_redirect": 1}

    paths = site.paths()
    # robots.txt fetched once, first; the disallowed tune never requested
    assert paths[0] == "/robots.txt" and paths.count("/robots.txt") == 1
    assert not any(p.startswith("/private/") for p in paths)
    # depth limit: level2 (depth 2) is fetched, its links (depth 3) are not
    assert "/level2.html" in paths
    assert "/level3.html" not in paths and "/tunes/g.abc" not in paths
    # never queued: images, fragments of known URLs; each URL fetched once
    assert "/img/logo.png" not in paths
    assert paths.count("/tunes/a.abc") == 1
    # retries reached the server
    assert paths.count("/flaky.abc") == 2 and paths.count("/busy.abc") == 2 and paths.count("/slow.abc") == 2
    # redirects: the loop stopped at its first repeat; the long chain after max_redirects hops
    assert paths.count("/loop-a") == 1 and paths.count("/loop-b") == 1
    assert [p for p in paths if p.startswith("/hop/")] == [f"/hop/{i}" for i in range(6)]
    # every request identified itself
    assert all(h.headers["user-agent"].startswith("clamp-pipeline-crawler/") for h in site.log)


def test_record_fields(site: FixtureSite, tmp_path: Path) -> None:
    by_url = {r.metadata["url"]: r for r in Crawler(config(site, tmp_path / "state")).crawl()}

    a_url = site.url("/tunes/a.abc")
    a = by_url[a_url]
    assert a == RawRecord(
        id="web:" + hashlib.sha256(a_url.encode()).hexdigest()[:16],
        source="web",
        format="abc",
        content=TUNE_A,
        texts=["Tune A", "Tunes"],  # the link's text, then the page's title
        metadata={
            "url": a_url,
            "referrer": site.url("/"),
            "content_type": ABC_TYPE,
            "sha256": hashlib.sha256(TUNE_A).hexdigest(),
            "text_kinds": ["anchor", "title"],
        },
        provenance=a_url,
        license="",
    )
    assert by_url[site.url("/tunes/b.abc")].texts == ["Tune B", "Tunes"]  # whitespace and markup collapsed
    c = by_url[site.url("/tunes/c.mid")]  # two links: the one with words wins over the image
    assert (c.format, c.content, c.texts) == ("midi", MIDI_C, ["Tune C (MIDI)", "Tunes"])
    d = by_url[site.url("/tunes/d.abc")]
    assert d.content == TUNE_D and d.texts == ["Tune D (redirect)", "Tunes"]
    assert d.metadata["redirected_from"] == site.url("/go/tune-d")
    assert d.provenance == site.url("/tunes/d.abc")
    by_type = by_url[site.url("/download?id=7")]
    assert (by_type.format, by_type.texts, by_type.metadata["content_type"]) == ("midi", ["Tunes"], "audio/midi")
    assert by_type.metadata["text_kinds"] == ["title"]
    f = by_url[site.url("/tunes/f.abc")]
    assert f.texts == ["Tune F"] and f.metadata["text_kinds"] == ["anchor"]  # a page without a title
    assert f.metadata["referrer"] == site.url("/level1.html")
    assert by_url[site.url("/slow.abc")].content == SLOW
    assert by_url[site.url("/flaky.abc")].content == FLAKY
    assert by_url[site.url("/busy.abc")].content == BUSY
    # no wall-clock anywhere: records are reproducible
    assert all(
        set(r.metadata) <= {"url", "referrer", "content_type", "sha256", "redirected_from", "text_kinds"}
        for r in by_url.values()
    )


def test_second_crawl_yields_nothing_and_uses_validators(site: FixtureSite, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = list(Crawler(config(site, state)).crawl())
    assert len(first) == 10
    assert "if-none-match" not in site.hits("/etag/e.abc")[0].headers
    site.clear_log()

    crawler = Crawler(config(site, state))
    assert list(crawler.crawl()) == []
    s = crawler.stats
    assert s.downloaded == 0
    assert s.not_modified == 3  # e.abc (ETag), b.abc (Last-Modified), level1.html (ETag)
    # re-fetched without validators, same content: a, c, mirror, slow, flaky, busy, d, download, f
    assert s.skipped_duplicate == 9
    assert s.retries == 0

    (e_hit,) = site.hits("/etag/e.abc")
    assert e_hit.headers["if-none-match"] == ETAG_E
    (b_hit,) = site.hits("/tunes/b.abc")
    assert b_hit.headers["if-modified-since"] == LAST_MODIFIED_B
    # level1.html answered 304: its links came from the state, so f.abc and level2 were still visited
    (l1_hit,) = site.hits("/level1.html")
    assert l1_hit.headers["if-none-match"] == ETAG_LEVEL1
    assert len(site.hits("/tunes/f.abc")) == 1 and len(site.hits("/level2.html")) == 1
    assert not any(h.path.startswith("/private/") for h in site.log)
    # a 404 of the first pass is not asked again; the counts say so
    assert site.hits("/missing.abc") == [] and s.skipped_gone >= 1
    assert s.errors.get("http_404", 0) == 0


def test_resume_after_kill(site: FixtureSite, tmp_path: Path) -> None:
    state = tmp_path / "state"
    crawler = Crawler(config(site, state))
    it = crawler.crawl()
    early = [next(it), next(it)]
    del it, crawler  # simulate a kill: the generator is dropped mid-crawl
    gc.collect()
    early_urls = [r.metadata["url"] for r in early]
    assert early_urls == [site.url("/tunes/a.abc"), site.url("/tunes/b.abc")]  # breadth-first order

    rest = list(Crawler(config(site, state)).crawl())
    resumed = [r.metadata["url"] for r in early + rest]
    assert len(resumed) == len(set(resumed))  # no duplicates

    # ... and the union equals a complete single crawl (fresh state) of the same site
    complete = {r.metadata["url"] for r in Crawler(config(site, tmp_path / "fresh")).crawl()}
    assert set(resumed) == complete == urls(site, EXPECTED_PATHS)
    # the two files yielded before the kill were not downloaded again by the resumed crawl
    # (once by the killed crawl, once by the fresh one; a.abc is also linked from level1.html)
    assert len(site.hits("/tunes/a.abc")) == 2 and len(site.hits("/tunes/b.abc")) == 2

    # the finished state re-runs to nothing
    assert list(Crawler(config(site, state)).crawl()) == []


def test_always_slow_endpoint_is_an_error_after_retries(site: FixtureSite, tmp_path: Path) -> None:
    site.slow_times = 100
    crawler = Crawler(config(site, tmp_path / "state", seeds=[site.url("/slow.abc")], timeout_s=0.2))
    started = time.monotonic()
    assert list(crawler.crawl()) == []
    assert time.monotonic() - started < 2.0
    assert crawler.stats.errors == {"timeout": 1}
    assert crawler.stats.retries == 2
    assert len(site.hits("/slow.abc")) == 3  # 1 + max_retries


def test_rate_limit_per_host(site: FixtureSite, tmp_path: Path) -> None:
    delay = 0.2
    crawler = Crawler(config(site, tmp_path / "state", seeds=[site.url("/small/index.html")], per_host_delay_s=delay))
    got = {r.metadata["url"] for r in crawler.crawl()}
    assert got == urls(site, {"/tunes/a.abc", "/tunes/b.abc", "/tunes/f.abc"})
    times = [h.t for h in site.log]
    assert [h.path for h in site.log] == [
        "/robots.txt",
        "/small/index.html",
        "/tunes/a.abc",
        "/tunes/b.abc",
        "/tunes/f.abc",
    ]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # the server stamps a request when its thread runs, which a loaded machine delays by some
    # milliseconds either way; without the delay the gaps would be a few milliseconds
    assert min(gaps) >= delay - 0.025, gaps


def test_max_pages_ends_the_pass(site: FixtureSite, tmp_path: Path) -> None:
    crawler = Crawler(config(site, tmp_path / "state", max_pages=3))
    got = [r.metadata["url"] for r in crawler.crawl()]
    assert got == [site.url("/tunes/a.abc"), site.url("/tunes/b.abc")]  # index + 2 tunes
    assert crawler.stats.fetched == 3


def test_offsite_seed_and_robots_disallowed_seed(site: FixtureSite, tmp_path: Path) -> None:
    crawler = Crawler(
        config(
            site,
            tmp_path / "state",
            seeds=[site.url("/private/secret.abc"), "http://example.invalid/x.abc", "ftp://x/y"],
            allowed_hosts=[site.base.removeprefix("http://")],
        )
    )
    assert list(crawler.crawl()) == []
    assert crawler.stats.skipped_robots == 1
    assert crawler.stats.fetched == 0
    assert site.paths() == ["/robots.txt"]


def test_missing_robots_allows_all(tmp_path: Path) -> None:
    """A host whose robots.txt is 404 may be crawled entirely (fixture site without robots.txt)."""

    class NoRobots(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/private/x.abc":
                body = TUNE_A
                self.send_response(200)
                self.send_header("Content-Type", ABC_TYPE)
            else:
                body = b"nope"
                self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), NoRobots)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        seed = f"http://127.0.0.1:{server.server_address[1]}/private/x.abc"
        records = list(Crawler(CrawlConfig(seeds=[seed], state_dir=tmp_path / "s", per_host_delay_s=0.0)).crawl())
        assert [r.content for r in records] == [TUNE_A]
    finally:
        server.shutdown()
        server.server_close()


# ----------------------------------------------------------------------------------------- helpers


def test_helpers() -> None:
    assert normalize_url("HTTP://Example.COM:80/a b.abc?q=1#frag") == "http://example.com/a%20b.abc?q=1"
    assert normalize_url("https://example.com:443") == "https://example.com/"
    assert normalize_url("http://example.com:8080/x") == "http://example.com:8080/x"
    assert normalize_url("mailto:a@example.com") is None
    assert normalize_url("/relative") is None

    assert detect_format("http://h/x.MusicXML", "") == "musicxml"
    assert detect_format("http://h/x.krn", "text/plain") == "humdrum"
    assert detect_format("http://h/get?id=1", "audio/midi") == "midi"
    assert detect_format("http://h/page", "text/html") is None

    links = extract_links('<base href="/sub/"><a href="x.abc">Tune <i>X</i>\n</a><a name="n">n</a>', "http://h/p")
    assert links == [("http://h/sub/x.abc", "Tune X")]

    assert retry_after_seconds(None) is None
    assert retry_after_seconds("0") == 0.0
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("soon") is None
    now = datetime(2025, 1, 1, tzinfo=UTC)
    http_date = "Wed, 01 Jan 2025 00:00:30 GMT"
    assert retry_after_seconds(http_date, now=now) == pytest.approx(30.0)
    assert retry_after_seconds(http_date, now=now + timedelta(minutes=1)) == 0.0


def test_sitemaps_from_robots_seed_pages_no_link_reaches(site: FixtureSite, tmp_path: Path) -> None:
    """robots.txt names a sitemap index, which names a sitemap, which names a tune nothing links to."""
    seeds = [site.url("/small/index.html")]
    crawler = Crawler(config(site, tmp_path / "state", seeds=seeds, max_depth=1, sitemaps=True))
    got = {r.metadata["url"] for r in crawler.crawl()}
    assert got == urls(site, {"/tunes/a.abc", "/tunes/b.abc", "/tunes/f.abc", "/tunes/g.abc", "/orphan.abc?a=1&b=2"})
    assert crawler.stats.sitemaps == 2
    assert site.paths()[:3] == ["/robots.txt", "/small/index.html", "/maps/index.xml"]
    assert "/sitemap.xml" not in site.paths()  # robots.txt named its sitemap
    # a sitemap is not a MusicXML score, though its URL ends in .xml
    assert not any(r.endswith(".xml") for r in got)


def test_crawl_delay_fractions_and_groups() -> None:
    from clamp.data.sources.web_fetch import crawl_delay

    ua = "clamp-pipeline-crawler/0.1 (+https://github.com/)"
    # urllib.robotparser reads none of these fractions (it takes whole seconds only)
    assert crawl_delay(["User-agent: *", "Disallow: /p/", "Crawl-delay: 0.5"], ua) == 0.5
    # our own group wins over `*`, wherever it is; a group ends where the next one's agents start
    lines = ["User-agent: other", "Crawl-delay: 5", "", "User-agent: *", "Crawl-delay: 1",
             "User-agent: Clamp-Pipeline-Crawler", "Crawl-delay: 2.5  # ours"]  # fmt: skip
    assert crawl_delay(lines, ua) == 2.5
    assert crawl_delay(lines[:5], ua) == 1.0
    # two agents sharing one group; nonsense and negative values are ignored
    assert crawl_delay(["User-agent: a", "User-agent: *", "Crawl-delay: 3"], ua) == 3.0
    assert crawl_delay(["User-agent: *", "Crawl-delay: soon", "Crawl-delay: -1"], ua) is None
    assert crawl_delay([], ua) is None
