"""The README's Performance table: a few short measurements, each the median of several runs,
written as a dated report file with its machine and commit.

    .venv/bin/python benchmarks/performance_report.py --dataset data/datasets/music21-corpus \\
        --report docs/results/<date>-performance
    .venv/bin/python benchmarks/performance_report.py --readme --report docs/results/<date>-performance

The first form measures and writes `report.json` and `report.md`; the second rewrites the README's
Performance block from that report (a test checks that the two agree). Run it on an idle machine:
every figure is CPU time on this machine's cores, and anything else running lowers it.

What it measures (the longer studies behind each row are the `bench_*.py` scripts beside it):
- build: normalize + bar-patch and the Arrow shard write over WikiMT's tunes, on one core
  (`bench_build.py`); score conversion to ABC in the converter pool, per format
  (`bench_conversion.py`);
- training: the real loop (`clamp.train.run.train`, MLflow off) of the CPU recipe's model on the
  built dataset, samples/s over its logging windows after the first (`bench_train_loop.py`);
- inference: music embedding throughput, one text query's embedding, and exact search over
  100,000 stored embeddings (`bench_eval.py`);
- acquisition: the manifest source fetching from 50 loopback hosts that answer after 100 ms,
  one host at a time and many at once (`bench_fetch.py`; 3 runs each).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from report_files import git_commit, replace_block  # noqa: E402

README_BEGIN = "<!-- performance-report:begin (benchmarks/performance_report.py --readme writes this block) -->"
README_END = "<!-- performance-report:end -->"


def runs_of(repeats: int, measure: Callable[[], float]) -> list[float]:
    """`measure()` called `repeats` times: the runs a row reports the median of."""
    return [measure() for _ in range(repeats)]


def row(area: str, what: str, unit: str, values: list[float], digits: int = 1) -> dict:
    def rounded(v: float) -> float:
        return round(v, digits) if digits else round(v)

    return {
        "area": area,
        "what": what,
        "unit": unit,
        "median": rounded(statistics.median(values)),
        "runs": [rounded(v) for v in values],
    }


def build_rows(repeats: int) -> list[dict]:
    from bench_build import patch_rates, shard_write_rates, wikimt_music

    music = wikimt_music() * 3
    patch_runs = patch_rates(music, "clamp-v1", repeats)
    write_runs = shard_write_rates(music, repeats)
    return [
        row(
            "build", f"normalize + bar-patch (clamp-v1), {len(music):,} WikiMT tunes, 1 core", "tunes/s", patch_runs, 0
        ),
        row("build", "Arrow shard write (patch column, atomic IPC file), 1 core", "tunes/s", write_runs, 0),
    ]


def conversion_rows(repeats: int) -> list[dict]:
    import warnings

    from bench_conversion import convert_all, sample

    from clamp.abc.convert import to_abc
    from clamp.abc.pool import default_pool

    warnings.filterwarnings("ignore")
    groups = sample(12, 6, 6, 0, 200_000)
    default_pool()
    rows = []
    for group, items in groups.items():
        if not items:
            continue
        to_abc(items[0][0], items[0][2], 120.0)  # warm: the worker's imports happen once, untimed
        runs = [len(items) / convert_all(items, "pool", 120.0)[0] for _ in range(repeats)]
        rows.append(
            row("build", f"convert {group} to ABC ({len(items)} scores, converter pool, 1 worker)", "scores/s", runs)
        )
    return rows


def training_rows(dataset: str) -> list[dict]:
    from clamp.train.config import TrainConfig
    from clamp.train.run import train

    recipe = ROOT / "recipes" / "cpu-clamp.yaml"
    base = TrainConfig.load(recipe)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = base.model_copy(
            update={
                "dataset_dir": dataset,
                "output_dir": tmp,
                "steps": 50,
                "log_every": 10,
                "checkpoint_every": 0,
                "eval_every": 0,
                "max_minutes": None,
                "mlflow": False,
                "progress": "off",
                "warmup_steps": 5,
            }
        )
        train(TrainConfig(**cfg.model_dump()))
        records = [json.loads(line) for line in (Path(tmp) / "metrics-rank0.jsonl").read_text().splitlines()]
    windows = [r["samples_per_s"] for r in records if "samples_per_s" in r][1:]  # the first holds start-up
    what = (
        f"contrastive training, CPU recipe ({base.preset}, batch {base.batch_size}, {base.text_views} text views, "
        f"locked text tower), logging windows of 10 steps"
    )
    return [row("training", what, "samples/s", windows)]


def inference_rows(repeats: int) -> list[dict]:
    import numpy as np
    import torch
    from bench_build import wikimt_music

    from clamp.inference.embed import embed_music, embed_text
    from clamp.inference.index import SearchIndex
    from clamp.model.clamp_model import ClampModel
    from clamp.model.config import ClampConfig, music_preset

    torch.manual_seed(0)
    model = ClampModel.from_config(ClampConfig(music=music_preset("small")))  # speed does not depend on training
    model.eval()
    music = wikimt_music()[:200]
    embed_music(model, music[:8])

    def embed_rate() -> float:
        t = time.perf_counter()
        embed_music(model, music, batch_size=32)
        return len(music) / (time.perf_counter() - t)

    def query_ms() -> float:  # what `clamp search` and the service do for a text query
        times = []
        for i in range(30):
            t = time.perf_counter()
            embed_text(model, [f"a lively jig in D major, number {i}"])
            times.append(time.perf_counter() - t)
        return statistics.median(times) * 1000

    rng = np.random.default_rng(0)
    data = rng.standard_normal((100_000, 256)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    index = SearchIndex([str(i) for i in range(len(data))], [""] * len(data), data)  # the service's exact search

    def search_ms() -> float:
        times = []
        for v in data[rng.integers(0, len(data), 50)]:
            t = time.perf_counter()
            index.search(v, 10)
            times.append(time.perf_counter() - t)
        return statistics.median(times) * 1000

    embed_runs = runs_of(repeats, embed_rate)
    query_runs = runs_of(repeats, query_ms)
    search_runs = runs_of(repeats, search_ms)
    return [
        row("inference", "embed music, `small` preset, 200 WikiMT tunes, batch 32", "tunes/s", embed_runs),
        row("inference", "embed one text query (all-MiniLM-L6-v2), median of 30", "ms", query_runs, 2),
        row("inference", "exact search, 100,000 stored embeddings x 256, top 10, median of 50", "ms", search_runs, 2),
    ]


def fetch_rows(repeats: int) -> list[dict]:
    """The manifest source fetching from 50 loopback hosts that answer after 100 ms (bench_fetch.py)."""
    from bench_fetch import measure, site
    from loopback_site import serve_site

    hosts, latency_ms = 50, 100
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve_site(site(hosts, 2000, latency_ms / 1000), Path(tmp) / "log") as bases,
    ):
        for concurrency, pages in ((1, 100), (16, 1000), (50, 2000)):
            runs = [measure(bases, pages, concurrency) for _ in range(repeats)]
            what = (f"fetch a manifest's URLs, {hosts} hosts answering after {latency_ms} ms, "
                    f"{concurrency} host(s) at once, {pages} pages")  # fmt: skip
            rows.append(row("acquisition", what, "pages/s", runs))
    return rows


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem_kb = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    return f"{cpu}, {cores} cores, {mem_kb / 2**20:.0f} GiB, no GPU"


def markdown(report: dict) -> str:
    p = report["provenance"]
    lines = [
        f"# Performance, {p['date']}",
        "",
        f"Machine: {p['machine']}. Commit {p['commit']}, torch {p['torch']}, Python {p['python']}. "
        f"Each figure is the median of the runs listed (written by `benchmarks/performance_report.py`).",
        "",
        "| area | what | median | runs |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['area']} | {r['what']} | {r['median']:,} {r['unit']} | {', '.join(f'{v:,}' for v in r['runs'])} |"
        for r in report["rows"]
    ]
    return "\n".join(lines) + "\n"


def readme_block(report: dict, report_path: str) -> str:
    p = report["provenance"]
    lines = [
        README_BEGIN,
        "",
        f"Measured on {p['date']} at commit {p['commit']} on {p['machine']} "
        f"([report]({report_path}/report.md), medians of several runs; `benchmarks/performance_report.py`).",
        "",
        "| area | what | median |",
        "|---|---|---|",
    ]
    lines += [f"| {r['area']} | {r['what']} | {r['median']:,} {r['unit']} |" for r in report["rows"]]
    lines += ["", README_END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset",
        default="data/datasets/music21-corpus",
        help="a built dataset, for the training row (skipped when missing)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (the median is reported)")
    parser.add_argument("--report", required=True, help="the folder of report.json and report.md")
    parser.add_argument("--readme", action="store_true", help="only rewrite the README's block from --report")
    args = parser.parse_args()
    folder = Path(args.report)
    if args.readme:
        report = json.loads((folder / "report.json").read_text())
        replace_block(ROOT / "README.md", README_BEGIN, README_END, readme_block(report, args.report))
        print(f"README.md: Performance block rewritten from {folder}/report.json")
        return

    from clamp.environment import apply_defaults

    apply_defaults()
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    start = time.perf_counter()
    import logging

    logging.disable(logging.INFO)  # the fetch rows log every row
    rows = fetch_rows(3) + build_rows(args.repeats) + conversion_rows(args.repeats)
    if (Path(args.dataset) / "manifest.json").is_file():
        rows += training_rows(args.dataset)
    else:
        print(f"no built dataset at {args.dataset}: the training row is left out", file=sys.stderr)
    rows += inference_rows(args.repeats)
    report = {
        "provenance": {
            "date": dt.date.today().isoformat(),
            "commit": git_commit(),
            "machine": machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "repeats": args.repeats,
            "wall_minutes": round((time.perf_counter() - start) / 60, 1),
        },
        "rows": rows,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (folder / "report.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
