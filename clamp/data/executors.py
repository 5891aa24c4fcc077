"""Where the build's stages run (the datatrove idea: one pipeline, interchangeable executors).

`clamp.data.build.run_build` lists the stages once and hands each to an `Executor`: in this
process, in a process pool, or as Prefect tasks on Dask (`flows.build_dataset.PrefectExecutor`,
which lives with the flows because the library never imports Prefect).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

__all__ = ["STAGE_LABELS", "Executor", "InProcessExecutor", "PoolExecutor", "progress_bar"]


class Executor(Protocol):
    """Where the stages of `run_build` run. `run` calls one unit of work, `map` one per item
    (each item an independent, idempotent unit); both return results in order."""

    def run(self, stage: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    def map(self, stage: str, fn: Callable[..., T], items: Sequence[Any], **kwargs: Any) -> list[T]: ...

    def map_stream(self, stage: str, fn: Callable[..., T], items: Iterable[Any], **kwargs: Any) -> list[T]:
        """`map` over items that arrive one by one: each unit starts as soon as its item does
        (the build's prepare of each input chunk while ingest still writes the next)."""
        ...


STAGE_LABELS = {
    "crawl": "crawl shares",
    "ingest": "ingest sources",
    "prepare": "prepare (convert, clean, patch)",
    "plan": "plan shards (decontaminate, dedup, split)",
    "write_shards": "write shards (contract + atomic write)",
    "views": "MIDI-route views (abc2midi -> midi2abc)",
    "chord_views": "chord views (a chord symbol per bar)",
    "finalize": "finalize (manifest, summary, quarantine)",
}


class InProcessExecutor:
    """Every unit in this process, one after another (tests, debugging, small builds); a
    streamed item is worked on as soon as it arrives, before the next is asked for."""

    def __init__(self, show_progress: bool = False) -> None:
        self.show_progress = show_progress

    def run(self, stage: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(*args, **kwargs)

    def map(self, stage: str, fn: Callable[..., T], items: Sequence[Any], **kwargs: Any) -> list[T]:
        with progress_bar(STAGE_LABELS.get(stage, stage), len(items), self.show_progress) as advance:
            results = []
            for item in items:
                results.append(fn(item, **kwargs))
                advance()
        return results

    def map_stream(self, stage: str, fn: Callable[..., T], items: Iterable[Any], **kwargs: Any) -> list[T]:
        return [fn(item, **kwargs) for item in items]


class PoolExecutor(InProcessExecutor):
    """Parallel stages in a pool of worker processes (no Prefect, no Dask)."""

    def __init__(self, workers: int, show_progress: bool = False) -> None:
        super().__init__(show_progress)
        self.workers = workers

    def map(self, stage: str, fn: Callable[..., T], items: Sequence[Any], **kwargs: Any) -> list[T]:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        if self.workers <= 1 or len(items) <= 1:
            return super().map(stage, fn, items, **kwargs)
        with ProcessPoolExecutor(min(self.workers, len(items))) as pool:
            futures = [pool.submit(fn, item, **kwargs) for item in items]
            with progress_bar(STAGE_LABELS.get(stage, stage), len(items), self.show_progress) as advance:
                for _ in as_completed(futures):
                    advance()
            return [f.result() for f in futures]

    def map_stream(self, stage: str, fn: Callable[..., T], items: Iterable[Any], **kwargs: Any) -> list[T]:
        from concurrent.futures import ProcessPoolExecutor

        if self.workers <= 1:
            return super().map_stream(stage, fn, items, **kwargs)
        # spawned, not forked: the items may come from a thread-pooled crawl in this process
        with ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(fn, item, **kwargs) for item in items]
            return [f.result() for f in futures]


@contextmanager
def progress_bar(label: str, total: int, enabled: bool) -> Iterator[Callable[..., None]]:
    """A rich progress bar (when `enabled`, e.g. on a terminal); yields `advance(n=1)`."""
    if not enabled:
        yield lambda n=1: None
        return
    from rich.progress import Progress

    with Progress(transient=False) as progress:
        bar = progress.add_task(label, total=total)
        yield lambda n=1: progress.advance(bar, n)
