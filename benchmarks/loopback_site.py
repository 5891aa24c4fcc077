"""A generated music website on loopback, many hosts, with real latency and real faults.

`SiteSpec` describes the site; `serve_site(spec, log_path)` serves it from a child process (one
asyncio loop, one port per host on 127.0.0.1, HTTP/1.1 keep-alive) and yields the hosts' base
URLs. Every response waits `latency_s` first (and `size / bytes_per_s` more when a bandwidth
is set), as a server across the internet would, so a crawler's concurrency is measured as it
would be on the web. Every request is logged (`read_log`) for the politeness checks.

Each host has an index, listing pages of 50 tunes, a sitemap, a robots.txt (`Disallow:
/private/`, `Crawl-delay`, `Sitemap:`), and per tune an HTML page (a title, a heading and a
description sentence) linking to the tune as ABC, MusicXML and MIDI. Tune `i` of a host also
carries a fault when `i % 50` is one of `FAULTS`. `expected_outcomes` says what a complete,
polite crawl must conclude of every URL the site links to.

Used by `benchmarks/bench_crawl.py` (100k pages) and `tests/data/test_crawl_site.py` (a small site).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TUNES_PER_LISTING = 50
TYPES = ("jig", "reel", "hornpipe", "polka", "slide", "waltz", "air", "march")
KEYS = ("D", "G", "A", "Em", "Bm", "C", "F", "Am")
# i % 50 -> the fault tune i carries
FAULTS = {
    7: "rate_limited",  # its ABC answers 429 with Retry-After: 1 once
    11: "burst_5xx",  # its MusicXML answers 503 twice, then the file
    13: "slow",  # its MIDI answers after 5 x latency
    17: "redirect_loop",  # its page links /loop/<i>, which redirects to /loop/<i>b and back
    19: "oversize",  # its page links /big/<i>.mid, larger than the crawl's byte cap
    23: "wrong_type",  # its page links /wrong/<i>.abc, an HTML page ("soft 404") where ABC should be
    29: "duplicate",  # its page also links /mirror/<i>.abc, the same bytes as /abc/<i>.abc
    31: "missing",  # its MIDI answers 404
    37: "server_error",  # its MusicXML always answers 500
    41: "private",  # its page links /private/<i>.abc, which robots.txt disallows
}


@dataclass(frozen=True)
class SiteSpec:
    hosts: int = 50
    tunes_per_host: int = 500  # 4 URLs each: 100k pages over 50 hosts
    latency_s: float = 0.1
    bytes_per_s: float = 0.0  # per response; 0: no bandwidth limit
    crawl_delay_s: float = 0.0  # robots.txt Crawl-delay (0: none written)
    oversize_bytes: int = 1_100_000  # /big/<i>.mid: over the crawl's default max_bytes (1 MB)

    def pages(self) -> int:
        """The URLs a complete crawl asks for, all hosts (robots.txt not counted)."""
        return len(expected_outcomes(self, "http://h")) * self.hosts


def fault(i: int) -> str | None:
    return FAULTS.get(i % 50)


def _listings(spec: SiteSpec) -> int:
    return -(-spec.tunes_per_host // TUNES_PER_LISTING)


def tune_facts(host: int, i: int) -> tuple[str, str, int]:
    """(type, key, year) of tune i of a host."""
    return TYPES[(i + host) % len(TYPES)], KEYS[(3 * i + host) % len(KEYS)], 1780 + (7 * i + host) % 120


def abc_file(host: int, i: int) -> bytes:
    kind, key, _ = tune_facts(host, i)
    notes = "".join("CDEFGABc"[(i * 7 + host * 3 + k * k) % 8] for k in range(16))
    bars = "|".join(notes[k : k + 4] for k in range(0, 16, 4))
    return f"X:{i}\nT:Tune {host}-{i}\nR:{kind}\nM:6/8\nL:1/8\nK:{key}\n{bars}|\n".encode()


def musicxml_file(host: int, i: int) -> bytes:
    step = "CDEFGAB"[(host + i) % 7]
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<score-partwise version="3.1">'
        f"<work><work-title>Tune {host}-{i}</work-title></work>"
        '<part-list><score-part id="P1"><part-name>Tune</part-name></score-part></part-list>'
        '<part id="P1"><measure number="1"><attributes><divisions>1</divisions><time><beats>4</beats>'
        "<beat-type>4</beat-type></time></attributes>"
        f"<note><pitch><step>{step}</step><octave>4</octave></pitch><duration>4</duration><type>whole</type></note>"
        f"</measure></part><!-- {host}-{i} --></score-partwise>\n"
    ).encode()


def midi_file(host: int, i: int) -> bytes:
    pitch = 48 + (host * 5 + i) % 36
    track = bytes([0x00, 0x90, pitch, 0x40, 0x60, 0x80, pitch, 0x40])
    track += bytes([0x00, 0xFF, 0x01, 8]) + f"{host:03d}-{i:04d}"[:8].encode() + bytes([0x00, 0xFF, 0x2F, 0x00])
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 96) + b"MTrk" + struct.pack(">I", len(track)) + track


def tune_page(host: int, i: int) -> bytes:
    kind, key, year = tune_facts(host, i)
    links = [f'<li><a href="/abc/{i}.abc">ABC</a></li>', f'<li><a href="/xml/{i}.musicxml">MusicXML</a></li>',
             f'<li><a href="/midi/{i}.mid">MIDI</a></li>']  # fmt: skip
    extra = {
        "redirect_loop": f'<li><a href="/loop/{i}">Mirror</a></li>',
        "oversize": f'<li><a href="/big/{i}.mid">Full recording</a></li>',
        "wrong_type": f'<li><a href="/wrong/{i}.abc">Old ABC</a></li>',
        "duplicate": f'<li><a href="/mirror/{i}.abc">ABC (mirror)</a></li>',
        "private": f'<li><a href="/private/{i}.abc">Member copy</a></li>',
    }.get(fault(i) or "")
    if extra:
        links.append(extra)
    return (
        f"<!doctype html><html><head><title>Tune {host}-{i}, a {kind}</title></head><body>"
        '<nav><a href="/">Home</a> <a href="/list/0.html">Tunes</a></nav>'
        f"<h1>Tune {host}-{i}</h1><p>A {kind} in {key} collected in {year}.</p>"
        f"<ul>{''.join(links)}</ul><footer>A loopback test site</footer></body></html>"
    ).encode()


def listing_page(spec: SiteSpec, host: int, k: int) -> bytes:
    first = k * TUNES_PER_LISTING
    tunes = range(first, min(first + TUNES_PER_LISTING, spec.tunes_per_host))
    items = "".join(f'<li><a href="/tune/{i}.html">Tune {host}-{i}</a></li>' for i in tunes)
    return f"<html><head><title>Tunes, page {k + 1}</title></head><body><ul>{items}</ul></body></html>".encode()


def index_page(spec: SiteSpec, host: int) -> bytes:
    items = "".join(f'<li><a href="/list/{k}.html">Page {k + 1}</a></li>' for k in range(_listings(spec)))
    return f"<html><head><title>Tunes of host {host}</title></head><body><ul>{items}</ul></body></html>".encode()


def sitemap(spec: SiteSpec, base: str) -> bytes:
    locs = "".join(f"<url><loc>{base}/list/{k}.html</loc></url>" for k in range(_listings(spec)))
    return (
        '<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"{locs}</urlset>"
    ).encode()


def robots(spec: SiteSpec) -> bytes:
    delay = f"Crawl-delay: {spec.crawl_delay_s:g}\n" if spec.crawl_delay_s else ""
    return f"User-agent: *\nDisallow: /private/\n{delay}Sitemap: /sitemap.xml\n".encode()


def expected_outcomes(spec: SiteSpec, base: str) -> dict[str, str]:
    """URL -> what a complete crawl from `base`/ concludes of it: `page`, `sitemap`, `downloaded`,
    `robots`, `duplicate|downloaded` (one of a pair is each), `redirect_loop`, `too_large`,
    `http_404` or `http_500`. robots.txt is not a frontier URL and is not listed."""
    out = {f"{base}/": "page", f"{base}/sitemap.xml": "sitemap"}
    out.update({f"{base}/list/{k}.html": "page" for k in range(_listings(spec))})
    for i in range(spec.tunes_per_host):
        out[f"{base}/tune/{i}.html"] = "page"
        f = fault(i)
        out[f"{base}/abc/{i}.abc"] = "duplicate|downloaded" if f == "duplicate" else "downloaded"
        out[f"{base}/xml/{i}.musicxml"] = "http_500" if f == "server_error" else "downloaded"
        out[f"{base}/midi/{i}.mid"] = "http_404" if f == "missing" else "downloaded"
        if f == "redirect_loop":
            out[f"{base}/loop/{i}"] = "redirect_loop"
        elif f == "oversize":
            out[f"{base}/big/{i}.mid"] = "too_large"
        elif f == "wrong_type":
            out[f"{base}/wrong/{i}.abc"] = "downloaded"  # the crawler cannot tell; the build quarantines it
        elif f == "duplicate":
            out[f"{base}/mirror/{i}.abc"] = "duplicate|downloaded"
        elif f == "private":
            out[f"{base}/private/{i}.abc"] = "robots"
    return out


# --------------------------------------------------------------------------------------------- serving


class _Host:
    def __init__(self, spec: SiteSpec, index: int, log) -> None:
        self.spec, self.index, self.log = spec, index, log
        self.base = ""
        self.asked: dict[str, int] = {}  # path -> requests so far (the transient faults count them)

    def answer(self, path: str) -> tuple[int, str, bytes, dict[str, str]]:
        spec, h = self.spec, self.index
        n = self.asked[path] = self.asked.get(path, 0) + 1
        stem, _, name = path.rpartition("/")
        number = name.split(".")[0]
        i = int(number.rstrip("b")) if number.rstrip("b").isdigit() else -1
        if 0 <= i < spec.tunes_per_host or stem in ("", "/list"):
            f = fault(i) if i >= 0 else None
            if path == "/":
                return 200, "text/html; charset=utf-8", index_page(spec, h), {}
            if path == "/robots.txt":
                return 200, "text/plain", robots(spec), {}
            if path == "/sitemap.xml":
                return 200, "application/xml", sitemap(spec, self.base), {}
            if stem == "/list" and i < _listings(spec):
                return 200, "text/html", listing_page(spec, h, i), {}
            if stem == "/tune":
                return 200, "text/html; charset=utf-8", tune_page(h, i), {}
            if stem in ("/abc", "/mirror") and (stem == "/abc" or f == "duplicate"):
                if f == "rate_limited" and n == 1:
                    return 429, "text/plain", b"slow down\n", {"Retry-After": "1"}
                return 200, "text/vnd.abc; charset=utf-8", abc_file(h, i), {}
            if stem == "/xml":
                if f == "server_error" or (f == "burst_5xx" and n <= 2):
                    return (500 if f == "server_error" else 503), "text/plain", b"error\n", {}
                return 200, "application/vnd.recordare.musicxml+xml", musicxml_file(h, i), {}
            if stem == "/midi" and f != "missing":
                return 200, "audio/midi", midi_file(h, i), {}
            if stem == "/loop" and f == "redirect_loop":
                target = f"/loop/{i}" if name.endswith("b") else f"/loop/{i}b"
                return 302, "text/plain", b"", {"Location": target}
            if stem == "/big" and f == "oversize":
                return 200, "audio/midi", b"\0" * spec.oversize_bytes, {}
            if stem == "/wrong" and f == "wrong_type":
                return 200, "text/html", f"<html><body>host {h}, {path}: page not found</body></html>".encode(), {}
            if stem == "/private" and f == "private":
                return 200, "text/vnd.abc", abc_file(h, i), {}
        return 404, "text/plain", b"not found\n", {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                arrived = time.time()
                line = request.split(b"\r\n", 1)[0].decode("latin-1")
                path = line.split(" ")[1] if line.count(" ") >= 2 else "/"
                status, ctype, body, headers = self.answer(path)
                wait = self.spec.latency_s * (5 if fault(_tune_of(path)) == "slow" and "/midi/" in path else 1)
                if self.spec.bytes_per_s:
                    wait += len(body) / self.spec.bytes_per_s
                self.log.write(f"{arrived:.6f}\t{self.index}\t{status}\t{path}\n")
                await asyncio.sleep(wait)
                head = [f"HTTP/1.1 {status} X", f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
                head += [f"{k}: {v}" for k, v in headers.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass  # the client hung up, or the site is stopping
        finally:
            writer.close()


def _tune_of(path: str) -> int:
    number = path.rpartition("/")[2].split(".")[0].rstrip("b")
    return int(number) if number.isdigit() else -1


def _serve(spec: SiteSpec, log_path: str, ports_out, stop) -> None:
    async def main() -> None:
        with open(log_path, "a", buffering=1 << 16) as log:
            servers, ports = [], []
            for h in range(spec.hosts):
                host = _Host(spec, h, log)
                server = await asyncio.start_server(host.handle, "127.0.0.1", 0, backlog=1024)
                port = server.sockets[0].getsockname()[1]
                host.base = f"http://127.0.0.1:{port}"
                servers.append(server)
                ports.append(port)
            ports_out.send(ports)
            while not stop.is_set():
                await asyncio.sleep(0.05)
                log.flush()
            for server in servers:
                server.close()

    asyncio.run(main())


@contextlib.contextmanager
def serve_site(spec: SiteSpec, log_path: Path) -> Iterator[list[str]]:
    """Serve the site from a child process; yields the hosts' base URLs (`http://127.0.0.1:<port>`)."""
    ctx = mp.get_context("spawn")
    ports_in, ports_out = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    process = ctx.Process(target=_serve, args=(spec, str(log_path), ports_out, stop), daemon=True)
    process.start()
    try:
        if not ports_in.poll(60):
            raise RuntimeError("the loopback site did not start in 60 s")
        yield [f"http://127.0.0.1:{port}" for port in ports_in.recv()]
    finally:
        stop.set()
        process.join(10)
        if process.is_alive():
            process.kill()


