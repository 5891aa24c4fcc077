"""Which crawl engine: the threaded crawler against an asyncio prototype, on the loopback site.

    .venv/bin/python benchmarks/bench_engines.py [--hosts 50] [--tunes-per-host 50] \\
        [--latency-ms 100,0] [--concurrency 50] [--repeats 3] [--report DIR]

Both engines do the same work per URL, in one process, with `--concurrency` hosts at once and
one request at a time per host:
- `threaded` is the project's crawler (`clamp.data.sources.web.Crawler`): a pool of fetch
  threads, one `httpx.Client` per host;
- `asyncio` is a prototype kept in this file: one event loop, one `httpx.AsyncClient` per host,
  an `asyncio.Lock` per host. It fetches as `PoliteFetcher` does (robots.txt, Crawl-delay,
  retries with Retry-After, the byte cap, redirects by hand), and hands every answer to the
  crawler's own `_settle`: the same parsing, texts, dedup and SQLite commit.

Each run serves a fresh site and crawls it from scratch into a fresh state; the request log and
the states are checked as bench_crawl.py checks them (politeness, an outcome for every URL), and a
run with a problem stops the benchmark. The table gives the median pages per second of
`--repeats` runs per engine, the engines taking turns. At 0 ms latency it shows CPU per page.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx  # noqa: E402
import loopback_site  # noqa: E402
from loopback_site import SiteSpec, crawl_config, read_log, serve_site, visited_outcomes  # noqa: E402

from clamp.data.sources.web import STATE_FILE, Crawler  # noqa: E402
from clamp.data.sources.web_fetch import REDIRECT_CODES, RETRY_CODES, Fetch, Response, crawl_delay, host_key  # noqa: E402
from clamp.data.sources.web_state import CrawlItem, CrawlState  # noqa: E402
from clamp.data.sources.web_urls import host_of, normalize_url, retry_after_seconds  # noqa: E402


class AsyncEngine:
    """The prototype: `Crawler`'s politeness and bookkeeping, its fetching on one event loop."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.cfg = crawler.config
        self.clients: dict[str, httpx.AsyncClient] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.robots: dict[str, RobotFileParser] = {}
        self.delays: dict[str, float] = {}
        self.last_done: dict[str, float] = {}
        self.requests = 0

    def client(self, key: str) -> httpx.AsyncClient:
        if key not in self.clients:
            self.clients[key] = httpx.AsyncClient(
                timeout=httpx.Timeout(self.cfg.timeout_s), follow_redirects=False, trust_env=False,
                headers={"User-Agent": self.cfg.user_agent, "Accept-Encoding": "identity"},
                limits=httpx.Limits(max_connections=4, max_keepalive_connections=1),
            )  # fmt: skip
        return self.clients[key]

    async def robots_for(self, url: str) -> RobotFileParser:
        key = host_key(url)
        if key not in self.robots:
            parser = RobotFileParser(key + "/robots.txt")
            fetch = await self.fetch(key + "/robots.txt", robots=True)
            status = fetch.response.status if fetch.response is not None else None
            if fetch.kind == "ok" and fetch.response is not None:
                lines = fetch.response.body.decode("utf-8", errors="replace").splitlines()
                parser.parse(lines)
                if (delay := crawl_delay(lines, self.cfg.user_agent)) is not None:
                    self.delays[key] = delay
            elif status is not None and 400 <= status < 500 and status not in (401, 403):
                parser.allow_all = True
            else:
                parser.disallow_all = True
            self.robots.setdefault(key, parser)
        return self.robots[key]

    async def fetch(self, url: str, *, robots: bool = False) -> Fetch:
        chain, current = [url], url
        while True:
            try:
                response = await self.get_with_retries(current)
            except _TooLarge:
                return Fetch("too_large", current)
            except _Failed as exc:
                return Fetch("error", current, response=exc.response, reason=exc.reason)
            if 200 <= response.status < 300:
                return Fetch("ok", current, response=response)
            if response.status not in REDIRECT_CODES:
                return Fetch("error", current, response=response, reason=f"http_{response.status}")
            location = response.headers.get("Location")
            target = normalize_url(urljoin(current, location)) if location else None
            if target is None:
                return Fetch("error", current, response=response, reason="bad_redirect")
            if target in chain:
                return Fetch("redirect_loop", current)
            if len(chain) > self.cfg.max_redirects:
                return Fetch("error", current, reason="too_many_redirects")
            if not robots:
                if host_of(target) not in self.crawler.allowed_hosts:
                    return Fetch("error", current, reason="offsite_redirect")
                if not (await self.robots_for(target)).can_fetch(self.cfg.user_agent, target):
                    return Fetch("robots", target)
            chain.append(target)
            current = target

    async def get_with_retries(self, url: str) -> Response:
        attempt = 0
        while True:
            retry_after = None
            try:
                response = await self.get_once(url)
            except _TooLarge:
                raise
            except (httpx.TimeoutException, TimeoutError):
                reason, response = "timeout", None
            except (httpx.HTTPError, OSError):
                reason, response = "connection", None
            else:
                if response.status not in RETRY_CODES:
                    return response
                reason, retry_after = (
                    f"http_{response.status}",
                    retry_after_seconds(response.headers.get("Retry-After")),
                )
            if attempt >= self.cfg.max_retries:
                raise _Failed(reason, response)
            wait = retry_after if retry_after is not None else self.cfg.backoff_base_s * (2**attempt)
            attempt += 1
            self.crawler.stats.retries += 1
            await asyncio.sleep(min(wait, self.cfg.max_backoff_s))

    async def get_once(self, url: str) -> Response:
        key = host_key(url)
        async with self.locks.setdefault(key, asyncio.Lock()):  # one request per host at a time
            delay = max(self.cfg.per_host_delay_s, min(self.delays.get(key, 0.0), self.cfg.max_backoff_s))
            wait = self.last_done.get(key, -1e9) + delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self.requests += 1
            try:
                async with self.client(key).stream("GET", url) as raw:
                    response = Response(status=raw.status_code, url=url, headers=raw.headers)
                    if response.status >= 300:
                        return response
                    chunks, size = [], 0
                    async for chunk in raw.aiter_raw():
                        chunks.append(chunk)
                        size += len(chunk)
                        if size > self.cfg.max_bytes:
                            raise _TooLarge(url)
                    response.body = b"".join(chunks)
                    return response
            finally:
                self.last_done[key] = time.monotonic()

    async def crawl(self) -> int:
        """One pass from the seeds and their hosts' sitemaps; returns the records stored."""
        state = CrawlState(self.cfg.state_dir / STATE_FILE)
        seeds = [u for u in (normalize_url(s) for s in self.cfg.seeds) if u is not None]
        roots = list(dict.fromkeys(f"{urlsplit(s).scheme}://{urlsplit(s).netloc}" for s in seeds))
        sitemaps = []
        for root, parser in zip(roots, await asyncio.gather(*(self.robots_for(r + "/") for r in roots)), strict=True):
            sitemaps += [normalize_url(urljoin(root + "/", u)) for u in (parser.site_maps() or [root + "/sitemap.xml"])]
        state.start_pass(seeds + [u for u in sitemaps if u is not None and u not in seeds])
        queues: dict[str, list[CrawlItem]] = {}
        for item in state.frontier_items():
            queues.setdefault(host_key(item.url), []).append(item)
        gate = asyncio.Semaphore(self.cfg.concurrency)
        running: dict[str, asyncio.Task] = {}
        stored = 0

        async def host(key: str) -> None:
            nonlocal stored
            async with gate:
                while queues[key]:
                    item = queues[key].pop(0)
                    if not state.in_frontier(item.url):  # taken by a redirect that ended there
                        continue
                    if not (await self.robots_for(item.url)).can_fetch(self.cfg.user_agent, item.url):
                        fetch = Fetch("disallowed", item.url)
                    else:
                        fetch = await self.fetch(item.url)
                    record, queued = self.crawler._settle(state, item, fetch)  # the crawler's own bookkeeping
                    stored += record is not None
                    for new in queued:
                        queues.setdefault(host_key(new.url), []).append(new)
                        start(host_key(new.url))

        def start(key: str) -> None:
            if key not in running or running[key].done():
                running[key] = asyncio.ensure_future(host(key))

        for key in list(queues):
            start(key)
        while any(not t.done() for t in running.values()):
            await asyncio.gather(*running.values())
        for client in self.clients.values():
            await client.aclose()
        state.close()
        return stored


