"""A polite, resumable web crawler that yields music files (ABC, MusicXML, Humdrum, MIDI) as RawRecords.

Standard library only (urllib, html.parser, urllib.robotparser, sqlite3); no Prefect here.

Behaviour, in short:

* Breadth-first from the seeds (depth 0), following ``<a href>`` links of HTML pages on the allowed hosts
  up to ``max_depth``. Music files (by URL suffix or Content-Type) are downloaded and yielded; HTML pages are
  parsed for links; anything else is ignored.
* Polite: robots.txt per host (fetched through the same rate-limited fetcher; 4xx other than 401/403 means
  allow all, 401/403 or an unreachable robots.txt means disallow all), at least ``per_host_delay_s``
  (or the robots.txt Crawl-delay, if larger) between two requests to one host, a descriptive User-Agent.
* Robust: retries with exponential backoff on 429, 5xx, timeouts and connection errors (Retry-After is
  honoured), a cap on the size of one response, redirects followed by hand with loop detection.
* Incremental: ETag / Last-Modified validators are remembered per URL and sent back as If-None-Match /
  If-Modified-Since; identical content at several URLs (or again at the same URL) is yielded once.
* Resumable: all state lives in an SQLite database in ``state_dir`` and is committed after every URL. A new
  Crawler on the same ``state_dir`` continues the unfinished pass; once a pass is complete (frontier empty),
  the next ``crawl()`` starts a new pass from the seeds, which yields only new or changed content.
"""

from __future__ import annotations

import hashlib
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPException, HTTPMessage, InvalidURL
from pathlib import Path
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

from pydantic import BaseModel, ConfigDict, Field

from clamp.config import SourceSpec
from clamp.data.records import FORMAT_BY_SUFFIX, RawRecord
from clamp.data.sources.web_page import LinkContext, extract_link_contexts, sitemap_kind, sitemap_urls
from clamp.data.sources.web_state import CrawlItem, CrawlState
from clamp.data.sources.web_urls import (
    charset_of,
    detect_format,
    host_of,
    mime_of,
    normalize_host,
    normalize_url,
    record_id,
    retry_after_seconds,
    url_suffix,
)

log = logging.getLogger("clamp.data.web")

SOURCE = "web"
STATE_FILE = "crawl.sqlite3"
HTML_CONTENT_TYPES = ("text/html", "application/xhtml+xml")

# Links with these suffixes are neither music nor HTML: never requested.
SKIP_SUFFIXES = frozenset(
    {
        ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".bmp", ".tif", ".tiff",
        ".css", ".js", ".json", ".pdf", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".tar",
        ".mp3", ".wav", ".ogg", ".flac", ".m4a", ".aac", ".mp4", ".webm", ".avi", ".mov", ".mkv",
        ".woff", ".woff2", ".ttf", ".otf", ".eot", ".exe", ".dmg", ".iso",
    }
)  # fmt: skip

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
RETRY_CODES = frozenset({429, 500, 502, 503, 504})
READ_CHUNK = 64 * 1024


_SOURCE_FIELDS = SourceSpec.model_fields


