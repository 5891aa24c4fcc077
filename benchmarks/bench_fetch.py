"""Manifest fetching throughput against loopback hosts with real latency.

    .venv/bin/python benchmarks/bench_fetch.py [--hosts 50] [--pages 2000] [--latency-ms 100] \\
        [--concurrency 1,16,50] [--repeats 3]

The loopback site (`loopback_site.py`) serves `--hosts` hosts on 127.0.0.1 from a child process;
every answer waits `--latency-ms` first, as a server across the internet would. A manifest of `--pages`
URLs spread evenly over the hosts is fetched by the manifest source (`clamp.data.sources.manifest`,
robots.txt, per-host delay 0, retries) with each `--concurrency`, into a fresh cache each time;
the table gives the median pages per second of `--repeats` runs. With concurrency 1 the fetch is
one request at a time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def site(hosts: int, pages: int, latency_s: float):
    """The loopback site (`loopback_site.py`) with enough tunes for `pages` ABC files over `hosts`."""
    from loopback_site import SiteSpec

    return SiteSpec(hosts=hosts, tunes_per_host=2 * (pages // hosts + 1), latency_s=latency_s)


def manifest_urls(bases: list[str], pages: int) -> list[str]:
    """`pages` ABC files spread evenly over the hosts, none with a fault on its ABC file (429, mirror)."""
    from loopback_site import fault

    tunes = (i for i in range(10**9) if fault(i) not in ("rate_limited", "duplicate"))
    per_host = [next(tunes) for _ in range(pages // len(bases) + 1)]
    return [f"{bases[k % len(bases)]}/abc/{per_host[k // len(bases)]}.abc" for k in range(pages)]


def measure(bases: list[str], pages: int, concurrency: int) -> float:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clamp.config import SourceSpec
    from clamp.data.sources.manifest import iter_manifest

    urls = manifest_urls(bases, pages)
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
    from loopback_site import serve_site

    spec = site(args.hosts, args.pages, args.latency_ms / 1000)
    with tempfile.TemporaryDirectory() as tmp, serve_site(spec, Path(tmp) / "requests.tsv") as bases:
        table(args, bases)


def table(args: argparse.Namespace, bases: list[str]) -> None:
    print(f"{args.hosts} hosts, {args.pages} pages, {args.latency_ms:g} ms latency, per-host delay 0; "
          f"median of {args.repeats} runs")  # fmt: skip
    print("| concurrency (hosts at once) | pages/s | runs |")
    print("|---|---|---|")
    for c in (int(x) for x in args.concurrency.split(",")):
        pages = args.pages if c > 1 else min(args.pages, 200)  # one at a time: 200 pages say enough
        runs = [measure(bases, pages, c) for _ in range(args.repeats)]
        print(f"| {c} | {statistics.median(runs):.1f} | {', '.join(f'{r:.1f}' for r in runs)} |")


if __name__ == "__main__":
    main()
