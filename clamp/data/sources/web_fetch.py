"""Polite HTTP for the crawler and the manifest source: robots.txt, a per-host delay, retries with
backoff, a byte cap and redirects followed by hand. Safe to share between threads: each host has
a lock held from its delay through the response, so one host never has two requests in flight,
whichever thread (or redirect from another host) sends them.

The client is httpx, one `httpx.Client` per host: its keep-alive connection is reused, and
threads never wait on another host's connection pool (one shared pool's lock cost a quarter
of the crawl's time at 50 threads). Measured in docs/crawling.md, beside an asyncio engine.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpx

from clamp.data.records import FORMAT_BY_SUFFIX
from clamp.data.sources.web_urls import detect_format, host_of, normalize_url, retry_after_seconds, url_suffix

log = logging.getLogger("clamp.data.web")

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
RETRY_CODES = frozenset({429, 500, 502, 503, 504})


@dataclass
class Response:
    status: int
    url: str
    headers: httpx.Headers
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "") or ""


@dataclass
class Fetch:
    """Outcome of fetching one URL, redirects and retries included."""

    kind: str  # "ok" | "not_modified" | "too_large" | "redirect_loop" | "robots" | "error"
    url: str  # the last URL requested (the redirect target, if any)
    response: Response | None = None
    reason: str = ""


@dataclass
class FetchCounters:
    """Requests and retries, counted across threads."""

    requests: int = 0  # every HTTP request sent: robots.txt, retries and redirect hops included
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)


class TooLarge(Exception):
    pass


class FetchError(Exception):
    def __init__(self, reason: str, response: Response | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.response = response


# the validators (ETag, Last-Modified) a conditional request sends for a URL
Validators = Callable[[str], tuple[str | None, str | None]]


class PoliteFetcher:
    """GETs with the crawl's politeness. `config` is a `CrawlConfig` (user_agent, timeout_s,
    max_bytes, max_retries, backoff_base_s, max_backoff_s, max_redirects, per_host_delay_s)."""

    def __init__(self, config, allowed_hosts: frozenset[str]) -> None:
        self.config = config
        self.allowed_hosts = allowed_hosts
        self.counters = FetchCounters()
        self._clients: dict[str, httpx.Client] = {}  # one per host: its lock and keep-alive connection
        self._robots: dict[str, RobotFileParser] = {}
        self._crawl_delays: dict[str, float] = {}
        self._last_done: dict[str, float] = {}  # host -> when its latest answer was read
        self._host_locks: dict[str, threading.Lock] = {}
        self._robots_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._clock = time.monotonic
        self._sleep = time.sleep

    def close(self) -> None:
        with self._locks_lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def _client(self, key: str) -> httpx.Client:
        with self._locks_lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = httpx.Client(
                    timeout=httpx.Timeout(self.config.timeout_s),
                    follow_redirects=False,
                    trust_env=False,
                    headers={"User-Agent": self.config.user_agent, "Accept-Encoding": "identity"},
                    limits=httpx.Limits(max_connections=4, max_keepalive_connections=1),
                )
            return client

    def next_request_at(self, url: str) -> float:
        """When the host of `url` may next be asked (`time.monotonic()` seconds; 0 if never asked)."""
        key = host_key(url)
        last = self._last_done.get(key)
        return 0.0 if last is None else last + self.host_delay(key)

    def _lock(self, table: dict[str, threading.Lock], key: str) -> threading.Lock:
        with self._locks_lock:
            return table.setdefault(key, threading.Lock())

    # ------------------------------------------------------------------ robots.txt

    def allowed(self, url: str) -> bool:
        return self.robots_for(url).can_fetch(self.config.user_agent, url)

    def robots_for(self, url: str) -> RobotFileParser:
        """The robots.txt of the host of `url`, fetched once per fetcher (4xx other than 401/403:
        all allowed; 401/403 or unreachable: all disallowed)."""
        key = host_key(url)
        parser = self._robots.get(key)
        if parser is not None:
            return parser
        with self._lock(self._robots_locks, key):
            if key in self._robots:
                return self._robots[key]
            parser = self._read_robots(key)
            self._robots[key] = parser
            return parser

    def _read_robots(self, key: str) -> RobotFileParser:
        netloc = urlsplit(key).netloc
        robots_url = key + "/robots.txt"
        parser = RobotFileParser(robots_url)
        fetch = self.fetch(robots_url, robots=True)
        status = fetch.response.status if fetch.response is not None else None
        if fetch.kind == "ok" and status is not None and 200 <= status < 300:
            assert fetch.response is not None
            lines = fetch.response.body.decode("utf-8", errors="replace").splitlines()
            parser.parse(lines)
            delay = crawl_delay(lines, self.config.user_agent)
            if delay is not None:
                self._crawl_delays[key] = delay
            log.info("robots.txt of %s: %d byte(s), Crawl-delay %s", netloc, len(fetch.response.body), delay)
        elif fetch.kind == "error" and status in (401, 403):
            parser.disallow_all = True
            log.warning("robots.txt of %s: HTTP %s, host disallowed", netloc, status)
        elif fetch.kind == "error" and status is not None and 400 <= status < 500:
            parser.allow_all = True
            log.info("robots.txt of %s: HTTP %s, all allowed", netloc, status)
        else:
            parser.disallow_all = True
            log.warning(
                "robots.txt of %s unavailable (%s %s): host disallowed for this run", netloc, fetch.kind, fetch.reason
            )
        return parser

    def host_delay(self, key: str) -> float:
        """`per_host_delay_s`, or the host's Crawl-delay if larger (capped at `max_backoff_s`)."""
        delay = min(self._crawl_delays.get(key, 0.0), self.config.max_backoff_s)
        return max(self.config.per_host_delay_s, delay)

    # ------------------------------------------------------------------ HTTP

    def fetch_file(self, url: str) -> tuple[str, str, bytes, str] | str:
        """One music file: (final URL, format, body, content type), or the reason there is none
        (`robots`, `too_large`, `http_404`, `timeout`, `not_music`, ...). Nothing is stored."""
        norm = normalize_url(url)
        if norm is None:
            return "invalid_url"
        if not self.allowed(norm):
            return "robots"
        fetch = self.fetch(norm)
        if fetch.kind in ("robots", "too_large", "redirect_loop"):
            return fetch.kind
        if fetch.kind != "ok" or fetch.response is None:
            return fetch.reason or fetch.kind
        ctype = fetch.response.content_type
        fmt = detect_format(fetch.url, ctype) or FORMAT_BY_SUFFIX.get(url_suffix(norm))
        if fmt is None:
            return "not_music"
        return fetch.url, fmt, fetch.response.body, ctype

    def fetch(self, url: str, validators: Validators | None = None, *, robots: bool = False) -> Fetch:
        """GET `url`, following redirects by hand; `validators` gives the conditional-request
        headers of each URL asked (None: unconditional)."""
        chain = [url]
        current = url
        while True:
            headers: dict[str, str] = {}
            if validators is not None:
                etag, last_modified = validators(current)
                if etag:
                    headers["If-None-Match"] = etag
                if last_modified:
                    headers["If-Modified-Since"] = last_modified
            try:
                response = self._get_with_retries(current, headers)
            except TooLarge:
                return Fetch("too_large", current)
            except FetchError as exc:
                return Fetch("error", current, response=exc.response, reason=exc.reason)
            if response.status == 304:
                return Fetch("not_modified", current, response=response)
            if 200 <= response.status < 300:
                return Fetch("ok", current, response=response)
            if response.status not in REDIRECT_CODES:
                log.warning("HTTP %d for %s", response.status, current)
                return Fetch("error", current, response=response, reason=f"http_{response.status}")
            location = response.headers.get("Location")
            target = normalize_url(urljoin(current, location)) if location else None
            if target is None:
                log.warning("redirect without a usable Location from %s", current)
                return Fetch("error", current, response=response, reason="bad_redirect")
            if target in chain:
                log.warning("redirect loop: %s", " -> ".join([*chain, target]))
                return Fetch("redirect_loop", current)
            if len(chain) > self.config.max_redirects:
                log.warning("more than %d redirects from %s", self.config.max_redirects, url)
                return Fetch("error", current, reason="too_many_redirects")
            if not robots:
                if host_of(target) not in self.allowed_hosts:
                    log.info("redirect from %s leaves the allowed hosts: %s", current, target)
                    return Fetch("error", current, reason="offsite_redirect")
                if not self.allowed(target):
                    return Fetch("robots", target)
            chain.append(target)
            current = target

    def _get_with_retries(self, url: str, headers: dict[str, str]) -> Response:
        cfg = self.config
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                response = self._get_once(url, headers)
            except TooLarge:
                raise
            except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError) as exc:  # not worth a retry
                log.warning("invalid URL %s: %s", url, exc)
                raise FetchError("invalid_url", None) from exc
            except (httpx.TimeoutException, TimeoutError) as exc:
                reason, detail, response = "timeout", str(exc) or "timed out", None
            except (httpx.HTTPError, OSError) as exc:
                reason, detail, response = "connection", f"{type(exc).__name__}: {exc}", None
            else:
                if response.status not in RETRY_CODES:
                    return response
                reason, detail = f"http_{response.status}", f"HTTP {response.status}"
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt >= cfg.max_retries:
                log.warning("giving up on %s after %d attempt(s): %s", url, attempt + 1, detail)
                raise FetchError(reason, response)
            wait = retry_after if retry_after is not None else cfg.backoff_base_s * (2**attempt)
            wait = min(wait, cfg.max_backoff_s)
            attempt += 1
            self.counters.add("retries")
            log.info("retry %d/%d of %s in %.2fs: %s", attempt, cfg.max_retries, url, wait, detail)
            if wait > 0:
                self._sleep(wait)

    def _get_once(self, url: str, headers: dict[str, str]) -> Response:
        key = host_key(url)
        # held from the host's delay to the end of its response: one request per host at a time
        with self._lock(self._host_locks, key):
            self._wait_for_host(key)
            self.counters.add("requests")
            log.debug("GET %s", url)
            try:
                return self._read(key, url, headers)
            finally:
                self._last_done[key] = self._clock()

    def _read(self, key: str, url: str, headers: dict[str, str]) -> Response:
        cfg = self.config
        with self._client(key).stream("GET", url, headers=headers) as raw:
            response = Response(status=raw.status_code, url=url, headers=raw.headers)
            if response.status >= 300:
                return response  # redirects, 304 and errors: the body is not needed
            length = raw.headers.get("Content-Length")
            if length is not None and length.strip().isdigit() and int(length) > cfg.max_bytes:
                log.warning("too large: %s (Content-Length %s > %d)", url, length, cfg.max_bytes)
                raise TooLarge(url)
            chunks: list[bytes] = []
            size = 0
            for chunk in raw.iter_raw():
                chunks.append(chunk)
                size += len(chunk)
                if size > cfg.max_bytes:
                    log.warning("too large: %s (more than %d bytes)", url, cfg.max_bytes)
                    raise TooLarge(url)
            response.body = b"".join(chunks)
            return response

    def _wait_for_host(self, key: str) -> None:
        """Sleep until `per_host_delay_s` (or Crawl-delay) has passed since the host last answered."""
        # The delay runs from the end of the host's last answer, so the host sees at least that
        # much quiet between two requests however long the connection took; it is read when
        # the next request is due, so a Crawl-delay learnt from robots.txt spaces the next one.
        ready_at = self.next_request_at(key)
        now = self._clock()
        if ready_at > now:
            self._sleep(ready_at - now)


def crawl_delay(lines: list[str], user_agent: str) -> float | None:
    """The Crawl-delay robots.txt asks of `user_agent`: its own group's, else the `*` group's.
    Fractions count ("Crawl-delay: 0.5"), which urllib.robotparser ignores."""
    token = user_agent.split("/")[0].strip().lower()
    delays: dict[str, float] = {}  # agent -> delay
    agents: list[str] = []
    in_rules = False
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        field, _, value = line.partition(":")
        field, value = field.strip().lower(), value.strip()
        if field == "user-agent":
            if in_rules:
                agents, in_rules = [], False
            agents.append(value.lower())
        elif field in ("allow", "disallow", "crawl-delay", "request-rate"):
            in_rules = True
            if field == "crawl-delay":
                try:
                    seconds = float(value)
                except ValueError:
                    continue
                if math.isfinite(seconds) and seconds >= 0:
                    for agent in agents:
                        delays.setdefault(agent, seconds)
    own = next((d for agent, d in delays.items() if agent != "*" and agent in token), None)
    return own if own is not None else delays.get("*")


def host_key(url: str) -> str:
    """scheme://host:port, the unit of politeness."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