@dataclass(frozen=True)
class Hit:
    t: float  # time.time() when the request arrived
    host: int
    status: int
    path: str


def read_log(path: Path) -> list[Hit]:
    hits = []
    for line in path.read_text().splitlines():
        t, host, status, p = line.split("\t", 3)
        hits.append(Hit(float(t), int(host), int(status), p))
    return hits


def crawl_config(bases: list[str], state_dir: Path, **overrides):
    """The crawl of the site that the tests and benchmarks run: every host a seed, deep enough
    for index -> listing -> page -> file, per-host delay 0 (robots.txt's Crawl-delay still
    counts), a 200 kB cap (under the oversize file), short backoffs; `overrides` win."""
    from clamp.data.sources.web import CrawlConfig

    settings = {"seeds": [b + "/" for b in bases], "state_dir": state_dir, "max_depth": 4, "per_host_delay_s": 0.0,
                "max_pages": 10**7, "max_bytes": 200_000, "backoff_base_s": 0.05, "timeout_s": 5.0}  # fmt: skip
    return CrawlConfig(**{**settings, **overrides})


# --------------------------------------------------------------------------------------------- checks


def politeness_problems(spec: SiteSpec, hits: list[Hit], tolerance_s: float = 0.02) -> list[str]:
    """What the request log shows against politeness: a disallowed URL asked, or two requests
    to one host closer together than its Crawl-delay or than the previous answer took (one
    request at a time per host: the next may only start once the last was answered)."""
    problems = [f"host {h.host}: disallowed {h.path} fetched" for h in hits if h.path.startswith("/private/")]
    by_host: dict[int, list[Hit]] = {}
    for hit in sorted(hits, key=lambda h: h.t):
        by_host.setdefault(hit.host, []).append(hit)
    for host, host_hits in sorted(by_host.items()):
        for before, after in zip(host_hits, host_hits[1:], strict=False):
            answer = spec.latency_s * (5 if fault(_tune_of(before.path)) == "slow" and "/midi/" in before.path else 1)
            needed = max(spec.crawl_delay_s, answer)
            if after.t - before.t < needed - tolerance_s:
                problems.append(
                    f"host {host}: {before.path} then {after.path} {after.t - before.t:.3f}s apart (< {needed:.3f}s)"
                )
    return problems


