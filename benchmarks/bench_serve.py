"""`clamp serve` speed: figures printed as JSON, not timed tests.

    .venv/bin/python benchmarks/bench_serve.py api --model DIR --index DATASET [--clients 32 --seconds 30]
    .venv/bin/python benchmarks/bench_serve.py ann [--n 1000000 --dim 256 --ef 256,512,1024] [--keep DIR]
    .venv/bin/python benchmarks/bench_serve.py memory --dir DIR   # the model + that kept index, memory-mapped

- `api`: starts `clamp serve` on a free loopback port (or uses --url), waits until it is ready,
  then runs N concurrent clients for S seconds against /api/search with varied queries; prints
  p50/p99 latency, requests/s, the error count and the server's peak memory (VmHWM). The
  clients run on the same machine, so they take CPU from the server: the figures are a floor.
- `ann`: N synthetic embeddings, clustered like bench_eval.py's deliberately hard set (1,000
  tight clusters, so a query's top 10 are near-ties among about a thousand vectors); builds the
  HNSW index the server builds (clamp.inference.index.build_ann), memory-maps it as the server does,
  and prints the build time, exact search p50/p99, HNSW p50/p99 and recall@10 against exact for
  each search breadth, and the peak memory of this process (model-free: the index alone).
- `memory`: what a server holds at that scale, the model and the kept index memory-mapped,
  answering text queries: peak resident memory, split into heap and mapped index pages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM: the peak resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], p: float) -> float:
    return round(float(np.percentile(xs, p)) * 1000, 2)


# --- API under load -------------------------------------------------------------------------------
def queries(n: int = 2000, seed: int = 0) -> list[str]:
    """`n` distinct text queries, made from templates (past a few thousand, numbered)."""
    kinds = [
        "jig",
        "reel",
        "waltz",
        "hornpipe",
        "polka",
        "march",
        "chorale",
        "folk song",
        "air",
        "strathspey",
        "slip jig",
        "lullaby",
        "dance",
        "hymn",
        "ballad",
    ]
    moods = ["lively", "slow", "gentle", "sad", "bright", "stately", "cheerful", "melancholy", "fast", "simple"]
    keys = [f"{n} {m}" for n, m in itertools.product("CDEFGAB", ["major", "minor"])]
    meters = ["2/4", "3/4", "4/4", "6/8", "9/8", "2/2"]
    places = ["Ireland", "Scotland", "Germany", "China", "England", "the Essen collection", "Bach"]
    rng = random.Random(seed)
    out = set()
    while len(out) < n:
        number = f" (number {len(out)})" if len(out) >= 2000 else ""  # the templates run out of variety
        out.add(
            rng.choice(
                [
                    f"a {rng.choice(moods)} {rng.choice(kinds)} in {rng.choice(keys)}",
                    f"{rng.choice(kinds)} in {rng.choice(meters)} time",
                    f"a {rng.choice(kinds)} from {rng.choice(places)}",
                    f"a {rng.choice(moods)} tune in {rng.choice(keys)}, in {rng.choice(meters)}",
                ]
            )
            + number
        )
    ordered = sorted(out)
    rng.shuffle(ordered)
    return ordered


async def load(url: str, clients: int, seconds: float, k: int, distinct: int) -> dict:
    import httpx

    qs = queries(distinct)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop = time.monotonic() + seconds

    async def client(i: int, http: httpx.AsyncClient) -> None:
        j = i
        while time.monotonic() < stop:
            q = qs[j % len(qs)]
            j += clients
            t = time.perf_counter()
            try:
                r = await http.get("/api/search", params={"q": q, "k": k, "abc": "false"})
                ok = r.status_code == 200 and len(r.json()["results"]) == k
                key = None if ok else f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            latencies.append(time.perf_counter() - t)
            if key:
                errors[key] = errors.get(key, 0) + 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        await http.get("/api/search", params={"q": "warm-up", "k": k})
        start = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        wall = time.perf_counter() - start
    return {
        "clients": clients,
        "seconds": round(wall, 1),
        "requests": len(latencies),
        "requests/s": round(len(latencies) / wall, 1),
        "p50 (ms)": pct(latencies, 50),
        "p99 (ms)": pct(latencies, 99),
        "errors": sum(errors.values()),
        "error kinds": errors,
    }


def bench_api(args: argparse.Namespace) -> dict:
    import httpx

    proc = None
    url = args.url
    if url is None:
        from tests.conftest import free_port

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [
            str(Path(sys.executable).with_name("clamp")),
            "serve",
            "--model",
            str(args.model),
            "--index",
            str(args.index),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        if args.concurrency:
            cmd += ["--concurrency", str(args.concurrency)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 1800
        while True:
            try:
                ready = httpx.get(f"{url}/readyz", timeout=5)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or (proc and proc.poll() is not None):
                raise SystemExit("the server did not become ready")
            time.sleep(1)
        out = {"index": ready.json()}
        pid = proc.pid if proc is not None else args.pid
        server_cpu, client_cpu, t = cpu_seconds(pid) if pid else 0.0, cpu_seconds(), time.monotonic()
        out["search under load"] = result = asyncio.run(load(url, args.clients, args.seconds, args.k, args.distinct))
        result["distinct queries"] = args.distinct
        wall = time.monotonic() - t
        # the machine is shared: CPU time per request says what the server costs, whatever else runs
        out["client CPU share of the machine"] = round((cpu_seconds() - client_cpu) / wall / (os.cpu_count() or 1), 2)
        if pid:
            used = cpu_seconds(pid) - server_cpu
            out["server CPU per request (ms)"] = round(used / max(result["requests"], 1) * 1000, 2)
            out["server CPU share of the machine"] = round(used / wall / (os.cpu_count() or 1), 2)
            out["server peak memory (MB)"] = peak_rss_mb(pid)
        out["load average (1 min) after"] = round(os.getloadavg()[0], 2)
        return out
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)


# --- HNSW over synthetic embeddings --------------------------------------------------------------
def clustered(n: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """bench_eval.py's hard set: 1,000 tight clusters, queries near stored vectors."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((1000, dim)).astype(np.float32)
    data = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 100_000):  # in slices: no 2 GB temporaries
        m = min(n, s + 100_000) - s
        block = centers[rng.integers(0, 1000, m)] + 0.5 * rng.standard_normal((m, dim)).astype(np.float32)
        data[s : s + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    q = data[rng.integers(0, n, queries)] + 0.1 * rng.standard_normal((queries, dim)).astype(np.float32)
    return data, q / np.linalg.norm(q, axis=1, keepdims=True)


def bench_ann(args: argparse.Namespace) -> dict:
    from clamp.inference.index import SearchIndex, build_ann

    data, q = clustered(args.n, args.dim, args.queries)
    out: dict = {"n": args.n, "dim": args.dim, "connectivity": args.connectivity, "expansion_add": args.expansion_add}
    with contextlib.ExitStack() as stack:
        tmp = args.keep or stack.enter_context(tempfile.TemporaryDirectory(dir=args.tmp))
        Path(tmp).mkdir(parents=True, exist_ok=True)
        vectors_path = Path(tmp) / "vectors.npy"
        np.save(vectors_path, data)
        del data
        vectors = np.load(vectors_path, mmap_mode="r")  # as the server holds them
        exact = SearchIndex([str(i) for i in range(args.n)], [""] * args.n, vectors)
        exact_times, truth = [], []
        for v in q:
            t = time.perf_counter()
            rows, _ = exact.search(v, 10)
            exact_times.append(time.perf_counter() - t)
            truth.append(set(rows.tolist()))
        out["exact p50 (ms)"], out["exact p99 (ms)"] = pct(exact_times, 50), pct(exact_times, 99)
        ann_path = Path(tmp) / "index.usearch"
        t = time.perf_counter()
        build_ann(
            vectors, ann_path, threads=args.threads, connectivity=args.connectivity, expansion_add=args.expansion_add
        )
        out[f"HNSW build, {args.threads or os.cpu_count()} threads (s)"] = round(time.perf_counter() - t, 1)
        out["HNSW file (MB)"] = round(ann_path.stat().st_size / 2**20, 1)
        from usearch.index import Index

        ann = SearchIndex(exact.ids, exact.titles, vectors, Index.restore(str(ann_path), view=True))
        for ef in [int(x) for x in args.ef.split(",")]:
            ann.ann.expansion_search = ef
            times, recalls = [], []
            for v, want in zip(q, truth, strict=True):
                t = time.perf_counter()
                rows, _ = ann.search(v, 10)
                times.append(time.perf_counter() - t)
                recalls.append(len(set(rows.tolist()) & want) / 10)
            out[f"ef={ef}"] = {
                "p50 (ms)": pct(times, 50),
                "p99 (ms)": pct(times, 99),
                "recall@10": round(statistics.mean(recalls), 3),
            }
        out["peak memory of this process (MB)"] = peak_rss_mb()
    return out


def bench_memory(args: argparse.Namespace) -> dict:
    """The peak memory of a process holding what `clamp serve` holds at this scale: the model
    and an index of `ann --keep DIR`, memory-mapped, answering text queries."""
    from usearch.index import Index

    from clamp.inference.embed import embed_text
    from clamp.inference.files import load_model
    from clamp.inference.index import SearchIndex

    model = load_model(args.model)
    vectors = np.load(Path(args.dir) / "vectors.npy", mmap_mode="r")
    n = len(vectors)
    index = SearchIndex(
        [str(i) for i in range(n)], [""] * n, vectors, Index.restore(str(Path(args.dir) / "index.usearch"), view=True)
    )
    qs = queries(args.queries)
    times = []
    for q in qs:
        vector = embed_text(model, [q])[0]
        if len(vector) != index.dim:  # the synthetic set's dimension differs from the model's
            vector = np.resize(vector, index.dim)
            vector /= np.linalg.norm(vector)
        t = time.perf_counter()
        index.search(vector, 10)
        times.append(time.perf_counter() - t)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    mb = {k: round(int(status[k].split()[0]) / 1024, 1) for k in ("RssAnon", "RssFile")}
    return {
        "rows": n,
        "queries": len(qs),
        "HNSW search p50 (ms)": pct(times, 50),
        "peak memory: model + memory-mapped index (MB)": peak_rss_mb(),
        # mapped index pages are page cache the kernel can drop, unlike the heap
        "resident now: heap (RssAnon, MB)": mb["RssAnon"],
        "resident now: mapped files (RssFile, MB)": mb["RssFile"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    api = sub.add_parser("api", help="search latency and throughput of a running server under load")
    api.add_argument("--model", type=Path, default=ROOT / "outputs/recipe/e4-p64-lr3e-4/model")
    api.add_argument("--index", type=Path, default=ROOT / "data/datasets/music21-corpus")
    api.add_argument("--url", help="a server already running (else one is started)")
    api.add_argument("--pid", type=int, help="the process id of the server at --url (for its CPU and memory)")
    api.add_argument("--clients", type=int, default=32)
    api.add_argument("--seconds", type=float, default=30)
    api.add_argument("--k", type=int, default=10)
    api.add_argument(
        "--distinct",
        type=int,
        default=100_000,
        help="distinct queries, cycled (the server caches 4,096 query embeddings)",
    )
    api.add_argument("--concurrency", type=int, help="the server's --concurrency")
    ann = sub.add_parser("ann", help="HNSW against exact search over synthetic embeddings")
    ann.add_argument("--n", type=int, default=1_000_000)
    ann.add_argument("--dim", type=int, default=256)
    ann.add_argument("--queries", type=int, default=300)
    ann.add_argument("--connectivity", type=int, default=None)
    ann.add_argument("--expansion-add", type=int, default=None)
    ann.add_argument("--ef", default="256,512,1024")
    ann.add_argument("--threads", type=int, default=0, help="build threads (0: all)")
    ann.add_argument("--tmp", default=None, help="folder for the index files [the system's temp folder]")
    ann.add_argument("--keep", default=None, help="keep vectors.npy and index.usearch in this folder (for `memory`)")
    mem = sub.add_parser("memory", help="peak memory of the model and a kept index, answering queries")
    mem.add_argument("--dir", required=True, help="the folder of `ann --keep`")
    mem.add_argument("--model", type=Path, default=ROOT / "outputs/recipe/e4-p64-lr3e-4/model")
    mem.add_argument("--queries", type=int, default=500)
    args = parser.parse_args()
    if args.what == "memory":
        print(json.dumps(bench_memory(args), indent=2))
    elif args.what == "ann":
        from clamp.inference.index import ANN_CONNECTIVITY, ANN_EXPANSION_ADD

        args.connectivity = args.connectivity or ANN_CONNECTIVITY
        args.expansion_add = args.expansion_add or ANN_EXPANSION_ADD
        print(json.dumps(bench_ann(args), indent=2))
    else:
        print(json.dumps(bench_api(args), indent=2))


if __name__ == "__main__":
    main()
