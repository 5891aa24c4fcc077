"""A polite, resumable web crawler that yields music files (ABC, MusicXML, Humdrum, MIDI) as RawRecords.

HTTP through httpx (`web_fetch.PoliteFetcher`), the state in SQLite (`web_state.CrawlState`); no
Prefect here.

Behaviour, in short:

* Concurrent across hosts: up to ``concurrency`` hosts are fetched at once, each host's URLs one at a
  time in the order they were found.
* Breadth-first from the seeds (depth 0) within a host, following ``<a href>`` links of HTML pages on the allowed hosts
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
import heapq
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from clamp.config import SourceSpec
from clamp.data.records import FORMAT_BY_SUFFIX, RawRecord
from clamp.data.sources.web_fetch import Fetch, FetchCounters, PoliteFetcher, host_key
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
    url_suffix,
)

log = logging.getLogger("clamp.data.web")

SOURCE = "web"
STATE_FILE = "crawl.sqlite3"
HTML_CONTENT_TYPES = ("text/html", "application/xhtml+xml")
DEFAULT_CONCURRENCY = 16

# Links with these suffixes are neither music nor HTML: never requested.
SKIP_SUFFIXES = frozenset(
    {
        ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".bmp", ".tif", ".tiff",
        ".css", ".js", ".json", ".pdf", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".tar",
        ".mp3", ".wav", ".ogg", ".flac", ".m4a", ".aac", ".mp4", ".webm", ".avi", ".mov", ".mkv",
        ".woff", ".woff2", ".ttf", ".otf", ".eot", ".exe", ".dmg", ".iso",
    }
)  # fmt: skip


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
    # hosts fetched at once (each host one request at a time, after its delay)
    concurrency: int = Field(DEFAULT_CONCURRENCY, ge=1)
    # keep each download in the state, committed with its URL (`CrawlState.stored_records`): a
    # build replays them, and a crawl killed at any point loses none and stores none twice
    keep_records: bool = False
    # (index, count): crawl only the index-th of count shares of the allowed hosts, so `count`
    # crawlers (say Dask workers), each with its own state_dir, split a crawl with no host shared
    partition: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _partition_in_range(self) -> CrawlConfig:
        if self.partition is not None and not 0 <= self.partition[0] < self.partition[1]:
            raise ValueError(f"partition {self.partition}: need 0 <= index < count")
        return self

    @classmethod
    def from_source(cls, spec: SourceSpec, state_dir: Path) -> CrawlConfig:
        """The crawl of a build's web source."""
        fields = {"seeds", "allowed_hosts", "max_depth", "per_host_delay_s", "max_pages", "concurrency"}
        return cls(state_dir=state_dir, **spec.model_dump(include=fields, exclude_none=True))


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


