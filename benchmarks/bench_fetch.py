"""Manifest fetching throughput against loopback hosts with real latency.

    .venv/bin/python benchmarks/bench_fetch.py [--hosts 50] [--pages 2000] [--latency-ms 100] \\
        [--concurrency 1,16,50] [--repeats 3]

A child process serves `--hosts` HTTP hosts on 127.0.0.1 (one port each). Every response to a
tune waits `--latency-ms` first, as a server across the internet would. A manifest of `--pages`
URLs spread evenly over the hosts is fetched by the manifest source (`clamp.data.sources.manifest`,
robots.txt, per-host delay 0, retries) with each `--concurrency`, into a fresh cache each time;
the table gives the median pages per second of `--repeats` runs. With concurrency 1 the fetch is
one request at a time, as the web crawler still is.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TUNE = b"X:1\nT:A tune\nM:6/8\nL:1/8\nK:D\nd2A B2A|d2f a2f|\n"


def serve(n_hosts: int, latency_s: float, ports, ready) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            if self.path == "/robots.txt":
                body, ctype = b"User-agent: *\nDisallow: /private/\n", "text/plain"
            else:
                time.sleep(latency_s)
                body, ctype = TUNE, "text/vnd.abc"
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    servers = []
    for _ in range(n_hosts):
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        servers.append(server)
        ports.append(server.server_address[1])
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ready.set()
    threading.Event().wait()


def measure(ports: list[int], pages: int, concurrency: int) -> float:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clamp.config import SourceSpec
    from clamp.data.sources.manifest import iter_manifest

    urls = [f"http://127.0.0.1:{ports[i % len(ports)]}/t{i}.abc" for i in range(pages)]
    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(pa.table({"url": urls, "caption": ["a tune"] * pages}), Path(tmp) / "m.parquet")
        spec = SourceSpec(kind="manifest", path=str(Path(tmp) / "m.parquet"), per_host_delay_s=0.0,
                          concurrency=concurrency)  # fmt: skip
        t = time.perf_counter()
        n = sum(1 for _ in iter_manifest(spec, Path(tmp) / "cache"))
        seconds = time.perf_counter() - t
    if n != pages:
        raise SystemExit(f"fetched {n} of {pages} pages")
    return pages / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", default="1,16,50", help="comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import logging

    logging.disable(logging.INFO)
    manager = mp.Manager()
    ports, ready = manager.list(), manager.Event()
    child = mp.Process(target=serve, args=(args.hosts, args.latency_ms / 1000, ports, ready), daemon=True)
    child.start()
    ready.wait(60)
    ports = list(ports)
    print(f"{args.hosts} hosts, {args.pages} pages, {args.latency_ms:g} ms latency, per-host delay 0; "
          f"median of {args.repeats} runs")  # fmt: skip
    print("| concurrency (hosts at once) | pages/s | runs |")
    print("|---|---|---|")
    for c in (int(x) for x in args.concurrency.split(",")):
        pages = args.pages if c > 1 else min(args.pages, 200)  # one at a time: 200 pages say enough
        runs = [measure(ports, pages, c) for _ in range(args.repeats)]
        print(f"| {c} | {statistics.median(runs):.1f} | {', '.join(f'{r:.1f}' for r in runs)} |")
    child.terminate()


if __name__ == "__main__":
    main()
