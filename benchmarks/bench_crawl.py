"""Crawl throughput on the loopback site (benchmarks/loopback_site.py): 1 and 2 Dask workers,
each crawling its share of the hosts, beside one request at a time.

    .venv/bin/python benchmarks/bench_crawl.py [--hosts 50] [--tunes-per-host 100] \\
        [--latency-ms 100] [--workers 1,2] [--concurrency 16] [--repeats 3] [--report DIR]

Every run serves a fresh site from a child process, starts a `distributed.LocalCluster` with
`workers` single-threaded worker processes, and times the crawl from the submission of the
shares (`CrawlConfig.partition`) to the last one's end; the cluster's start is not timed. The
crawl keeps its records in its state as a build does (`keep_records`). After each run the
request log and the crawl states are checked: politeness (Crawl-delay and one request at a time
per host, nothing disallowed) and an outcome for every URL the site links. "one at a time" is a
single crawler with concurrency 1, what the crawler was before it fetched hosts concurrently,
timed on its first `--baseline-pages` pages. With `--report DIR` the table is also written to
DIR/report.{json,md} with the machine and commit; `--readme --report DIR` then rewrites the
README's crawl block from it (a test checks that the two agree).

`--kill-resume` instead crawls the site in a child process, kills it with SIGKILL once half
the site's URLs are settled, resumes in a new process, and checks that every file the site
serves was stored exactly once (none lost, none twice), the accounting and politeness.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import loopback_site  # noqa: E402
from loopback_site import SiteSpec, crawl_config, read_log, serve_site, visited_outcomes  # noqa: E402

README_BEGIN = "<!-- crawl-report:begin (benchmarks/bench_crawl.py --readme writes this block) -->"
README_END = "<!-- crawl-report:end -->"


def table_lines(rows: list[dict]) -> list[str]:
    lines = ["| crawl | pages/s |", "|---|---|"]
    return lines + [f"| {r['what']} | {r['median']:,} |" for r in rows]


def readme_block(report: dict, report_path: str) -> str:
    p, site = report["provenance"], report["provenance"]["site"]
    return "\n".join(
        [README_BEGIN, "",
         f"Crawling the loopback test site ({site['hosts']} hosts, {site['pages']:,} pages, every answer after "
         f"{site['latency_ms']:g} ms), measured on {p['date']} at commit {p['commit']} on {p['machine']} "
         f"([report]({report_path}/report.md), medians of {p['repeats']} runs; `benchmarks/bench_crawl.py`).",
         "", *table_lines(report["rows"]), "", README_END]
    )  # fmt: skip


def config_for(bases: list[str], state_dir: Path, concurrency: int, partition=None, max_pages: int = 10**7):
    """A share's crawl as a build runs it (downloads kept in its state)."""
    return crawl_config(bases, state_dir, concurrency=concurrency, partition=partition, max_pages=max_pages,
                        backoff_base_s=0.1, keep_records=True)  # fmt: skip


def _quiet() -> None:
    import logging

    logging.getLogger("clamp").setLevel(logging.ERROR)  # the site's faults log a warning each


def run(spec: SiteSpec, workers: int, concurrency: int) -> dict:
    from distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        with (
            serve_site(spec, tmp_path / "requests.tsv") as bases,
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
            Client(cluster) as client,
        ):
            from clamp.data.ingest import crawl_share

            client.run(_quiet)
            configs = [config_for(bases, tmp_path / f"share{i}", concurrency, (i, workers)) for i in range(workers)]
            start = time.perf_counter()
            shares = client.gather(client.map(crawl_share, configs, pure=False))
            seconds = time.perf_counter() - start
        hits = read_log(tmp_path / "requests.tsv")
        visited = visited_outcomes([tmp_path / f"share{i}" / "crawl.sqlite3" for i in range(workers)])
        problems = loopback_site.politeness_problems(spec, hits) + loopback_site.accounting_problems(
            spec, bases, visited
        )
    fetched = sum(s["fetched"] + s["skipped_robots"] for s in shares)
    with_page_text = min(sum(s["texts_by_kind"].get(k, 0) for s in shares) for k in ("title",))
    return {
        "pages": fetched,
        "records": sum(s["downloaded"] for s in shares),
        "seconds": round(seconds, 2),
        "pages_per_s": round(fetched / seconds, 1),
        "requests": len(hits),
        "problems": problems[:5],
        "n_problems": len(problems),
        "with_page_text": with_page_text,
    }


