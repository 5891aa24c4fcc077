"""What the service holds: the loaded model and index (`ServeState`, replaced whole on a
reload), the batcher that embeds concurrent text queries together, and the gates that bound
model calls, conversions and searches.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from clamp.inference.prompts import prompts_for
from clamp.serve.catalog import Catalog
from clamp.serve.errors import ApiError
from clamp.serve.settings import ServeSettings

log = logging.getLogger("clamp.serve")


@dataclass(frozen=True)
class Snapshot:
    """An index and the dataset rows it covers; replaced whole by a reload, never changed."""

    index: Any  # clamp.inference.index.SearchIndex
    catalog: Catalog


class _LockedTokenizer:
    """A fast tokenizer shared by threads: its padding/truncation settings are per call state in
    Rust, and concurrent calls fail with "Already borrowed", so calls take turns (they are short)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer, self._lock = tokenizer, threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._tokenizer(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


class ServeState:
    """The model and the current snapshot, loaded once (in a thread, so /healthz answers at once
    and /readyz says when searching can start)."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.model: Any = None
        self.snapshot: Snapshot | None = None
        self.error: str | None = None
        self.reloading = False
        self._stop = threading.Event()
        self.query_cache: OrderedDict[str, np.ndarray] = OrderedDict()  # LRU of text-query embeddings

    # loading ---------------------------------------------------------------------------------
    def _weights_stamp(self) -> int:
        from clamp.model.clamp_model import WEIGHTS_NAME

        weights = Path(self.settings.model_dir) / WEIGHTS_NAME
        return weights.stat().st_mtime_ns if weights.is_file() else 0

    def _load_model(self) -> Any:
        from clamp.inference.files import load_model

        stamp = self._weights_stamp()  # before reading: a newer file found later triggers a reload
        model = load_model(self.settings.model_dir)
        model.eval()
        if model.tokenizer is not None:
            model.tokenizer = _LockedTokenizer(model.tokenizer)
        model.weights_stamp = stamp
        return model

    def load(self) -> None:
        import torch

        self.model = self._load_model()
        snapshot = self._open_snapshot(self.model)  # with every core: a first start embeds the whole dataset
        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)  # from now on, concurrency comes from requests
            from threadpoolctl import threadpool_limits

            # and BLAS (numpy's search) too: OpenBLAS threads spin on locks when several callers share them
            threadpool_limits(self.settings.torch_threads, user_api="blas")
        self.snapshot = snapshot
        log.info("ready: %d tunes, %s search", len(snapshot.catalog), snapshot.index.kind)

    def _open_snapshot(self, model: Any) -> Snapshot:
        from clamp.inference.index import open_index

        s = self.settings

        def progress(done: int, total: int) -> None:  # `done` counts windows: a long tune has several
            if done // 1024 != (done - 64) // 1024:
                log.info("embedding the %d tunes of the dataset (cached afterwards): %d windows so far", total, done)

        index = open_index(
            model, s.dataset_dir, ann_threshold=s.ann_threshold, expansion_search=s.expansion_search, progress=progress
        )
        catalog = Catalog(s.dataset_dir)
        if catalog.ids != index.ids:  # the dataset was rebuilt between the two reads: next check retries
            raise RuntimeError("the dataset changed while it was loaded")
        return Snapshot(index, catalog)

    def refresh(self) -> bool:
        """Load a new snapshot when the dataset was rebuilt, and the model too when its weights
        changed (retrained); the old ones keep answering until the new ones are complete. True
        when it swapped."""
        from clamp.inference.index import cache_key

        current = self.snapshot
        if current is None:
            return False
        retrained = self._weights_stamp() != self.model.weights_stamp
        if not retrained and cache_key(self.settings.dataset_dir, self.model) == current.index.key:
            return False
        self.reloading = True
        try:
            model = self._load_model() if retrained else self.model
            snapshot = self._open_snapshot(model)
            # the swap: a request holds the snapshot it took; embeddings of the old model go
            self.model, self.snapshot = model, snapshot
            if retrained:
                self.query_cache.clear()
                ServeState.centroids.cache_clear()
        finally:
            self.reloading = False
        log.info("reloaded: %d tunes%s", len(snapshot.catalog), ", a retrained model" if retrained else "")
        return True

    def run_background(self) -> None:
        try:
            self.load()
        except Exception as exc:  # reported by /readyz; the server stays up to say so
            log.exception("loading failed")
            self.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return
        every = self.settings.reload_every_s
        while every and not self._stop.wait(every):
            try:
                self.refresh()
            except Exception:  # keep serving the old snapshot; try again next time
                log.exception("reload failed; still serving the previous index")

    def stop(self) -> None:
        self._stop.set()

    # model calls (blocking: worker threads) ---------------------------------------------------
    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Text queries embedded in one batch (see QueryBatcher): as `embed_text`, but padded to a
        multiple of 16 tokens, so that the few shapes the text tower sees keep their prepared
        kernels instead of preparing new ones for every query length (the pooling is masked, so
        padding does not change the result)."""
        import torch

        m = self.model
        enc = m.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=m.config.text_max_length,
            pad_to_multiple_of=16,
            return_tensors="pt",
        )
        with torch.inference_mode():
            return m.encode_text(enc["input_ids"], enc["attention_mask"]).float().cpu().numpy()

    def embed_tunes(self, abcs: list[str]) -> np.ndarray:
        from clamp.inference.embed import embed_music

        return embed_music(self.model, abcs)

    @lru_cache(maxsize=256)  # noqa: B019 - one state per app, kept for the app's life
    def centroids(self, labels: tuple[str, ...], task: str) -> np.ndarray:
        from clamp.inference.embed import embed_text

        c = np.stack([embed_text(self.model, prompts).mean(0) for prompts in prompts_for(list(labels), task)])
        return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)