class CrawlConfig(BaseModel):
    """What to crawl and how politely. Only ``seeds`` and ``state_dir`` are required; the settings
    a build's `SourceSpec` also has take its defaults, so they are written once, there."""

    model_config = ConfigDict(extra="forbid")

    seeds: list[str] = Field(min_length=1)
    state_dir: Path
    allowed_hosts: list[str] | None = None  # "host" or "host:port"; default: the hosts of the seeds
    # seeds are depth 0; links of a page at max_depth are not followed
    max_depth: int = Field(_SOURCE_FIELDS["max_depth"].default, ge=0)
    # URLs taken from the frontier in one pass; the pass ends when reached
    max_pages: int = Field(_SOURCE_FIELDS["max_pages"].default, ge=1)
    max_bytes: int = Field(1_000_000, ge=0)  # cap on one response body; bigger ones are skipped and counted
    # minimum seconds between the starts of two requests to one host
    per_host_delay_s: float = Field(_SOURCE_FIELDS["per_host_delay_s"].default, ge=0)
    timeout_s: float = Field(10.0, gt=0)  # socket timeout (connect and each read)
    max_retries: int = Field(3, ge=0)  # retries on 429 / 5xx / timeouts / connection errors
    backoff_base_s: float = Field(0.5, ge=0)  # retry n waits backoff_base_s * 2**n, or Retry-After when given
    max_backoff_s: float = Field(60.0, ge=0)  # cap on one wait, Retry-After included
    max_redirects: int = Field(5, ge=0)
    user_agent: str = "clamp-pipeline-crawler/0.1 (+https://github.com/)"
    # seed each pass with the seed hosts' sitemaps too: robots.txt `Sitemap:` lines, else /sitemap.xml
    sitemaps: bool = True

    @classmethod
    def from_source(cls, spec: SourceSpec, state_dir: Path) -> CrawlConfig:
        """The crawl of a build's web source."""
        return cls(
            state_dir=state_dir,
            **spec.model_dump(include={"seeds", "allowed_hosts", "max_depth", "per_host_delay_s", "max_pages"}),
        )


@dataclass
class CrawlStats:
    """Counters of one ``crawl()`` call."""

    requests: int = 0  # every HTTP request sent: robots.txt, retries and redirect hops included
    fetched: int = 0  # frontier URLs that were requested (once each, whatever the outcome)
    downloaded: int = 0  # music records yielded
    skipped_robots: int = 0
    skipped_too_large: int = 0
    skipped_duplicate: int = 0  # music content whose sha256 was already seen (any URL, any pass)
    not_modified: int = 0  # 304 answers to a conditional request
    sitemaps: int = 0  # sitemaps and sitemap indexes read (robots.txt `Sitemap:` lines, /sitemap.xml)
    skipped_gone: int = 0  # URLs that answered 404 or 410 in an earlier pass: not requested again
    ignored: int = 0  # responses that are neither music nor HTML
    retries: int = 0
    redirect_loops: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # reason -> count, e.g. "http_404", "timeout"
    # music records with a text of each kind (clamp.data.sources.web_page.TEXT_KINDS)
    texts_by_kind: dict[str, int] = field(default_factory=dict)

    def error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1


# --------------------------------------------------------------------------------------------- fetching


@dataclass
class _Response:
    status: int
    url: str
    headers: HTTPMessage
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "") or ""


class _TooLarge(Exception):
    pass


@dataclass
class _Fetch:
    """Outcome of fetching one URL, redirects and retries included."""

    kind: str  # "ok" | "not_modified" | "too_large" | "redirect_loop" | "robots" | "error"
    url: str  # the last URL requested (the redirect target, if any)
    response: _Response | None = None
    reason: str = ""


