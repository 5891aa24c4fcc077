"""Prefect flow `build-dataset`: thin orchestration over `clamp.data.build`.

Stages run as Prefect tasks; the parallel ones (prepare per input chunk, write per shard) run
on a Dask cluster through `DaskTaskRunner`: a `LocalCluster` by default, or an existing
cluster when `scheduler_address` is given.

Run it directly (embedded default: the music21 corpus):

    python -m flows.build_dataset --help
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

# Dask logs every worker start/stop at INFO; keep the terminal for the progress bars.
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import as_completed

from clamp.config import BuildConfig
from clamp.data import build as steps
from clamp.data.report import print_summary, summary_markdown


@task(name="ingest-sources", retries=3, retry_delay_seconds=[10, 30, 90])
def ingest_task(cfg: BuildConfig) -> list[Path]:
    """Read every source into input chunks (the web source talks to the network: retried)."""
    layout = steps.DatasetLayout(cfg.dataset_dir)
    return steps.ingest(steps.iter_records(cfg), layout, cfg.chunk_size, cfg.chunk_max_conversions)


@task(name="prepare-chunk", retries=1)
def prepare_task(input_path: Path, cfg: BuildConfig) -> dict:
    return steps.prepare_chunk(input_path, steps.DatasetLayout(cfg.dataset_dir), steps.prepare_config(cfg))


@task(name="plan-shards")
def plan_task(prepared: list[Path], cfg: BuildConfig) -> steps.PlanResult:
    reference, _ = steps.load_reference(cfg)
    layout = steps.DatasetLayout(cfg.dataset_dir)
    plan = steps.plan_shards(prepared, layout, cfg, reference)
    steps.remove_stale_shards(layout, len(plan.shards))
    return plan


@task(name="write-shard")
def write_shard_task(plan: steps.ShardPlan, prepared: list[Path], cfg: BuildConfig) -> dict:
    return steps.write_shard(plan, prepared, steps.DatasetLayout(cfg.dataset_dir), cfg)


@task(name="finalize")
def finalize_task(cfg: BuildConfig, chunk_stats: list[dict], plan: steps.PlanResult, shard_stats: list[dict], seconds: dict) -> steps.BuildSummary:
    return steps.finalize(steps.DatasetLayout(cfg.dataset_dir), cfg, chunk_stats, plan, shard_stats, seconds)


def _gather(futures: list, label: str, show_progress: bool) -> list:
    """Results in submission order, with a progress bar on a terminal."""
    if not show_progress:
        return [f.result() for f in futures]
    from rich.progress import Progress

    with Progress(transient=False) as progress:
        bar = progress.add_task(label, total=len(futures))
        for _ in as_completed(futures):
            progress.advance(bar)
    return [f.result() for f in futures]


def _task_runner(n_workers: int, scheduler_address: str | None):
    from prefect_dask import DaskTaskRunner

    if scheduler_address:
        return DaskTaskRunner(address=scheduler_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None},
    )


@flow(name="build-dataset-stages")
def run_stages(cfg: BuildConfig, show_progress: bool = False) -> steps.BuildSummary:
    import time

    logger = get_run_logger()
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    inputs = ingest_task(cfg)
    seconds["ingest"] = time.perf_counter() - t
    logger.info("ingested %d input chunks", len(inputs))

    t = time.perf_counter()
    chunk_futures = [prepare_task.submit(p, cfg) for p in inputs]
    chunk_stats = _gather(chunk_futures, "prepare (convert, clean, patch)", show_progress)
    seconds["prepare"] = time.perf_counter() - t

    t = time.perf_counter()
    layout = steps.DatasetLayout(cfg.dataset_dir)
    prepared = [steps.prepared_paths_for(p, layout)[0] for p in inputs]
    plan = plan_task(prepared, cfg)
    seconds["plan"] = time.perf_counter() - t
    logger.info("kept %d of %d prepared rows in %d shards", plan.kept, plan.prepared, len(plan.shards))

    t = time.perf_counter()
    shard_futures = [write_shard_task.submit(sp, prepared, cfg) for sp in plan.shards]
    shard_stats = _gather(shard_futures, "write shards (contract + atomic write)", show_progress)
    seconds["write_shards"] = time.perf_counter() - t
    return finalize_task(cfg, chunk_stats, plan, shard_stats, seconds)


@flow(name="build-dataset", log_prints=True)
def build_dataset(
    name: str = "music21-corpus",
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    n_workers: int = 2,
    scheduler_address: str | None = None,
) -> dict:
    """Build a validated, sharded music-text dataset; returns the run summary.

    `config_path` is a YAML/JSON `BuildConfig`; `overrides` set single fields on top of it.
    """
    fields = {**(overrides or {}), "name": name, "n_workers": n_workers}
    if scheduler_address:  # otherwise CLAMP_SCHEDULER_ADDRESS (set by `infra.stack`'s env.sh) applies
        fields["scheduler_address"] = scheduler_address
    cfg = BuildConfig.from_file(config_path, **fields) if config_path else BuildConfig(**fields)
    runner = _task_runner(cfg.n_workers, cfg.scheduler_address)
    summary = run_stages.with_options(task_runner=runner)(cfg, show_progress=sys.stderr.isatty())
    create_markdown_artifact(key="build-summary", markdown=summary_markdown(summary), description=f"build-dataset {cfg.name}")
    if summary.quarantine_reasons:
        create_table_artifact(
            key="quarantine-reasons",
            table=[{"reason": k, "records": v} for k, v in summary.quarantine_reasons.items()],
            description="Quarantined records by reason",
        )
    return summary.to_dict()


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="python -m flows.build_dataset",
        description="Build the music-text dataset (default: the music21 corpus) into validated Arrow shards.",
    )
    parser.add_argument("--name", default="music21-corpus", help="dataset name (folder under output_dir)")
    parser.add_argument("--config", help="YAML/JSON BuildConfig file")
    parser.add_argument("--output-dir", help="where datasets are written (default data/datasets)")
    parser.add_argument("--limit", type=int, help="cap the records of each source (quick runs)")
    parser.add_argument("--patch-mode", choices=["clamp-v1", "m3"], help="bar patching mode")
    parser.add_argument("--workers", type=int, default=2, help="Dask LocalCluster worker processes")
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler instead of a LocalCluster")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    if args.patch_mode:
        overrides["patch_mode"] = args.patch_mode
    if args.limit:
        base = BuildConfig.from_file(args.config) if args.config else BuildConfig()
        overrides["sources"] = [{**s.model_dump(), "limit": args.limit} for s in base.sources]
    try:
        summary = build_dataset(args.name, args.config, overrides, args.workers, args.scheduler)
    except (FileNotFoundError, ValueError) as exc:
        from clamp.config import error_line

        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(steps.BuildSummary(**summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