class QueryBatcher:
    """Embeds text queries in batches: queries that arrive while a batch is computed go together
    into the next one, so under load the text tower runs a few large batches instead of many of
    one (several times the throughput on a CPU), and alone a query waits for nobody. At most
    `gate.slots` batches run at once; a 503 when more than `gate.queue` queries wait."""

    def __init__(self, state: ServeState, gate: Gate, max_batch: int = 32) -> None:
        self.state, self.gate, self.max_batch = state, gate, max_batch
        self.pending: list[tuple[str, asyncio.Future]] = []
        self.workers = 0

    async def embed(self, text: str) -> np.ndarray:
        cache = self.state.query_cache
        if text in cache:
            cache.move_to_end(text)
            return cache[text]
        if len(self.pending) >= self.gate.queue + self.gate.slots * self.max_batch:
            raise ApiError(503, "busy", "the server is busy: try again shortly", {"Retry-After": "1"})
        future = asyncio.get_running_loop().create_future()
        self.pending.append((text, future))
        if self.workers < self.gate.slots:
            self.workers += 1
            asyncio.create_task(self._work())
        vector = await future
        if self.state.settings.query_cache:
            cache[text] = vector
            while len(cache) > self.state.settings.query_cache:
                cache.popitem(last=False)
        return vector

    async def _work(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
                texts = list(dict.fromkeys(t for t, _ in batch))
                try:
                    vectors = await self.gate.run(self.state.embed_queries, texts)
                except BaseException as exc:  # every waiter gets the error (a 503, or a bug's 500)
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                by_text = dict(zip(texts, vectors, strict=True))
                for t, f in batch:
                    if not f.done():
                        f.set_result(by_text[t])
        finally:
            self.workers -= 1


class Gate:
    """At most `slots` blocking calls at once, at most `queue` waiting; a 503 beyond either limit.

    The calls run on the gate's own `slots` threads, always the same ones: torch's OpenMP gives
    every new calling thread a team of spinning threads, so a model call on whichever thread of
    a large shared pool is free multiplies the threads that spin (and burn CPU) under load."""

    def __init__(
        self,
        slots: int,
        queue: int,
        timeout_s: float,
        initializer: Callable[[], None] | None = None,
        name: str = "clamp-gate",
    ) -> None:
        self.slots, self.queue, self.timeout_s = slots, queue, timeout_s
        self.waiting = 0
        self._sem: asyncio.Semaphore | None = None
        self._executor = ThreadPoolExecutor(slots, thread_name_prefix=name, initializer=initializer)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._sem is None:  # made in the server's event loop
            self._sem = asyncio.Semaphore(self.slots)
        busy = ApiError(503, "busy", "the server is busy: try again shortly", {"Retry-After": "1"})
        if self._sem.locked() and self.waiting >= self.queue:
            raise busy
        self.waiting += 1
        try:
            await asyncio.wait_for(self._sem.acquire(), self.timeout_s)
        except TimeoutError:
            raise busy from None
        finally:
            self.waiting -= 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._sem.release()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