def _build_opener() -> urllib.request.OpenerDirector:
    """An opener without HTTPErrorProcessor / redirect handling: every status comes back as a response."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
    ):
        opener.add_handler(handler)
    return opener


class Crawler:
    """Crawls ``config.seeds``; ``crawl()`` yields one RawRecord per new music file.

    ``stats`` holds the counters of the latest ``crawl()`` call. One Crawler (or process) per state_dir
    at a time: the state is not locked against concurrent crawlers.
    """

    def __init__(self, config: CrawlConfig) -> None:
        self.config = config
        self.stats = CrawlStats()
        hosts = config.allowed_hosts
        if hosts is None:
            hosts = [host_of(u) for u in (normalize_url(s) for s in config.seeds) if u is not None]
        self.allowed_hosts = frozenset(normalize_host(h) for h in hosts)
        self._opener = _build_opener()
        self._robots: dict[str, RobotFileParser] = {}
        self._next_request_at: dict[str, float] = {}
        self._clock = time.monotonic
        self._sleep = time.sleep

    # ------------------------------------------------------------------ the crawl loop

    def crawl(self) -> Iterator[RawRecord]:
        cfg = self.config
        self.stats = CrawlStats()
        state = CrawlState(cfg.state_dir / STATE_FILE)
        try:
            if state.frontier_size() == 0:
                seeds = [u for u in (self._seed(s) for s in cfg.seeds) if u is not None]
                if cfg.sitemaps:
                    seeds += [u for u in self._sitemap_seeds(seeds) if u not in seeds]
                number = state.start_pass(seeds)
                log.info("crawl pass %d: starting from %d seed(s)", number, len(seeds))
            else:
                log.info(
                    "crawl pass %s: resuming, %d URL(s) queued, %d visited",
                    state.get_meta("pass"),
                    state.frontier_size(),
                    state.visited_count(),
                )
            while (item := state.next_item()) is not None:
                if state.visited_count() >= cfg.max_pages:
                    dropped = state.frontier_size()
                    log.warning("max_pages=%d reached: pass ends, %d queued URL(s) dropped", cfg.max_pages, dropped)
                    state.clear_frontier()
                    break
                record = self._process(state, item)
                # Delivery is at-most-once: the record's URL, content hash and validators are committed
                # *before* the record is yielded, so a crawler killed after this point never fetches or
                # yields it again (no duplicates downstream); a consumer that must not lose records has to
                # persist each one before asking for the next. A kill before the commit re-fetches the URL
                # on resume (fetching is at-least-once, yielding at-most-once).
                if record is not None:
                    yield record
            log.info("crawl done: %s", self.stats)
        finally:
            state.close()

    def _sitemap_seeds(self, seeds: list[str]) -> list[str]:
        """The sitemaps of the seeds' hosts: the `Sitemap:` lines of their robots.txt, else
        `/sitemap.xml` (a 404 there is remembered, so a site without one costs one request)."""
        out: list[str] = []
        for host_root in dict.fromkeys(f"{urlsplit(s).scheme}://{urlsplit(s).netloc}" for s in seeds):
            listed = self._robots_for(host_root + "/").site_maps() or [host_root + "/sitemap.xml"]
            for u in listed:
                url = normalize_url(urljoin(host_root + "/", u.strip()))
                if url is not None and host_of(url) in self.allowed_hosts and url not in out:
                    out.append(url)
        return out

    def fetch_file(self, url: str) -> tuple[str, str, bytes, str] | str:
        """One music file, with the crawl's politeness (robots.txt, the per-host delay, retries,
        the byte cap, redirects): (final URL, format, body, content type), or the reason there is
        none (`robots`, `too_large`, `http_404`, `timeout`, `not_music`, ...). Nothing is stored."""
        norm = normalize_url(url)
        if norm is None:
            return "invalid_url"
        if not self._robots_allow(norm):
            return "robots"
        fetch = self._fetch(None, norm)
        if fetch.kind in ("robots", "too_large", "redirect_loop"):
            return fetch.kind
        if fetch.kind != "ok" or fetch.response is None:
            return fetch.reason or fetch.kind
        ctype = fetch.response.content_type
        fmt = detect_format(fetch.url, ctype) or FORMAT_BY_SUFFIX.get(url_suffix(norm))
        if fmt is None:
            return "not_music"
        return fetch.url, fmt, fetch.response.body, ctype

    def _seed(self, seed: str) -> str | None:
        url = normalize_url(seed)
        if url is None or host_of(url) not in self.allowed_hosts:
            log.warning("seed %r is not an http(s) URL on an allowed host: ignored", seed)
            return None
        return url

    def _process(self, state: CrawlState, item: CrawlItem) -> RawRecord | None:
        """Fetch one frontier URL and commit what it taught; return the record to yield, if any."""
        stats = self.stats
        if not self._robots_allow(item.url):
            stats.skipped_robots += 1
            log.info("robots.txt disallows %s", item.url)
            state.finish(item, "robots")
            return None
        if state.is_gone(item.url):
            stats.skipped_gone += 1
            log.info("gone in an earlier pass (404/410), not asked again: %s", item.url)
            state.finish(item, "gone")
            return None
        stats.fetched += 1
        fetch = self._fetch(state, item.url)
        if fetch.kind == "robots":
            stats.skipped_robots += 1
            log.info("robots.txt disallows redirect target %s (from %s)", fetch.url, item.url)
            state.finish(item, "robots")
            return None
        if fetch.kind in ("too_large", "redirect_loop", "error"):
            if fetch.kind == "too_large":
                stats.skipped_too_large += 1
            elif fetch.kind == "redirect_loop":
                stats.redirect_loops += 1
            else:
                stats.error(fetch.reason)
            # a 404 or 410 is remembered across passes; a 5xx, a 429 or a timeout is asked again next pass
            gone = int(fetch.reason[5:]) if fetch.reason in ("http_404", "http_410") else None
            state.finish(item, fetch.kind if fetch.kind != "error" else fetch.reason, gone_status=gone)
            return None

        final_url = fetch.url
        if fetch.kind == "not_modified":
            stats.not_modified += 1
            links = state.page_links(final_url)
            enqueue = self._links_to_enqueue(links or [], item.depth, final_url)
            queued = state.finish(item, "not_modified", final_url=final_url, enqueue=enqueue)
            if links is None:
                log.info("not modified: %s", final_url)
            else:
                log.info("not modified: page %s, %d link(s) newly queued from its stored links", final_url, queued)
            return None

        response = fetch.response
        assert response is not None
        validators = (response.headers.get("ETag"), response.headers.get("Last-Modified"))
        content_type = response.content_type
        if sitemap_kind(response.body) is not None:
            return self._sitemap(state, item, final_url, response.body, validators)
        fmt = detect_format(final_url, content_type)
        if fmt is None and final_url != item.url:
            fmt = FORMAT_BY_SUFFIX.get(url_suffix(item.url))
        if fmt is not None:
            sha256 = hashlib.sha256(response.body).hexdigest()
            if state.hash_seen(sha256):
                stats.skipped_duplicate += 1
                log.info("duplicate content (sha256 %s…): %s", sha256[:12], final_url)
                state.finish(item, "duplicate", final_url=final_url, validators=validators)
                return None
            metadata = {
                "url": final_url,
                "referrer": item.referrer,
                "content_type": content_type,
                "sha256": sha256,
            }
            if final_url != item.url:
                metadata["redirected_from"] = item.url
            described = LinkContext.decode(item.url, item.text).texts()
            if described:
                metadata["text_kinds"] = [kind for kind, _ in described]
            for kind, _ in described:
                stats.texts_by_kind[kind] = stats.texts_by_kind.get(kind, 0) + 1
            record = RawRecord(
                id=record_id(final_url),
                source=SOURCE,
                format=fmt,
                content=response.body,
                texts=[text for _, text in described],
                metadata=metadata,
                provenance=final_url,
                license="",
            )
            state.finish(item, "downloaded", final_url=final_url, sha256=sha256, validators=validators)
            stats.downloaded += 1
            log.info("downloaded %s (%s, %d bytes)", final_url, fmt, len(response.body))
            return record
        if mime_of(content_type) in HTML_CONTENT_TYPES:
            html = response.body.decode(charset_of(content_type), errors="replace")
            links = [(ctx.url, ctx.encode()) for ctx in extract_link_contexts(html, final_url)]
            enqueue = self._links_to_enqueue(links, item.depth, final_url)
            queued = state.finish(
                item, "page", final_url=final_url, validators=validators, page_links=links, enqueue=enqueue
            )
            log.info("page %s (depth %d): %d link(s), %d newly queued", final_url, item.depth, len(links), queued)
            return None
        stats.ignored += 1
        log.info("ignored %s (content type %r)", final_url, content_type)
        state.finish(item, "ignored", final_url=final_url)
        return None

    def _sitemap(
        self, state: CrawlState, item: CrawlItem, url: str, body: bytes, validators: tuple[str | None, str | None]
    ) -> None:
        """A sitemap's URLs are queued at the sitemap's own depth: they are seeds the site names,
        not links one step further away. A sitemap index's sitemaps are queued the same way."""
        self.stats.sitemaps += 1
        links = [(urljoin(url, u), "") for u in sitemap_urls(body)]  # absolute by the protocol; relative ones too
        enqueue = self._links_to_enqueue(links, item.depth - 1, url)
        queued = state.finish(item, "sitemap", final_url=url, validators=validators, page_links=links, enqueue=enqueue)
        log.info("sitemap %s: %d URL(s), %d newly queued", url, len(links), queued)

    def _links_to_enqueue(
        self, links: list[tuple[str, str]], depth: int, referrer: str
    ) -> list[tuple[str, int, str, str]]:
        if depth + 1 > self.config.max_depth:
            return []
        # url -> (how many texts, the context as stored) of its link that says the most, the first of equals
        best: dict[str, tuple[int, str]] = {}
        for href, text in links:
            url = normalize_url(href)
            if url is None or host_of(url) not in self.allowed_hosts or url_suffix(url) in SKIP_SUFFIXES:
                continue
            n_texts = len(LinkContext.decode(url, text).texts())
            if url not in best or n_texts > best[url][0]:
                best[url] = (n_texts, text)
        return [(url, depth + 1, referrer, text) for url, (_, text) in best.items()]

    # ------------------------------------------------------------------ robots.txt

    def _robots_allow(self, url: str) -> bool:
        return self._robots_for(url).can_fetch(self.config.user_agent, url)

    def _robots_for(self, url: str) -> RobotFileParser:
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        parser = self._robots.get(key)
        if parser is not None:
            return parser
        robots_url = key + "/robots.txt"
        parser = RobotFileParser(robots_url)
        fetch = self._fetch(None, robots_url, robots=True)
        status = fetch.response.status if fetch.response is not None else None
        if fetch.kind == "ok" and status is not None and 200 <= status < 300:
            assert fetch.response is not None
            parser.parse(fetch.response.body.decode("utf-8", errors="replace").splitlines())
            log.info("robots.txt of %s: %d byte(s)", parts.netloc, len(fetch.response.body))
        elif fetch.kind == "error" and status in (401, 403):
            parser.disallow_all = True
            log.warning("robots.txt of %s: HTTP %s, host disallowed", parts.netloc, status)
        elif fetch.kind == "error" and status is not None and 400 <= status < 500:
            parser.allow_all = True
            log.info("robots.txt of %s: HTTP %s, all allowed", parts.netloc, status)
        else:
            parser.disallow_all = True
            log.warning(
                "robots.txt of %s unavailable (%s %s): host disallowed for this run",
                parts.netloc,
                fetch.kind,
                fetch.reason,
            )
        self._robots[key] = parser
        return parser

    def _host_delay(self, host_key: str) -> float:
        delay = self.config.per_host_delay_s
        parser = self._robots.get(host_key)
        if parser is not None:
            crawl_delay = parser.crawl_delay(self.config.user_agent)
            if crawl_delay:
                delay = max(delay, float(crawl_delay))
        return delay

    # ------------------------------------------------------------------ HTTP

    def _fetch(self, state: CrawlState | None, url: str, *, robots: bool = False) -> _Fetch:
        """GET ``url`` following redirects by hand. ``state`` supplies cache validators (None: no cache)."""
        chain = [url]
        current = url
        while True:
            headers: dict[str, str] = {}
            if state is not None:
                etag, last_modified = state.validators(current)
                if etag:
                    headers["If-None-Match"] = etag
                if last_modified:
                    headers["If-Modified-Since"] = last_modified
            try:
                response = self._get_with_retries(current, headers)
            except _TooLarge:
                return _Fetch("too_large", current)
            except _FetchError as exc:
                return _Fetch("error", current, response=exc.response, reason=exc.reason)
            if response.status == 304:
                return _Fetch("not_modified", current, response=response)
            if 200 <= response.status < 300:
                return _Fetch("ok", current, response=response)
            if response.status not in REDIRECT_CODES:
                log.warning("HTTP %d for %s", response.status, current)
                return _Fetch("error", current, response=response, reason=f"http_{response.status}")
            location = response.headers.get("Location")
            target = normalize_url(urljoin(current, location)) if location else None
            if target is None:
                log.warning("redirect without a usable Location from %s", current)
                return _Fetch("error", current, response=response, reason="bad_redirect")
            if target in chain:
                log.warning("redirect loop: %s", " -> ".join([*chain, target]))
                return _Fetch("redirect_loop", current)
            if len(chain) > self.config.max_redirects:
                log.warning("more than %d redirects from %s", self.config.max_redirects, url)
                return _Fetch("error", current, reason="too_many_redirects")
            if not robots:
                if host_of(target) not in self.allowed_hosts:
                    log.info("redirect from %s leaves the allowed hosts: %s", current, target)
                    return _Fetch("error", current, reason="offsite_redirect")
                if not self._robots_allow(target):
                    return _Fetch("robots", target)
            chain.append(target)
            current = target

    def _get_with_retries(self, url: str, headers: dict[str, str]) -> _Response:
        cfg = self.config
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                response = self._get_once(url, headers)
            except _TooLarge:
                raise
            except (InvalidURL, ValueError) as exc:  # not worth a retry
                log.warning("invalid URL %s: %s", url, exc)
                raise _FetchError("invalid_url", None) from exc
            except TimeoutError as exc:
                reason, detail, response = "timeout", str(exc) or "timed out", None
            except urllib.error.URLError as exc:
                is_timeout = isinstance(exc.reason, TimeoutError)
                reason, detail, response = ("timeout" if is_timeout else "connection"), str(exc.reason), None
            except (HTTPException, OSError) as exc:
                reason, detail, response = "connection", f"{type(exc).__name__}: {exc}", None
            else:
                if response.status not in RETRY_CODES:
                    return response
                reason, detail = f"http_{response.status}", f"HTTP {response.status}"
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt >= cfg.max_retries:
                log.warning("giving up on %s after %d attempt(s): %s", url, attempt + 1, detail)
                raise _FetchError(reason, response)
            wait = retry_after if retry_after is not None else cfg.backoff_base_s * (2**attempt)
            wait = min(wait, cfg.max_backoff_s)
            attempt += 1
            self.stats.retries += 1
            log.info("retry %d/%d of %s in %.2fs: %s", attempt, cfg.max_retries, url, wait, detail)
            if wait > 0:
                self._sleep(wait)

    def _get_once(self, url: str, headers: dict[str, str]) -> _Response:
        cfg = self.config
        parts = urlsplit(url)
        host_key = f"{parts.scheme}://{parts.netloc}"
        self._wait_for_host(host_key)
        request = urllib.request.Request(
            url, headers={"User-Agent": cfg.user_agent, "Accept-Encoding": "identity", **headers}
        )
        self.stats.requests += 1
        log.debug("GET %s", url)
        with self._opener.open(request, timeout=cfg.timeout_s) as raw:
            status = int(raw.status)
            response = _Response(status=status, url=url, headers=raw.headers)
            if status >= 300:
                return response  # redirects, 304 and errors: the body is not needed
            length = raw.headers.get("Content-Length")
            if length is not None and length.strip().isdigit() and int(length) > cfg.max_bytes:
                log.warning("too large: %s (Content-Length %s > %d)", url, length, cfg.max_bytes)
                raise _TooLarge(url)
            chunks: list[bytes] = []
            size = 0
            while size <= cfg.max_bytes:
                chunk = raw.read(min(READ_CHUNK, cfg.max_bytes + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > cfg.max_bytes:
                log.warning("too large: %s (more than %d bytes)", url, cfg.max_bytes)
                raise _TooLarge(url)
            response.body = b"".join(chunks)
            return response

    def _wait_for_host(self, host_key: str) -> None:
        """Sleep until ``per_host_delay_s`` (or Crawl-delay) has passed since the last request to the host."""
        now = self._clock()
        ready_at = self._next_request_at.get(host_key, now)
        if ready_at > now:
            self._sleep(ready_at - now)
            now = self._clock()
        self._next_request_at[host_key] = now + self._host_delay(host_key)


class _FetchError(Exception):
    def __init__(self, reason: str, response: _Response | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.response = response