class _TooLarge(Exception):
    pass


class _Failed(Exception):
    def __init__(self, reason: str, response: Response | None) -> None:
        super().__init__(reason)
        self.reason, self.response = reason, response


def run(engine: str, spec: SiteSpec, concurrency: int) -> dict:
    import logging

    logging.getLogger("clamp").setLevel(logging.ERROR)  # the site's faults log a warning each
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        with serve_site(spec, tmp_path / "requests.tsv") as bases:
            config = crawl_config(bases, tmp_path / "state", concurrency=concurrency, backoff_base_s=0.1,
                                  keep_records=True)  # fmt: skip
            crawler = Crawler(config)
            start = time.perf_counter()
            if engine == "threaded":
                stored = sum(1 for _ in crawler.crawl())
            else:
                stored = asyncio.run(AsyncEngine(crawler).crawl())
            seconds = time.perf_counter() - start
        hits = read_log(tmp_path / "requests.tsv")
        visited = visited_outcomes([tmp_path / "state" / STATE_FILE])
        problems = loopback_site.politeness_problems(spec, hits) + loopback_site.accounting_problems(
            spec, bases, visited
        )
    return {"pages": len(visited), "records": stored, "requests": len(hits), "seconds": round(seconds, 2),
            "pages_per_s": round(len(visited) / seconds, 1), "problems": problems[:5]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--tunes-per-host", type=int, default=50, help="4 URLs each")
    parser.add_argument("--latency-ms", default="100,0", help="comma-separated")
    parser.add_argument("--concurrency", type=int, default=50, help="hosts at once")
    parser.add_argument("--engines", default="threaded,asyncio")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--report", help="also write DIR/engines.json and DIR/engines.md")
    args = parser.parse_args()
    rows = []
    for latency_ms in (float(v) for v in args.latency_ms.split(",")):
        spec = SiteSpec(hosts=args.hosts, tunes_per_host=args.tunes_per_host, latency_s=latency_ms / 1000)
        engines = args.engines.split(",")
        runs: dict[str, list[dict]] = {e: [] for e in engines}
        for _ in range(args.repeats):
            for engine in engines:  # taking turns, so a change in the machine's load hits both
                result = run(engine, spec, args.concurrency)
                if result["problems"]:
                    raise SystemExit(f"{engine} at {latency_ms:g} ms: {result['problems']}")
                runs[engine].append(result)
                print(f"{engine:9s} {latency_ms:5g} ms: {result['pages_per_s']:7.1f} pages/s", flush=True)
        for engine in engines:
            values = [r["pages_per_s"] for r in runs[engine]]
            rows.append({"engine": engine, "latency_ms": latency_ms, "pages": runs[engine][0]["pages"],
                         "runs": values, "median": round(statistics.median(values), 1)})  # fmt: skip
    lines = ["| engine | latency | pages | pages/s (median) | runs |", "|---|---|---|---|---|"]
    lines += [f"| {r['engine']} | {r['latency_ms']:g} ms | {r['pages']:,} | {r['median']:,} | "
              f"{', '.join(f'{v:,}' for v in r['runs'])} |" for r in rows]  # fmt: skip
    print("\n".join(lines))
    if args.report:
        from report_files import git_commit

        from benchmarks.performance_report import machine

        folder = Path(args.report)
        folder.mkdir(parents=True, exist_ok=True)
        provenance = {"date": dt.date.today().isoformat(), "commit": git_commit(), "machine": machine(),
                      "hosts": args.hosts, "concurrency": args.concurrency, "repeats": args.repeats}  # fmt: skip
        (folder / "engines.json").write_text(json.dumps({"provenance": provenance, "rows": rows}, indent=1) + "\n")
        head = (f"Crawl engines on the loopback site ({args.hosts} hosts, {args.concurrency} at once, one process), "
                f"{provenance['date']}, commit {provenance['commit']}, {provenance['machine']}; medians of "
                f"{args.repeats} runs, the engines taking turns (`benchmarks/bench_engines.py`).")  # fmt: skip
        (folder / "engines.md").write_text(head + "\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