def accounting_problems(spec: SiteSpec, bases: list[str], visited: dict[str, str]) -> list[str]:
    """What the crawl's `visited` (URL -> outcome, all shares together) gets wrong against
    `expected_outcomes`: a URL not accounted for, another outcome, or a URL the site never linked."""
    problems = []
    expected: dict[str, str] = {}
    for base in bases:
        expected.update(expected_outcomes(spec, base))
    for url, want in expected.items():
        got = visited.get(url)
        if got is None:
            problems.append(f"not accounted for: {url}")
        elif got not in want.split("|"):
            problems.append(f"{url}: {got}, expected {want}")
    problems += [f"not linked by the site: {url} ({visited[url]})" for url in sorted(set(visited) - set(expected))]
    pairs = [u for u, want in expected.items() if want == "duplicate|downloaded" and "/mirror/" in u]
    for mirror in pairs:
        original = mirror.replace("/mirror/", "/abc/")
        if sorted((visited.get(mirror), visited.get(original))) != ["downloaded", "duplicate"]:
            problems.append(f"{original} and its mirror: {visited.get(original)}, {visited.get(mirror)}")
    return problems


def visited_outcomes(state_files: list[Path]) -> dict[str, str]:
    """URL -> outcome of the crawl states (`crawl.sqlite3` files) of every share."""
    import sqlite3

    out: dict[str, str] = {}
    for path in state_files:
        with contextlib.closing(sqlite3.connect(path)) as db:
            out.update(dict(db.execute("SELECT url, outcome FROM visited")))
    return out