class Crawler:
    """Crawls ``config.seeds``; ``crawl()`` yields one RawRecord per new music file.

    Up to ``config.concurrency`` hosts are fetched at once, each host's URLs one at a time in the
    order they were queued (`clamp.data.sources.web_fetch.PoliteFetcher`). The thread that
    iterates ``crawl()`` owns the state: it hands URLs to fetch threads and commits what each
    answer taught, so a record is committed before it is yielded, whatever thread fetched it.
    ``stats`` holds the counters of the latest ``crawl()`` call. One Crawler (or process) per
    state_dir at a time: the state is not locked against concurrent crawlers.
    """

    def __init__(self, config: CrawlConfig) -> None:
        self.config = config
        self.stats = CrawlStats()
        # the hosts of the whole crawl, and those of this share (all of them without a partition)
        self.crawl_hosts = hosts_of_crawl(config)
        self.allowed_hosts = partition_hosts(self.crawl_hosts, config.partition)
        self.fetcher = PoliteFetcher(config, self.allowed_hosts)
        # called with (stats, URLs queued) after each URL is settled: a progress display
        self.on_progress: Callable[[CrawlStats, int], None] | None = None

    # ------------------------------------------------------------------ the crawl loop

    def crawl(self) -> Iterator[RawRecord]:
        cfg = self.config
        self.stats = CrawlStats()
        self.fetcher.counters = FetchCounters()
        state = CrawlState(cfg.state_dir / STATE_FILE)
        pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="crawl")
        try:
            if state.frontier_size() == 0:
                seeds = [u for u in (self._seed(s) for s in self._own_seeds()) if u is not None]
                if cfg.sitemaps:
                    seeds += [u for u in self._sitemap_seeds(pool, seeds) if u not in seeds]
                number = state.start_pass(seeds)
                log.info("crawl pass %d: starting from %d seed(s)", number, len(seeds))
            else:
                log.info(
                    "crawl pass %s: resuming, %d URL(s) queued, %d visited",
                    state.get_meta("pass"),
                    state.frontier_size(),
                    state.visited_count(),
                )
            frontier = HostQueues(state.frontier_items(), self.fetcher.next_request_at)
            inflight: dict[Future[Fetch], CrawlItem] = {}
            visited = state.visited_count()
            while True:
                # hand out the URLs of hosts that are idle and past their delay, up to the limits
                while len(inflight) < cfg.concurrency and visited + len(inflight) < cfg.max_pages:
                    item = frontier.pop_ready(self.fetcher._clock())
                    if item is None:
                        break
                    if not state.in_frontier(item.url):  # taken by a redirect that ended there
                        frontier.release(item.url)
                        continue
                    if state.is_gone(item.url):
                        self.stats.skipped_gone += 1
                        log.info("gone in an earlier pass (404/410), not asked again: %s", item.url)
                        state.finish(item, "gone")
                        visited += 1
                        frontier.release(item.url)
                        continue
                    inflight[pool.submit(self._fetch_item, state, item)] = item
                if not inflight:
                    if len(frontier) == 0:
                        break
                    if visited >= cfg.max_pages:
                        log.warning("max_pages=%d reached: pass ends, %d queued URL(s) dropped",
                                    cfg.max_pages, state.frontier_size())  # fmt: skip
                        state.clear_frontier()
                        break
                    time.sleep(max(0.0, min(frontier.next_ready() - self.fetcher._clock(), 0.05)))
                    continue
                # wake for a host whose delay ends, if another URL may be handed out
                can_hand_out = len(inflight) < cfg.concurrency and visited + len(inflight) < cfg.max_pages
                ready = frontier.next_ready() if can_hand_out else math.inf
                timeout = None if ready == math.inf else max(0.0, ready - self.fetcher._clock())
                done, _ = wait(inflight, timeout=timeout, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: inflight[f].seq):
                    item = inflight.pop(future)
                    record, queued = self._settle(state, item, future.result())
                    visited += 1
                    frontier.release(item.url)
                    frontier.extend(queued)
                    if self.on_progress is not None:
                        self.on_progress(self.stats, len(frontier))
                    # Delivery is at-most-once: the record's URL, content hash and validators are committed
                    # *before* the record is yielded, so a crawler killed after this point never fetches or
                    # yields it again (no duplicates downstream); a consumer that must not lose records has to
                    # persist each one before asking for the next. A kill before the commit re-fetches the URL
                    # on resume (fetching is at-least-once, yielding at-most-once).
                    if record is not None:
                        yield record
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            self.fetcher.close()  # its connections; a later crawl() opens new ones
            self.stats.requests = self.fetcher.counters.requests
            self.stats.retries = self.fetcher.counters.retries
            state.close()
        log.info("crawl done: %s", self.stats)  # reached only when the pass ran to its end

    def _sitemap_seeds(self, pool: ThreadPoolExecutor, seeds: list[str]) -> list[str]:
        """The sitemaps of the seeds' hosts: the `Sitemap:` lines of their robots.txt, else
        `/sitemap.xml` (a 404 there is remembered, so a site without one costs one request)."""
        roots = list(dict.fromkeys(f"{urlsplit(s).scheme}://{urlsplit(s).netloc}" for s in seeds))
        out: list[str] = []
        for host_root, robots in zip(roots, pool.map(lambda r: self.fetcher.robots_for(r + "/"), roots), strict=True):
            for u in robots.site_maps() or [host_root + "/sitemap.xml"]:
                url = normalize_url(urljoin(host_root + "/", u.strip()))
                if url is not None and host_of(url) in self.allowed_hosts and url not in out:
                    out.append(url)
        return out

    def _own_seeds(self) -> list[str]:
        """The seeds, less those of hosts another partition crawls."""
        if self.config.partition is None:
            return self.config.seeds
        mine = [
            s for s in self.config.seeds if (u := normalize_url(s)) is not None and host_of(u) in self.allowed_hosts
        ]
        return mine

    def _seed(self, seed: str) -> str | None:
        url = normalize_url(seed)
        if url is None or host_of(url) not in self.allowed_hosts:
            log.warning("seed %r is not an http(s) URL on an allowed host: ignored", seed)
            return None
        return url

    def _fetch_item(self, state: CrawlState, item: CrawlItem) -> Fetch:
        """On a fetch thread: robots.txt, then the URL (conditional on the validators stored)."""
        if not self.fetcher.allowed(item.url):
            return Fetch("disallowed", item.url)
        return self.fetcher.fetch(item.url, state.reader_validators)

    def _settle(self, state: CrawlState, item: CrawlItem, fetch: Fetch) -> tuple[RawRecord | None, list[CrawlItem]]:
        """Commit what fetching one frontier URL taught; return the record to yield, if any, and
        the URLs newly queued."""
        stats = self.stats
        if fetch.kind == "disallowed":
            stats.skipped_robots += 1
            log.info("robots.txt disallows %s", item.url)
            state.finish(item, "robots")
            return None, []
        stats.fetched += 1
        if fetch.kind == "robots":
            stats.skipped_robots += 1
            log.info("robots.txt disallows redirect target %s (from %s)", fetch.url, item.url)
            state.finish(item, "robots")
            return None, []
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
            return None, []

        final_url = fetch.url
        if fetch.kind == "not_modified":
            stats.not_modified += 1
            links = state.page_links(final_url)
            enqueue, hand_off = self._links_to_enqueue(links or [], item.depth, final_url)
            queued = state.finish(item, "not_modified", final_url=final_url, enqueue=enqueue, hand_off=hand_off)
            if links is None:
                log.info("not modified: %s", final_url)
            else:
                log.info("not modified: page %s, %d link(s) newly queued from its stored links", final_url, len(queued))
            return None, queued

        response = fetch.response
        assert response is not None
        validators = (response.headers.get("ETag"), response.headers.get("Last-Modified"))
        content_type = response.content_type
        if sitemap_kind(response.body) is not None:
            return None, self._sitemap(state, item, final_url, response.body, validators)
        fmt = detect_format(final_url, content_type)
        if fmt is None and final_url != item.url:
            fmt = FORMAT_BY_SUFFIX.get(url_suffix(item.url))
        if fmt is not None:
            return self._music(state, item, fetch, fmt, validators), []
        if mime_of(content_type) in HTML_CONTENT_TYPES:
            html = response.body.decode(charset_of(content_type), errors="replace")
            links = [(ctx.url, ctx.encode()) for ctx in extract_link_contexts(html, final_url)]
            enqueue, hand_off = self._links_to_enqueue(links, item.depth, final_url)
            queued = state.finish(item, "page", final_url=final_url, validators=validators, page_links=links,
                                  enqueue=enqueue, hand_off=hand_off)  # fmt: skip
            log.info("page %s (depth %d): %d link(s), %d newly queued", final_url, item.depth, len(links), len(queued))
            return None, queued
        stats.ignored += 1
        log.info("ignored %s (content type %r)", final_url, content_type)
        state.finish(item, "ignored", final_url=final_url)
        return None, []

    def _music(
        self, state: CrawlState, item: CrawlItem, fetch: Fetch, fmt: str, validators: tuple[str | None, str | None]
    ) -> RawRecord | None:
        stats, final_url, response = self.stats, fetch.url, fetch.response
        assert response is not None
        sha256 = hashlib.sha256(response.body).hexdigest()
        if state.hash_seen(sha256):
            stats.skipped_duplicate += 1
            log.info("duplicate content (sha256 %s…): %s", sha256[:12], final_url)
            state.finish(item, "duplicate", final_url=final_url, validators=validators)
            return None
        metadata = {
            "url": final_url,
            "referrer": item.referrer,
            "content_type": response.content_type,
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
        kept = record if self.config.keep_records else None
        state.finish(item, "downloaded", final_url=final_url, sha256=sha256, validators=validators, record=kept)
        stats.downloaded += 1
        log.info("downloaded %s (%s, %d bytes)", final_url, fmt, len(response.body))
        return record

    def _sitemap(
        self, state: CrawlState, item: CrawlItem, url: str, body: bytes, validators: tuple[str | None, str | None]
    ) -> list[CrawlItem]:
        """A sitemap's URLs are queued at the sitemap's own depth: they are seeds the site names,
        not links one step further away. A sitemap index's sitemaps are queued the same way."""
        self.stats.sitemaps += 1
        links = [(urljoin(url, u), "") for u in sitemap_urls(body)]  # absolute by the protocol; relative ones too
        enqueue, hand_off = self._links_to_enqueue(links, item.depth - 1, url)
        queued = state.finish(item, "sitemap", final_url=url, validators=validators, page_links=links,
                              enqueue=enqueue, hand_off=hand_off)  # fmt: skip
        log.info("sitemap %s: %d URL(s), %d newly queued", url, len(links), len(queued))
        return queued

    def _links_to_enqueue(
        self, links: list[tuple[str, str]], depth: int, referrer: str
    ) -> tuple[list[tuple[str, int, str, str]], list[tuple[str, int, str, str]]]:
        """The links to queue here, and those to hand to the share that crawls their host."""
        if depth + 1 > self.config.max_depth:
            return [], []
        # url -> (how many texts, the context as stored) of its link that says the most, the first of equals
        best: dict[str, tuple[int, str]] = {}
        for href, text in links:
            url = normalize_url(href)
            if url is None or host_of(url) not in self.crawl_hosts or url_suffix(url) in SKIP_SUFFIXES:
                continue
            n_texts = len(LinkContext.decode(url, text).texts())
            if url not in best or n_texts > best[url][0]:
                best[url] = (n_texts, text)
        items = [(url, depth + 1, referrer, text) for url, (_, text) in best.items()]
        mine = [i for i in items if host_of(i[0]) in self.allowed_hosts]
        return mine, [i for i in items if host_of(i[0]) not in self.allowed_hosts]


def hosts_of_crawl(config: CrawlConfig) -> frozenset[str]:
    """Every host the crawl may ask, over all its shares: `allowed_hosts`, else the seeds' hosts."""
    hosts = config.allowed_hosts
    if hosts is None:
        hosts = [host_of(u) for u in (normalize_url(s) for s in config.seeds) if u is not None]
    return frozenset(normalize_host(h) for h in hosts)


def share_of_hosts(hosts: frozenset[str], count: int) -> dict[str, int]:
    """{host: the share of `count` that crawls it} (the inverse of `partition_hosts`)."""
    return {host: i % count for i, host in enumerate(sorted(hosts))}


def partition_hosts(hosts: frozenset[str], partition: tuple[int, int] | None) -> frozenset[str]:
    """The hosts of one share: the sorted hosts dealt out in turn, so shares differ by at most one host."""
    if partition is None:
        return hosts
    index, count = partition
    return frozenset(sorted(hosts)[index::count])


class HostQueues:
    """The frontier in memory, a FIFO per host (`host_key`): `pop_ready` gives the oldest URL of
    a host that has nothing in flight and whose delay has passed (`ready_at(host)`), so the crawl
    keeps many hosts busy and each one polite. Idle hosts wait in a heap keyed by (when they may
    be asked, their oldest URL's place), so a pop costs log(hosts), not hosts."""

    def __init__(self, items: Iterable[CrawlItem], ready_at: Callable[[str], float]) -> None:
        self.ready_at = ready_at
        self.queues: dict[str, deque[CrawlItem]] = {}
        self.busy: set[str] = set()
        self.waiting: list[tuple[float, int, str]] = []  # heap of idle hosts with URLs
        self.in_heap: set[str] = set()
        self.size = 0
        self.extend(items)

    def __len__(self) -> int:
        return self.size

    def extend(self, items: Iterable[CrawlItem]) -> None:
        for item in items:
            host = host_key(item.url)
            self.queues.setdefault(host, deque()).append(item)
            self.size += 1
            self._wait(host)

    def _wait(self, host: str) -> None:
        """Put an idle host with URLs in the heap (a busy one goes back on `release`)."""
        queue = self.queues.get(host)
        if queue and host not in self.busy and host not in self.in_heap:
            heapq.heappush(self.waiting, (self.ready_at(host), queue[0].seq, host))
            self.in_heap.add(host)

    def pop_ready(self, now: float) -> CrawlItem | None:
        """The oldest URL of the idle host that has waited longest, if its delay has passed."""
        if not self.waiting or self.waiting[0][0] > now:
            return None
        _, _, host = heapq.heappop(self.waiting)
        self.in_heap.discard(host)
        self.busy.add(host)
        self.size -= 1
        return self.queues[host].popleft()

    def next_ready(self) -> float:
        """When the next idle host may be asked (inf if none is idle)."""
        return self.waiting[0][0] if self.waiting else math.inf

    def release(self, url: str) -> None:
        """The host of `url` has its answer: it waits for its delay with its next URL, if any."""
        host = host_key(url)
        self.busy.discard(host)
        self._wait(host)
