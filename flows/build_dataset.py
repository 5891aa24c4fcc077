"""Prefect flow `build-dataset`: the library's stage list (`clamp.data.build.run_build`) run
as Prefect tasks, the parallel ones (prepare per input chunk, write per shard) on a Dask
cluster through `DaskTaskRunner`: a `LocalCluster` by default, or an existing cluster when
`scheduler_address` is given.

    python -m flows.build_dataset --help
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from prefect import Task, flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import as_completed

from clamp import cli_common
from clamp.config import BuildConfig
from clamp.data import build as steps
from clamp.data.executors import STAGE_LABELS, progress_bar
from clamp.data.report import print_summary, summary_markdown

T = TypeVar("T")
LOOPBACK = "127.0.0.1"  # where a build's own Dask cluster listens

# Orchestration policy per stage: crawling and reading sources talk to the network, so they are retried.
TASK_OPTIONS: dict[str, dict[str, Any]] = {
    # a share resumes its own crawl state, so a retry continues where the failed attempt stopped
    "crawl": {"name": "crawl-share", "retries": 2, "retry_delay_seconds": [10, 60]},
    "ingest": {"name": "ingest-sources", "retries": 3, "retry_delay_seconds": [10, 30, 90]},
    "prepare": {"name": "prepare-chunk", "retries": 1},
    "plan": {"name": "plan-shards"},
    "write_shards": {"name": "write-shard"},
    "views": {"name": "midi-route-views", "retries": 1},
    "chord_views": {"name": "chord-views"},
    "finalize": {"name": "finalize"},
}


def stage_task(stage: str, fn: Callable[..., T]) -> Task:
    """The Prefect task that runs one stage function of the library."""
    return task(fn, **TASK_OPTIONS[stage])


class PrefectExecutor:
    """Runs `run_build`'s stages as Prefect tasks; `map` submits to the flow's task runner."""

    def __init__(self, show_progress: bool = False) -> None:
        self.show_progress = show_progress

    def run(self, stage: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return stage_task(stage, fn)(*args, **kwargs)

    def map(self, stage: str, fn: Callable[..., T], items: Sequence[Any], **kwargs: Any) -> list[T]:
        t = stage_task(stage, fn)
        futures = [t.submit(item, **kwargs) for item in items]
        with progress_bar(STAGE_LABELS[stage], len(futures), self.show_progress) as advance:
            for _ in as_completed(futures):
                advance()
        return [f.result() for f in futures]

    def map_stream(self, stage: str, fn: Callable[..., T], items: Iterable[Any], **kwargs: Any) -> list[T]:
        t = stage_task(stage, fn)
        futures = [t.submit(item, **kwargs) for item in items]  # each submitted as its item arrives
        return [f.result() for f in futures]


def _task_runner(n_workers: int, scheduler_address: str | None):
    from prefect_dask import DaskTaskRunner

    if scheduler_address:
        return DaskTaskRunner(address=scheduler_address)
    # host: the scheduler, nannies, workers and their HTTP routes listen on loopback only (said here,
    # not left to distributed's default); no scheme, so a TLS config in the environment still applies
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": n_workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
            "host": LOOPBACK,
            "env": _worker_env(),
        },
    )


def _worker_env() -> dict[str, str]:
    """The Prefect server the LocalCluster's workers report their task runs to: this flow's. On a
    temporary server (no PREFECT_API_URL) a spawned worker would not find it and start one of its
    own, each a server start of 10 to 20 s and the task runs recorded where no one looks."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return {}
    with get_client(sync_client=True) as client:
        return {"PREFECT_API_URL": str(client.api_url)}


@contextmanager
def worker_environment_kept_out() -> Iterator[None]:
    """distributed's nannies write their workers' settings (`distributed.nanny.pre-spawn-environ`:
    OMP_NUM_THREADS=1 and the like) into this process's environment before spawning them, and
    leave them there. A torch first used after the build in the same process (the main job's and
    retrain's training) then runs on one thread: 1,200 steps took 24 min instead of 16. Put back
    what this process had."""
    import dask
    import distributed  # noqa: F401  (its config holds the settings)

    # the nanny also pins the workers' PYTHONHASHSEED the same way
    keys = [*dask.config.get("distributed.nanny.pre-spawn-environ", {}), "PYTHONHASHSEED"]
    before = {k: os.environ.get(k) for k in keys}
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@flow(name="build-dataset-stages")
def run_stages(cfg: BuildConfig, overwrite: bool = False, show_progress: bool = False) -> steps.BuildSummary:
    # run_build holds the dataset lock in this flow-run process for all the stages; the Dask
    # workers only run units of work inside it
    return steps.run_build(cfg, PrefectExecutor(show_progress), overwrite=overwrite)


@flow(name="build-dataset", log_prints=True)
def build_dataset(
    name: str | None = None,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    n_workers: int | None = None,
    scheduler_address: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Build a validated, sharded music-text dataset; returns the run summary.

    Settings come from `BuildConfig` (docs/configuration.md): defaults < the YAML/JSON file at
    `config_path` < `CLAMP_<FIELD>` environment variables < `overrides` and the named
    parameters. Parameters left at None take the lower layers' values.
    """
    cfg = BuildConfig.load(
        config_path,
        **{**(overrides or {}), "name": name, "n_workers": n_workers, "scheduler_address": scheduler_address},
    )
    runner = _task_runner(cfg.n_workers, cfg.scheduler_address)
    with worker_environment_kept_out():
        summary = run_stages.with_options(task_runner=runner)(cfg, overwrite, show_progress=sys.stderr.isatty())
    create_markdown_artifact(
        key="build-summary", markdown=summary_markdown(summary), description=f"build-dataset {cfg.name}"
    )
    if summary.quarantine_reasons:
        create_table_artifact(
            key="quarantine-reasons",
            table=[{"reason": k, "records": v} for k, v in summary.quarantine_reasons.items()],
            description="Quarantined records by reason",
        )
    return summary.to_dict()


app = cli_common.make_command_app(
    "Build the music-text dataset (default: the music21 corpus) into validated Arrow shards, with Prefect on Dask."
)


@app.command()
def main(
    config: cli_common.ConfigOption = None,
    name: cli_common.NameOption = None,
    output_dir: cli_common.OutputDirOption = None,
    limit: cli_common.LimitOption = None,
    patch_mode: cli_common.PatchModeOption = None,
    midi_views: cli_common.MidiViewsOption = None,
    chord_views: cli_common.ChordViewsOption = None,
    workers: cli_common.WorkersOption = None,
    scheduler: Annotated[
        str | None, typer.Option(help="address of an existing Dask scheduler instead of a LocalCluster")
    ] = None,
    overwrite: cli_common.OverwriteOption = False,
    as_json: cli_common.JsonOption = False,
    debug: cli_common.DebugOption = False,
) -> None:
    """Build a dataset with Prefect; the same options as `clamp build`, plus --scheduler."""
    overrides = cli_common.build_overrides(config, name, output_dir, limit, patch_mode, midi_views, chord_views)
    cfg = BuildConfig.load(config, **overrides, n_workers=workers, scheduler_address=scheduler)
    layout = steps.DatasetLayout(cfg.dataset_dir)
    steps.check_dataset_lock(layout)  # before any Prefect start-up; `run_stages` takes the lock itself
    steps.check_dataset_claim(layout, cfg, overwrite)
    summary = build_dataset(
        config_path=str(config) if config else None,
        overrides=overrides,
        n_workers=workers,
        scheduler_address=scheduler,
        overwrite=overwrite,
    )
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        print_summary(steps.BuildSummary(**summary))


if __name__ == "__main__":
    app()