KILLABLE = """
import json, sys
sys.path.insert(0, {root!r})
from benchmarks.loopback_site import crawl_config
from clamp.data.sources.web import Crawler
from pathlib import Path
import logging
logging.getLogger("clamp").setLevel(logging.ERROR)
bases, state, concurrency = json.loads(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
config = crawl_config(bases, state, concurrency=concurrency, backoff_base_s=0.1, keep_records=True)
for _ in Crawler(config).crawl():
    pass  # each download is committed with its URL before it is yielded
"""


def kill_resume(spec: SiteSpec, concurrency: int) -> dict:
    """Crawl in a child, SIGKILL it halfway, resume to the end; check nothing lost or doubled."""
    import os
    import signal
    import sqlite3
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        script = tmp_path / "crawl.py"
        script.write_text(KILLABLE.format(root=str(ROOT)))
        state = tmp_path / "state"
        db_path = state / "crawl.sqlite3"

        def settled() -> int:
            if not db_path.exists():
                return 0
            try:
                with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
                    return int(db.execute("SELECT COUNT(*) FROM visited").fetchone()[0])
            except sqlite3.Error:
                return 0

        with serve_site(spec, tmp_path / "requests.tsv") as bases:
            args = [sys.executable, str(script), json.dumps(bases), str(state), str(concurrency)]
            start = time.perf_counter()
            child = subprocess.Popen(args, cwd=ROOT)
            while settled() < spec.pages() // 2:
                time.sleep(0.5)
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            at_kill = settled()
            subprocess.run(args, cwd=ROOT, check=True)
            seconds = time.perf_counter() - start
        hits = read_log(tmp_path / "requests.tsv")
        with sqlite3.connect(db_path) as db:
            stored = [url for (url,) in db.execute("SELECT json_extract(metadata, '$.url') FROM records")]
        visited = visited_outcomes([db_path])
    outcomes = {u: want for b in bases for u, want in loopback_site.expected_outcomes(spec, b).items()}
    expected = {u for u, want in outcomes.items() if want == "downloaded"}
    pairs = {u for u, want in outcomes.items() if want == "duplicate|downloaded"}
    lost = expected - set(stored)
    twice = len(stored) - len(set(stored))
    problems = loopback_site.politeness_problems(spec, hits) + loopback_site.accounting_problems(spec, bases, visited)
    return {
        "pages": spec.pages(),
        "settled_at_kill": at_kill,
        "stored": len(stored),
        "expected_files": len(expected) + len(pairs) // 2,
        "lost": len(lost),
        "stored_twice": twice,
        "problems": len(problems),
        "first_problems": problems[:3],
        "minutes": round(seconds / 60, 1),
    }


