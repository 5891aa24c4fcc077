"""build-dataset speed: normalize + patch, shard write, Dask scaling of conversion, 1M-tune streaming.

    .venv/bin/python benchmarks/bench_build.py --help

Figures are medians of `--repeats` runs, printed as a table. Reads WikiMT from the benchmarks
directory (evaluation data used here only as text to time, never written into a dataset).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def wikimt_music() -> list[str]:
    from clamp.config import default_benchmarks_dir

    bdir = default_benchmarks_dir()
    if bdir is None:
        sys.exit("error: benchmarks directory not found (set CLAMP_BENCHMARKS_DIR)")
    return [x["music"] for x in json.loads((bdir / "wikimt" / "wikimusictext.json").read_text(encoding="utf-8"))]


def patch_rates(music: list[str], mode: str, repeats: int) -> list[float]:
    """Tunes per second of normalize + bar-patch over `music`, one value per run, on this core."""
    from clamp.abc.patching import get_patch_mode

    pm = get_patch_mode(mode)
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        for m in music:
            pm.patch_bytes(pm.prepare(m), 512)
        runs.append(len(music) / (time.perf_counter() - t))
    return runs


def shard_write_rates(music: list[str], repeats: int) -> list[float]:
    """Tunes per second of patch bytes -> Arrow list<fixed_size_list<uint8,64>> -> atomic IPC
    write in shards of 2,048, one value per run."""
    import pyarrow as pa

    from clamp.abc.patching import get_patch_mode
    from clamp.data.shards import patches_array, write_atomic

    pm = get_patch_mode("clamp-v1")
    patch_bytes = [pm.patch_bytes(pm.prepare(m), 512) for m in music]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            t = time.perf_counter()
            for start in range(0, len(music), 2048):
                pb = patch_bytes[start : start + 2048]
                table = pa.table({"abc": music[start : start + 2048], "patches": patches_array(pb)})
                write_atomic(table, Path(tmp) / f"s{r}-{start}.arrow")
            runs.append(len(music) / (time.perf_counter() - t))
    return runs


def bench_patch(repeats: int, times: int) -> dict:
    music = wikimt_music() * times
    return {
        f"normalize+patch {mode} (tunes/s, 1 core)": round(statistics.median(patch_rates(music, mode, repeats)))
        for mode in ("clamp-v1", "m3")
    }


def bench_shard_write(repeats: int, times: int) -> dict:
    runs = shard_write_rates(wikimt_music() * times, repeats)
    return {"shard write (tunes/s, 1 core)": round(statistics.median(runs))}


def bench_dask(limit: int, worker_counts: tuple[int, ...] = (1, 2)) -> dict:
    """prepare_chunk over corpus MusicXML chunks (no conversion cache) on 1, 2, ... Dask workers
    (each worker process converts through its own converter pool). More workers than cores
    oversubscribe the machine: the figure then shows what that costs or gains."""
    from distributed import Client, LocalCluster

    from clamp.data.build import DatasetLayout, ingest, prepare_chunk
    from clamp.data.prepare import PrepareConfig
    from clamp.data.sources.corpus import iter_corpus

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        layout = DatasetLayout(Path(tmp) / "ds")
        inputs = ingest(iter_corpus(formats=("mxl",), limit=limit), layout, 8)
        for n in worker_counts:
            for p in layout.prepared_dir.glob("*"):
                p.unlink()
            with (
                LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    host="127.0.0.1",  # loopback only, as the flow's cluster
                ) as cluster,
                Client(cluster) as client,
            ):
                client.submit(lambda: 0).result()  # workers warm
                t = time.perf_counter()
                futures = client.map(prepare_chunk, inputs, layout=layout, pcfg=PrepareConfig())
                client.gather(futures)
                results[n] = time.perf_counter() - t
    out: dict = {}
    for n in worker_counts:
        out[f"convert {limit} MusicXML, {n} worker{'s' if n > 1 else ''} (s)"] = round(results[n], 1)
    for n in worker_counts[1:]:
        out[f"Dask speed-up {n} vs {worker_counts[0]} workers"] = round(results[worker_counts[0]] / results[n], 2)
    return out


def stream_child(n: int, tmp: str) -> None:
    """Child process: ingest + prepare + plan of n synthetic tunes, one chunk in memory at a time."""
    from clamp.config import BuildConfig
    from clamp.data.build import DatasetLayout, ingest, plan_shards, prepare_chunk, prepared_paths_for
    from clamp.data.prepare import PrepareConfig
    from clamp.data.records import RawRecord

    music = wikimt_music()

    def records():
        for i in range(n):
            # a distinct tune each time: a numbered title and one changed bar
            base = music[i % len(music)]
            yield RawRecord(
                id=f"synthetic:{i}",
                source="synthetic",
                format="abc",
                content=(f"X:1\nT:Tune {i}\n" + base.replace("|", f"| z{i % 97} |", 1)).encode(),
            )

    layout = DatasetLayout(Path(tmp) / "ds")
    t = time.perf_counter()
    inputs = ingest(records(), layout, 4096)
    t_ingest = time.perf_counter() - t
    t = time.perf_counter()
    pcfg = PrepareConfig()
    for p in inputs:
        prepare_chunk(p, layout, pcfg)
    t_prepare = time.perf_counter() - t
    t = time.perf_counter()
    cfg = BuildConfig(output_dir=Path(tmp), name="ds", decontaminate=False)
    plan = plan_shards([prepared_paths_for(p, layout)[0] for p in inputs], layout, cfg, None)
    t_plan = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "n": n,
                "ingest_s": t_ingest,
                "prepare_s": t_prepare,
                "plan_s": t_plan,
                "kept": plan.kept,
                "peak_rss_mb": peak_mb,
            }
        )
    )


def bench_stream(n: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, __file__, "--stream-child", str(n), tmp],
            capture_output=True,
            text=True,
            check=True,
        )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        f"stream {n:,} tunes: ingest+prepare+plan (s)": round(r["ingest_s"] + r["prepare_s"] + r["plan_s"], 1),
        f"stream {n:,} tunes: prepare (tunes/s, 1 core)": round(n / r["prepare_s"]),
        f"stream {n:,} tunes: peak RSS (MB)": round(r["peak_rss_mb"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (median reported)")
    parser.add_argument("--times", type=int, default=20, help="WikiMT repetitions for the patch benchmark")
    parser.add_argument(
        "--dask-limit", type=int, default=96, help="MusicXML scores for the Dask scaling test (0 = skip)"
    )
    parser.add_argument(
        "--dask-workers",
        default="1,2",
        help="worker counts for the Dask scaling test, e.g. 1,2,4 (4 oversubscribes 2 cores)",
    )
    parser.add_argument("--stream", type=int, default=1_000_000, help="tunes for the streaming test (0 = skip)")
    parser.add_argument("--stream-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stream_child:
        stream_child(int(args.stream_child[0]), args.stream_child[1])
        return
    from clamp.environment import apply_defaults

    apply_defaults()
    figures = {}
    figures.update(bench_patch(args.repeats, args.times))
    figures.update(bench_shard_write(args.repeats, args.times))
    if args.dask_limit:
        figures.update(bench_dask(args.dask_limit, tuple(int(n) for n in args.dask_workers.split(","))))
    if args.stream:
        figures.update(bench_stream(args.stream))
    width = max(map(len, figures))
    for k, v in figures.items():
        print(f"{k:<{width}}  {v:,}" if isinstance(v, int) else f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