def main() -> None:
    """Serve the site until Ctrl-C and write a build config that crawls it."""
    import argparse

    import yaml

    parser = argparse.ArgumentParser(description="Serve the loopback music site and write a build config to crawl it.")
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--tunes-per-host", type=int, default=50, help="4 URLs each")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--crawl-delay", type=float, default=0.0, help="robots.txt Crawl-delay, seconds")
    parser.add_argument("--shares", type=int, default=1, help="the build's crawl split over this many workers")
    parser.add_argument("--config", default="crawl.yaml", help="the build config to write")
    parser.add_argument("--log", default="loopback-requests.tsv", help="the request log")
    args = parser.parse_args()
    spec = SiteSpec(hosts=args.hosts, tunes_per_host=args.tunes_per_host, latency_s=args.latency_ms / 1000,
                    crawl_delay_s=args.crawl_delay)  # fmt: skip
    with serve_site(spec, Path(args.log)) as bases:
        source = {"kind": "web", "seeds": [b + "/" for b in bases], "max_depth": 4, "per_host_delay_s": 0.0,
                  "max_pages": 10 * spec.pages(), "shares": args.shares}  # fmt: skip
        config = {"name": "loopback-crawl", "sources": [source], "decontaminate": False}
        Path(args.config).write_text(yaml.safe_dump(config, sort_keys=False))
        print(f"serving {spec.hosts} hosts, {spec.pages():,} pages, {args.latency_ms:g} ms per answer; "
              f"requests logged to {args.log}")  # fmt: skip
        print(f"wrote {args.config}; in another shell: .venv/bin/python -m flows.build_dataset --config {args.config}")
        print("Ctrl-C stops the site")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