def baseline(spec: SiteSpec, pages: int) -> float:
    """Pages/s of one request at a time (concurrency 1), over the first `pages` pages."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        with serve_site(spec, tmp_path / "requests.tsv") as bases:
            from clamp.data.sources.web import Crawler

            crawler = Crawler(config_for(bases, tmp_path / "state", 1, max_pages=pages))
            start = time.perf_counter()
            for _ in crawler.crawl():
                pass
            seconds = time.perf_counter() - start
    return (crawler.stats.fetched + crawler.stats.skipped_robots) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--tunes-per-host", type=int, default=100, help="4 URLs each; 500 gives 100k pages")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--workers", default="1,2", help="comma-separated")
    parser.add_argument("--concurrency", type=int, default=16, help="hosts at once per worker")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-pages", type=int, default=300)
    parser.add_argument("--report", help="also write DIR/report.json and DIR/report.md")
    parser.add_argument("--readme", action="store_true", help="only rewrite the README's block from --report")
    parser.add_argument("--kill-resume", action="store_true", help="the SIGKILL-and-resume check instead")
    args = parser.parse_args()
    if args.kill_resume:
        _quiet()
        spec = SiteSpec(hosts=args.hosts, tunes_per_host=args.tunes_per_host, latency_s=args.latency_ms / 1000)
        print(f"site: {spec.hosts} hosts, {spec.pages():,} pages, {args.latency_ms:g} ms per answer")
        result = kill_resume(spec, args.concurrency)
        print(json.dumps(result, indent=1))
        if args.report:
            folder = Path(args.report)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "kill-resume.json").write_text(json.dumps(result, indent=1) + "\n")
        ok = result["lost"] == result["stored_twice"] == result["problems"] == 0
        raise SystemExit(0 if ok and result["stored"] == result["expected_files"] else 1)
    if args.readme:
        from report_files import replace_block

        report = json.loads((Path(args.report) / "report.json").read_text())
        replace_block(ROOT / "README.md", README_BEGIN, README_END, readme_block(report, args.report))
        print(f"README.md: crawl block rewritten from {args.report}/report.json")
        return
    _quiet()
    spec = SiteSpec(hosts=args.hosts, tunes_per_host=args.tunes_per_host, latency_s=args.latency_ms / 1000)
    print(f"site: {spec.hosts} hosts, {spec.pages():,} pages, {args.latency_ms:g} ms per answer, per-host delay 0")
    rows = []
    base = [baseline(spec, args.baseline_pages) for _ in range(args.repeats)]
    rows.append({"what": "one request at a time (1 process, concurrency 1)", "runs": [round(b, 1) for b in base]})
    for workers in (int(w) for w in args.workers.split(",")):
        runs = [run(spec, workers, args.concurrency) for _ in range(args.repeats)]
        for r in runs:
            if r["n_problems"]:
                raise SystemExit(f"{workers} worker(s): {r['n_problems']} problem(s), e.g. {r['problems']}")
        what = f"{workers} Dask worker(s), {args.concurrency} hosts at once each"
        rows.append({"what": what, "runs": [r["pages_per_s"] for r in runs], "detail": runs[-1]})
    for r in rows:
        r["median"] = round(statistics.median(r["runs"]), 1)
    one = next((r for r in rows if r["what"].startswith("1 Dask")), None)
    two = next((r for r in rows if r["what"].startswith("2 Dask")), None)
    lines = ["| crawl | pages/s (median) | runs |", "|---|---|---|"]
    lines += [f"| {r['what']} | {r['median']:,} | {', '.join(f'{v:,}' for v in r['runs'])} |" for r in rows]
    if one and two:
        lines.append(f"\n1 -> 2 workers: {two['median'] / one['median']:.2f}x")
    table = "\n".join(lines)
    print(table)
    if args.report:
        from report_files import git_commit

        from benchmarks.performance_report import machine

        folder = Path(args.report)
        folder.mkdir(parents=True, exist_ok=True)
        report = {
            "provenance": {
                "date": dt.date.today().isoformat(),
                "commit": git_commit(),
                "machine": machine(),
                "site": {"hosts": spec.hosts, "pages": spec.pages(), "latency_ms": args.latency_ms},
                "repeats": args.repeats,
            },  # fmt: skip
            "rows": rows,
        }
        (folder / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        p = report["provenance"]
        head = (f"# Crawl throughput, {p['date']}\n\nMachine: {p['machine']}. Commit {p['commit']}. Site: "
                f"{spec.hosts} hosts, {spec.pages():,} pages, {args.latency_ms:g} ms per answer "
                f"(`benchmarks/bench_crawl.py`).\n\n")  # fmt: skip
        (folder / "report.md").write_text(head + table + "\n")


if __name__ == "__main__":
    main()
