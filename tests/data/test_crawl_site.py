"""The crawler on a generated multi-host site with latency and faults (benchmarks/loopback_site.py):
the request log proves it polite, the crawl state accounts for every URL, and a crawl killed
with SIGKILL resumes with no file lost and none stored twice (benchmarks/bench_crawl.py's check)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from benchmarks.loopback_site import (
    SiteSpec,
    accounting_problems,
    crawl_config,
    politeness_problems,
    read_log,
    serve_site,
    visited_outcomes,
)
from clamp.data.sources.web import Crawler

pytestmark = pytest.mark.slow
# 4 hosts of 50 tunes: per host 1 index + 1 listing + 1 sitemap + 50 pages + 150 files + 5 fault URLs
SPEC = SiteSpec(hosts=4, tunes_per_host=50, latency_s=0.02, crawl_delay_s=0.1)
PAGES_PER_HOST = 208
# per host: 150 files, less the missing MIDI (31) and the failing MusicXML (37), plus the soft-404
# "ABC" (23); the mirror of tune 29 is its duplicate
DOWNLOADED_PER_HOST = 149


def test_two_shares_crawl_every_host_once_politely_and_account_for_every_url(tmp_path: Path) -> None:
    assert SPEC.pages() == SPEC.hosts * PAGES_PER_HOST
    with serve_site(SPEC, tmp_path / "requests.tsv") as bases:
        configs = [crawl_config(bases, tmp_path / f"share{i}", partition=(i, 2), concurrency=8) for i in range(2)]
        crawlers = [Crawler(config) for config in configs]
        records: list[list] = [[], []]
        threads = [threading.Thread(target=lambda i=i: records[i].extend(crawlers[i].crawl())) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    hits = read_log(tmp_path / "requests.tsv")

    # the shares split the hosts: 2 each, no host asked by both
    assert [len(c.allowed_hosts) for c in crawlers] == [2, 2]
    assert not crawlers[0].allowed_hosts & crawlers[1].allowed_hosts
    # polite: Crawl-delay and one request at a time per host, nothing under /private/ asked
    assert politeness_problems(SPEC, hits) == []
    # every URL the site links is accounted for, with the outcome its fault dictates
    visited = visited_outcomes([tmp_path / f"share{i}" / "crawl.sqlite3" for i in range(2)])
    assert accounting_problems(SPEC, bases, visited) == []
    assert len(visited) == SPEC.pages()
    stats = [c.stats for c in crawlers]
    assert sum(s.downloaded for s in stats) == SPEC.hosts * DOWNLOADED_PER_HOST == sum(map(len, records))
    assert sum(s.skipped_robots for s in stats) == SPEC.hosts  # /private/41.abc
    assert sum(s.skipped_duplicate for s in stats) == SPEC.hosts  # /mirror/29.abc or /abc/29.abc
    assert sum(s.redirect_loops for s in stats) == sum(s.skipped_too_large for s in stats) == SPEC.hosts
    # 429 once (7), 503 twice (11), 500 four times (37: 1 + 3 retries): 1 + 2 + 3 retries per host
    assert sum(s.retries for s in stats) == 6 * SPEC.hosts
    # requests per host: its 208 URLs less the disallowed one, plus robots.txt, the 6 retries and
    # the redirect loop's second hop
    assert len(hits) == SPEC.hosts * (PAGES_PER_HOST - 1 + 1 + 6 + 1)

    # the texts are the page's, not the link's "ABC": title, heading, description
    every = [r for share in records for r in share]
    with_page_text = [r for r in every if {"title", "heading", "description"} & set(r.metadata.get("text_kinds", []))]
    assert len(with_page_text) / len(every) >= 0.9
    first = next(r for r in every if r.metadata["url"] == bases[0] + "/abc/0.abc")
    assert first.texts == ["Tune 0-0, a jig", "Tune 0-0", "A jig in D collected in 1780."]


def test_a_crawl_killed_with_sigkill_resumes_with_nothing_lost_or_twice() -> None:
    from benchmarks.bench_crawl import kill_resume

    spec = SiteSpec(hosts=4, tunes_per_host=50, latency_s=0.02)
    result = kill_resume(spec, concurrency=8)  # a child crawls; SIGKILL at half; a new child resumes
    assert spec.pages() // 2 <= result["settled_at_kill"] < spec.pages()  # killed halfway
    # every file the site serves stored once: none lost, none twice; accounting and politeness hold
    assert result["stored"] == result["expected_files"] == spec.hosts * DOWNLOADED_PER_HOST
    assert (result["lost"], result["stored_twice"], result["problems"]) == (0, 0, 0), result["first_problems"]


def test_a_build_streams_the_crawl_replays_it_and_reports_its_counts(tmp_path: Path) -> None:
    from clamp.config import BuildConfig, SourceSpec
    from clamp.data.build import DatasetLayout, build_dataset
    from clamp.data.executors import PoolExecutor
    from clamp.data.layout import prepared_paths_for
    from clamp.data.report import summary_rows

    # 2 hosts of 10 tunes: per host an index, a sitemap, a listing, 10 pages and 30 files; only
    # tune 7's fault (one 429) is on so small a site
    spec = SiteSpec(hosts=2, tunes_per_host=10, latency_s=0.01)
    with serve_site(spec, tmp_path / "requests.tsv") as bases:
        source = SourceSpec(kind="web", seeds=[b + "/" for b in bases], max_depth=4, per_host_delay_s=0.0)
        cfg = BuildConfig(name="crawled", output_dir=tmp_path / "out", cache_dir=tmp_path / "cache", sources=[source],
                          decontaminate=False, valid_fraction=0.0, test_fraction=0.0, chunk_size=16)  # fmt: skip
        first = build_dataset(cfg)
        layout = DatasetLayout(cfg.dataset_dir)
        prepared = prepared_paths_for(layout.input_dir / "chunk-00000.arrow", layout)[2].stat().st_mtime
        crawl_end = next((tmp_path / "cache" / "crawl").glob("*/last-crawl.json")).stat().st_mtime
        again = build_dataset(cfg, overwrite=True, executor=PoolExecutor(2))  # prepare in spawned workers

    # streamed: the first of the 4 input chunks (16 records each) was prepared before the crawl ended
    assert len(list(layout.input_dir.glob("chunk-*.arrow"))) == 4 and prepared < crawl_end
    (crawl,) = first.acquisition.values()
    assert (crawl["fetched"], crawl["downloaded"], crawl["replayed"], crawl["retries"]) == (86, 60, 0, 2)
    assert crawl["texts_by_kind"] == {"title": 60, "heading": 60, "description": 60}
    assert first.records_in == 60 and first.formats_in == {"abc": 20, "midi": 20, "musicxml": 20}
    row = dict(summary_rows(first))[f"crawled {bases[0]}/ +1"]
    assert row.startswith("86 pages (0 disallowed, 0 failed, 0 duplicate); 60 music files new, 0 from earlier")
    # the rebuild replays the 60 stored files; its new pass finds the same bytes again
    (recrawl,) = again.acquisition.values()
    assert (recrawl["replayed"], recrawl["downloaded"], recrawl["skipped_duplicate"]) == (60, 0, 60)
    assert again.records_in == 60 and again.rows_written == first.rows_written


def test_a_build_of_two_shares_streams_them_and_a_rebuild_replays_the_same_chunks(tmp_path: Path) -> None:
    from clamp.config import BuildConfig, SourceSpec
    from clamp.data.build import DatasetLayout, build_dataset
    from clamp.data.executors import PoolExecutor
    from clamp.data.layout import prepared_paths_for

    # Crawl-delay 0.1 s: each host's 43 URLs take over 4 s, so the crawl is still on when the first
    # chunk of 16 files is prepared
    spec = SiteSpec(hosts=2, tunes_per_host=10, latency_s=0.01, crawl_delay_s=0.1)
    with serve_site(spec, tmp_path / "requests.tsv") as bases:
        source = SourceSpec(kind="web", seeds=[b + "/" for b in bases], max_depth=4, per_host_delay_s=0.0, shares=2)
        cfg = BuildConfig(name="crawled", output_dir=tmp_path / "out", cache_dir=tmp_path / "cache", sources=[source],
                          decontaminate=False, valid_fraction=0.0, test_fraction=0.0, chunk_size=16)  # fmt: skip
        summary = build_dataset(cfg)  # the shares crawl in a thread of the build; ingest reads as they store
        layout = DatasetLayout(cfg.dataset_dir)
        chunks = {p.name: p.read_bytes() for p in sorted(layout.input_dir.glob("chunk-*.arrow"))}
        prepared = prepared_paths_for(layout.input_dir / "chunk-00000.arrow", layout)[2].stat().st_mtime
        crawl_end = max(p.stat().st_mtime for p in (tmp_path / "cache" / "crawl").glob("*/share-*/last-crawl.json"))
        states = sorted((tmp_path / "cache" / "crawl").glob("*/share-*/crawl.sqlite3"))
        visited = [visited_outcomes([state]) for state in states]
        again = build_dataset(cfg, overwrite=True, executor=PoolExecutor(2))  # shares in parallel processes
    hits = read_log(tmp_path / "requests.tsv")

    (crawl,) = summary.acquisition.values()
    assert (crawl["shares"], crawl["hosts"], crawl["fetched"], crawl["downloaded"]) == (2, 2, 86, 60)
    assert summary.records_in == 60 and "crawl" in summary.seconds
    # streamed: the first of the 4 input chunks was prepared before the last share ended
    assert len(chunks) == 4 and prepared < crawl_end
    assert politeness_problems(spec, hits) == []
    # each share has its own state with its host's 30 files
    assert [sum(o == "downloaded" for o in v.values()) for v in visited] == [30, 30]
    assert accounting_problems(spec, bases, visited[0] | visited[1]) == []
    # the rebuild's new pass finds the same 60 files again; ingest replays the stored ones in the
    # order the first build read them: the same input chunks, byte for byte
    (recrawl,) = again.acquisition.values()
    assert (recrawl["downloaded"], recrawl["skipped_duplicate"]) == (0, 60)
    assert {p.name: p.read_bytes() for p in sorted(layout.input_dir.glob("chunk-*.arrow"))} == chunks
    assert again.records_in == 60 and again.rows_written == summary.rows_written


def test_the_asyncio_prototype_crawls_the_site_as_the_crawler_does() -> None:
    """benchmarks/bench_engines.py compares engines doing the same work: on a small site both
    store the same files, ask the same number of requests, and pass politeness and accounting."""
    from benchmarks.bench_engines import run

    spec = SiteSpec(hosts=2, tunes_per_host=50, latency_s=0.0)
    threaded, asyncio_ = run("threaded", spec, 2), run("asyncio", spec, 2)
    assert threaded["problems"] == asyncio_["problems"] == []
    assert threaded["pages"] == asyncio_["pages"] == 2 * PAGES_PER_HOST
    assert threaded["records"] == asyncio_["records"] == 2 * DOWNLOADED_PER_HOST
    assert threaded["requests"] == asyncio_["requests"]
