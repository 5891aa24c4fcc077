"""Evaluation-side speed: embedding throughput and search latency.

    .venv/bin/python benchmarks/bench_eval.py --help

The search comparison needs the `bench` extra (`pip install -e '.[bench]'`, for usearch);
`--n 0` skips it.

- embedding throughput (tunes/s) of the music tower for given presets on this CPU (random
  weights: the speed does not depend on training), over WikiMT tunes;
- search over N stored embeddings (default 1,000,000, dim 256): exact (one matrix-vector
  product per query) and an approximate HNSW index (usearch): p50/p99 latency per query and
  the approximate index's recall@10 against exact, at two search expansions. The synthetic
  set is deliberately hard: 1,000 tight clusters, so a query's top 10 are near-ties among a
  thousand similar vectors.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def bench_embedding(presets: list[str], n: int) -> dict:
    import torch

    from clamp.config import default_benchmarks_dir
    from clamp.inference.embed import embed_music
    from clamp.model.clamp_model import ClampModel
    from clamp.model.config import ClampConfig, music_preset

    bdir = default_benchmarks_dir()
    music = [x["music"] for x in json.loads((bdir / "wikimt" / "wikimusictext.json").read_text())][:n]
    out = {}
    for preset in presets:
        torch.manual_seed(0)
        from transformers import BertConfig, BertModel

        text = BertModel(
            BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
        )
        model = ClampModel(ClampConfig(music=music_preset(preset)), text)
        embed_music(model, music[:8])
        t = time.perf_counter()
        embed_music(model, music, batch_size=32)
        out[f"embed {preset} (tunes/s, CPU)"] = round(len(music) / (time.perf_counter() - t), 1)
    return out


def bench_search(n: int, dim: int, queries: int, expansions: tuple[int, ...] = (64, 512)) -> dict:
    from usearch.index import Index

    rng = np.random.default_rng(0)
    # clustered data, like real embeddings, rather than uniform noise
    centers = rng.standard_normal((1000, dim)).astype(np.float32)
    data = centers[rng.integers(0, 1000, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    q = data[rng.integers(0, n, queries)] + 0.1 * rng.standard_normal((queries, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)

    exact_times, exact_top = [], []
    for v in q:
        t = time.perf_counter()
        scores = data @ v
        top = np.argpartition(-scores, 10)[:10]
        top = top[np.argsort(-scores[top])]
        exact_times.append(time.perf_counter() - t)
        exact_top.append(set(top.tolist()))

    index = Index(ndim=dim, metric="ip", dtype="f32", connectivity=16, expansion_add=128)
    t = time.perf_counter()
    index.add(np.arange(n), data, threads=2)
    build_s = time.perf_counter() - t

    def pct(xs, p):
        return round(float(np.percentile(xs, p)) * 1000, 2)

    out = {
        f"exact search over {n:,} x {dim} p50 (ms)": pct(exact_times, 50),
        f"exact search over {n:,} x {dim} p99 (ms)": pct(exact_times, 99),
        "usearch HNSW build, 2 threads (s)": round(build_s, 1),
    }
    for ef in expansions:
        index.expansion_search = ef
        approx_times, recalls = [], []
        for v, truth in zip(q, exact_top, strict=True):
            t = time.perf_counter()
            found = index.search(v, 10)
            approx_times.append(time.perf_counter() - t)
            recalls.append(len(set(found.keys.tolist()) & truth) / 10)
        out[f"usearch ef={ef} p50 (ms)"] = pct(approx_times, 50)
        out[f"usearch ef={ef} p99 (ms)"] = pct(approx_times, 99)
        out[f"usearch ef={ef} recall@10 vs exact"] = round(statistics.mean(recalls), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="small,clamp-s-512")
    parser.add_argument("--tunes", type=int, default=200, help="WikiMT tunes to embed per preset")
    parser.add_argument("--n", type=int, default=1_000_000, help="stored embeddings for the search test")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    if args.n:
        try:
            import usearch.index  # noqa: F401
        except ImportError:
            sys.exit(
                "bench_eval.py: the search comparison needs usearch, which is in the optional `bench` extra:\n"
                "    .venv/bin/python -m pip install -e '.[bench]'\n"
                "or pass --n 0 to skip the search comparison."
            )
    figures = {}
    if args.tunes:
        figures.update(bench_embedding(args.presets.split(","), args.tunes))
    if args.n:
        figures.update(bench_search(args.n, args.dim, args.queries))
    width = max(map(len, figures))
    for k, v in figures.items():
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
