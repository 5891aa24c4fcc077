"""A crawl split into shares follows links across shares: a share hands the links it finds to
another share's hosts over to that share (`clamp.data.ingest.crawl_in_rounds`), so a file linked
only from a host of another share is still found, and each host is asked by its own share only.
Two fixture hosts on 127.0.0.1 (ThreadingHTTPServer in threads)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from clamp.config import BuildConfig, SourceSpec
from clamp.data.executors import InProcessExecutor
from clamp.data.ingest import acquisition_stats, crawl_in_rounds, crawl_jobs
from clamp.data.sources.web import STATE_FILE, Crawler

ABC = "text/vnd.abc"


def tune(n: int) -> bytes:
    return f"X:{n}\nT:Tune {n}\nK:C\n{'CDEFGABc'[n % 8]}4 z4|\n".encode()


@contextmanager
def two_hosts(requests: list[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """Host 1 links to its tune and to a page of host 2 that host 2 itself never links; that page
    links to a tune of its own host and back to a tune of host 1 that only it links."""
    servers: list[ThreadingHTTPServer] = []

    def handler(index: int):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # noqa: N802
                requests.append((f"host{index}", self.path))
                other = f"http://127.0.0.1:{servers[1 - index].server_address[1]}"
                pages = {
                    (0, "/"): (b'<a href="/a.abc">A</a> <a href="%s/page.html">More</a>' % other.encode(), "text/html"),
                    (0, "/a.abc"): (tune(1), ABC),
                    (0, "/a2.abc"): (tune(2), ABC),
                    (1, "/"): (b'<a href="/b.abc">B</a>', "text/html"),
                    (1, "/b.abc"): (tune(3), ABC),
                    (1, "/page.html"): (
                        b'<a href="/deep.abc">Deep</a> <a href="%s/a2.abc">A2</a>' % other.encode(),
                        "text/html",
                    ),
                    (1, "/deep.abc"): (tune(4), ABC),
                }
                body, kind = pages.get((index, self.path), (b"not here", "text/plain"))
                self.send_response(200 if (index, self.path) in pages else 404)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    for i in range(2):
        servers.append(ThreadingHTTPServer(("127.0.0.1", 0), handler(i)))
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True) for s in servers]
    for t in threads:
        t.start()
    try:
        yield tuple(f"http://127.0.0.1:{s.server_address[1]}" for s in servers)  # type: ignore[misc]
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def visited(state_dir: Path) -> set[str]:
    with sqlite3.connect(state_dir / STATE_FILE) as db:
        return {url for (url,) in db.execute("SELECT url FROM visited")}


def stored(state_dir: Path) -> list[str]:
    with sqlite3.connect(state_dir / STATE_FILE) as db:
        return [json.loads(meta)["url"] for (meta,) in db.execute("SELECT metadata FROM records ORDER BY seq")]


def test_shares_hand_links_to_each_others_hosts_until_none_is_new(tmp_path: Path) -> None:
    requests: list[tuple[str, str]] = []
    with two_hosts(requests) as (one, two):
        source = SourceSpec(kind="web", seeds=[one + "/", two + "/"], max_depth=3, per_host_delay_s=0.0, shares=2)
        cfg = BuildConfig(name="x", output_dir=tmp_path / "out", cache_dir=tmp_path / "cache", sources=[source])
        jobs = crawl_jobs(cfg)
        rounds = crawl_in_rounds(InProcessExecutor(), jobs)
        share_of = {host: n for n, job in enumerate(jobs) for host in Crawler(job).allowed_hosts}
        s1, s2 = (jobs[share_of[h.removeprefix("http://")]].state_dir for h in (one, two))

        # round 1: share 1 finds A and hands over page.html; round 2: share 2 finds deep.abc on it and
        # hands A2 back; round 3: share 1 fetches A2 and hands nothing over
        assert rounds == 3
        assert sorted(stored(s1)) == [f"{one}/a.abc", f"{one}/a2.abc"]
        assert sorted(stored(s2)) == [f"{two}/b.abc", f"{two}/deep.abc"]
        # each host was asked by its own share only, each URL once
        assert visited(s1) == {f"{one}/", f"{one}/sitemap.xml", f"{one}/a.abc", f"{one}/a2.abc"}
        assert visited(s2) == {
            f"{two}/",
            f"{two}/sitemap.xml",
            f"{two}/b.abc",
            f"{two}/page.html",
            f"{two}/deep.abc",
        }
        asked = [r for r in requests if r[1] != "/robots.txt"]
        assert len(asked) == len(set(asked)) == 9

        # the counts add up over the rounds: 9 URLs fetched, 4 files, 2 sitemaps missing
        (counts,) = acquisition_stats(cfg).values()
        assert (counts["shares"], counts["hosts"], counts["fetched"], counts["downloaded"]) == (2, 2, 9, 4)
        assert counts["errors"] == {"http_404": 2}

        # a rerun of the stage (a later build) recrawls each share's own hosts in a new pass, finds
        # nothing new, and again needs the rounds to reach page.html's links
        assert crawl_in_rounds(InProcessExecutor(), jobs) == 3
        assert sorted(stored(s1) + stored(s2)) == sorted([f"{one}/a.abc", f"{one}/a2.abc", f"{two}/b.abc",
                                                          f"{two}/deep.abc"])  # fmt: skip


def store(state_dir: Path, url: str) -> None:
    """A download committed in a share's state, as the crawler commits one."""
    from clamp.data.records import RawRecord
    from clamp.data.sources.web_state import CrawlItem, CrawlState

    state = CrawlState(state_dir / STATE_FILE)
    try:
        record = RawRecord(url, "web", "abc", tune(len(url)), [url], {"url": url}, url)
        state.finish(CrawlItem(url, 1, "", ""), "downloaded", record=record)
    finally:
        state.close()


def test_shares_are_read_as_they_store_and_replayed_in_that_order(tmp_path: Path) -> None:
    from clamp.data.ingest import replay_shares

    root = tmp_path / "crawl"
    crawling = True
    reading = replay_shares(root, 2, lambda: crawling, poll_s=0.01)
    # share 1 stores first, then share 0, then share 1 again: read in that order, while crawling
    store(root / "share-1", "b1")
    assert next(reading).id == "b1"
    store(root / "share-0", "a1")
    assert next(reading).id == "a1"
    store(root / "share-1", "b2")
    store(root / "share-1", "b3")
    assert [next(reading).id, next(reading).id] == ["b2", "b3"]
    store(root / "share-0", "a2")
    crawling = False  # the crawl stage ended: what is left is read, then the source ends
    assert [r.id for r in reading] == ["a2"]

    # a rebuild replays that order (share after share would be a1 a2 b1 b2 b3), then new files
    store(root / "share-0", "a3")
    assert [r.id for r in replay_shares(root, 2, lambda: False)] == ["b1", "a1", "b2", "b3", "a2", "a3"]
    assert [r.id for r in replay_shares(root, 2, lambda: False)] == ["b1", "a1", "b2", "b3", "a2", "a3"]

    # a share whose state was replaced: the order no longer matches it, and starts over
    (root / "share-1" / STATE_FILE).unlink()
    store(root / "share-1", "c1")
    assert [r.id for r in replay_shares(root, 2, lambda: False)] == ["a1", "a2", "a3", "c1"]
