"""The ASGI app of `clamp serve` (FastAPI): `create_app(settings)`.

Requests never block the event loop: model calls and conversions run in worker threads, at
most `max_concurrency` at once, with at most `max_queue` requests waiting for a slot (a 503
beyond that, so an overload is refused quickly instead of queueing without bound). Every error
is a JSON object `{"error": code, "detail": one line}`; a bug is a 500 with no traceback (the
traceback goes to the server's log).
"""

# no `from __future__ import annotations`: FastAPI must resolve the Annotated aliases made
# inside create_app (K, Source, ...), which are not module globals
import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from clamp.errors import UserError
from clamp.inference.files import MusicTune, format_of
from clamp.inference.prompts import DEFAULT_TEMPLATES, prompts_for
from clamp.serve import sound
from clamp.serve.catalog import Catalog
from clamp.serve.settings import ServeSettings

log = logging.getLogger("clamp.serve")
STATIC = Path(__file__).parent / "static"
ABCJS_DIST = STATIC / "node_modules" / "abcjs" / "dist"
# the only files the page may load: fixed paths, never one built from the request
STATIC_FILES = {
    "app.js": (STATIC / "app.js", "text/javascript"),
    "style.css": (STATIC / "style.css", "text/css"),
    "abcjs-basic-min.js": (ABCJS_DIST / "abcjs-basic-min.js", "text/javascript"),
}
# the page loads nothing from elsewhere; abcjs styles its SVG inline
PAGE_CSP = ("default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; "
            "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
UPLOAD_ROUTES = ("/api/similar", "/api/classify")
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small form fields around an upload


# --- errors -----------------------------------------------------------------------------------
class ApiError(Exception):
    """A client error with its HTTP status, a short code and a one-line message."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


def _error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


_STATUS_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 406: "not_acceptable",
                 413: "too_large", 415: "unsupported_media_type", 422: "invalid_request", 503: "unavailable"}


# --- response models (the OpenAPI schema) -----------------------------------------------------
class ErrorBody(BaseModel):
    error: str = Field(description="a short code, e.g. invalid_request, not_found, too_large")
    detail: str = Field(description="what was wrong, in one line")


class Hit(BaseModel):
    rank: int
    id: str
    score: float = Field(description="cosine similarity in the joint space")
    title: str
    texts: list[str]
    source: str
    split: str
    abc: str | None = Field(None, description="the tune's ABC (left out with abc=false)")


class SearchResponse(BaseModel):
    query: str
    k: int
    index: str = Field(description="exact or hnsw")
    results: list[Hit]


class TuneRef(BaseModel):
    id: str | None = None
    index: int | None = Field(None, description="the tune's 1-based position in an uploaded file")
    title: str | None = None


class SimilarResponse(BaseModel):
    query: TuneRef
    k: int
    results: list[Hit]


class LabelScore(BaseModel):
    label: str
    score: float


class TuneLabels(BaseModel):
    index: int
    title: str | None
    labels: list[LabelScore] | None = Field(None, description="every label, best first")
    error: str | None = Field(None, description="why this tune could not be read")


class ClassifyResponse(BaseModel):
    labels: list[str]
    task: str
    tunes: list[TuneLabels]


class TuneRecord(BaseModel):
    id: str
    title: str
    source: str
    source_format: str
    split: str
    abc: str
    texts: list[str]
    metadata: dict[str, Any]
    provenance: str
    license: str


class Info(BaseModel):
    dataset: str
    rows: int
    index: str
    model: str
    sources: list[str]
    splits: list[str]
    tasks: list[str]
    limits: dict[str, float]


# --- state ------------------------------------------------------------------------------------
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

        index = open_index(model, s.dataset_dir, ann_threshold=s.ann_threshold,
                           expansion_search=s.expansion_search, progress=progress)
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
        enc = m.tokenizer(list(texts), padding=True, truncation=True, max_length=m.config.text_max_length,
                          pad_to_multiple_of=16, return_tensors="pt")
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

    def __init__(self, state: ServeState, gate: "Gate", max_batch: int = 32) -> None:
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
                batch, self.pending = self.pending[:self.max_batch], self.pending[self.max_batch:]
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

    def __init__(self, slots: int, queue: int, timeout_s: float,
                 initializer: Callable[[], None] | None = None, name: str = "clamp-gate") -> None:
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


# --- metrics ----------------------------------------------------------------------------------
class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # per app: several apps (tests) never clash
        self.requests = Counter("clamp_serve_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("clamp_serve_request_duration_seconds", "request latency", ["route"],
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30),
                                 registry=self.registry)
        self.in_flight = Gauge("clamp_serve_requests_in_flight", "requests being served", registry=self.registry)
        self.conversions = Counter("clamp_serve_conversions_total", "uploads converted", ["outcome"],
                                   registry=self.registry)
        self.rows = Gauge("clamp_serve_index_rows", "tunes in the search index", registry=self.registry)


class ServeMiddleware:
    """Pure ASGI (cheaper than BaseHTTPMiddleware): metrics, the request body limit, the content
    type of uploads, and `nosniff` on every response."""

    def __init__(self, app: Any, metrics: Metrics, max_body: int) -> None:
        self.app, self.metrics, self.max_body = app, metrics, max_body

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status = {"code": 500}
        start = time.perf_counter()
        self.metrics.in_flight.inc()

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-content-type-options", b"nosniff")]
            await send(message)

        try:
            refusal = self._refusal(scope, headers)
            if refusal is not None:
                await refusal(scope, receive, send_wrapper)
                return
            await self.app(scope, self._limited(receive), send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], label, str(status["code"])).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - start)

    def _refusal(self, scope: dict, headers: dict[str, str]) -> JSONResponse | None:
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return _error(413, "too_large", f"request body of {int(length)} bytes; uploads are limited to "
                                            f"{self.max_body - _FORM_OVERHEAD} bytes")
        if scope["method"] == "POST" and scope["path"] in UPLOAD_ROUTES:
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in FORM_TYPES:
                return _error(415, "unsupported_media_type",
                              f"content type {ctype or '(none)'}: send multipart/form-data (a file upload) "
                              "or a form")
        return None

    def _limited(self, receive: Callable) -> Callable:
        seen = {"bytes": 0}

        async def wrapper() -> dict:  # a chunked body has no content-length: count as it arrives
            message = await receive()
            if message["type"] == "http.request":
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > self.max_body:  # an HTTPException: FastAPI passes it through form parsing
                    raise HTTPException(413, f"request body over {self.max_body} bytes")
            return message

        return wrapper


# --- the app ----------------------------------------------------------------------------------
def create_app(settings: ServeSettings, state: ServeState | None = None) -> FastAPI:
    """The app; the model and index load in a background thread when it starts (lifespan)."""
    s = settings
    state = state or ServeState(s)
    metrics = Metrics()
    def model_thread() -> None:
        if s.torch_threads:
            import torch

            torch.set_num_threads(s.torch_threads)

    gate = Gate(s.max_concurrency, s.max_queue, s.queue_timeout_s, model_thread, "clamp-model")
    conversion_gate = Gate(s.max_conversions, s.max_queue, s.queue_timeout_s + s.conversion_timeout_s,
                           name="clamp-convert")
    # searches are short (ms) but CPU-bound: as many at once as cores, on threads of their own
    search_gate = Gate(s.max_concurrency, s.max_queue * 4, s.queue_timeout_s, name="clamp-search")
    batcher = QueryBatcher(state, gate)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from clamp.serve.convert import warm_up

        threading.Thread(target=state.run_background, name="clamp-serve-load", daemon=True).start()
        threading.Thread(target=warm_up, args=(s.max_conversions,), name="clamp-serve-warm-up", daemon=True).start()
        yield
        state.stop()
        for g in (gate, conversion_gate, search_gate):
            g.close()

    app = FastAPI(
        title="CLaMP serve", version="1", lifespan=lifespan,
        description="Search, compare and classify symbolic music with a CLaMP model (docs/serve.md). "
                    "Every error is `{\"error\": code, \"detail\": message}`.",
        responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}, 413: {"model": ErrorBody},
                   415: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
    )
    app.state.serve = state
    app.state.metrics = metrics

    # error handlers: one JSON shape, one line, no traceback
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "body", "path"))
        more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        return _error(422, "invalid_request", f"{where + ': ' if where else ''}{err.get('msg', 'invalid')}{more}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        return _error(exc.status_code, _STATUS_CODES.get(exc.status_code, "error"), detail,
                      getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal", "internal error; the server log has the details")

    if s.cors_origins:  # off unless origins are given
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(s.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["*"])
    app.add_middleware(ServeMiddleware, metrics=metrics, max_body=s.max_upload_bytes + _FORM_OVERHEAD)

    def ready() -> Snapshot:
        snap = state.snapshot
        if snap is None:
            detail = f"loading failed: {state.error}" if state.error else "the model and index are still loading"
            raise ApiError(503, "not_ready", detail, {"Retry-After": "5"})
        return snap

    def row_of(snap: Snapshot, tune_id: str) -> int:
        row = snap.index.row_of.get(tune_id)
        if row is None:
            raise ApiError(404, "not_found", f"no tune with id {tune_id[:200]!r}")
        return row

    def hits(snap: Snapshot, rows: np.ndarray, scores: np.ndarray, with_abc: bool = True) -> list[Hit]:
        cols = ["id", "source", "split", "texts", *(["abc"] if with_abc else [])]
        records = snap.catalog.rows(rows, cols)
        return [Hit(rank=r + 1, score=round(float(sc), 4), title=snap.index.titles[int(row)], abc=rec.get("abc"),
                    **{k: rec[k] for k in ("id", "source", "split", "texts")})
                for r, (row, sc, rec) in enumerate(zip(rows, scores, records, strict=True))]

    def filters(snap: Snapshot, source: str | None, split: str | None, meta: list[str]) -> np.ndarray | None:
        pairs = []
        for item in meta:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ApiError(422, "invalid_request", f"meta filter {item[:100]!r}: write it as key=value, "
                                                       "e.g. labels.tune_type=reel")
            pairs.append((key.strip(), value.strip()))
        return snap.catalog.mask(source or None, split or None, tuple(sorted(pairs)))

    async def read_upload(file: UploadFile) -> list[MusicTune]:
        from clamp.serve.convert import convert_upload

        name = Path(file.filename or "").name or "upload"  # only its suffix is used: never opened
        try:
            format_of(name)
        except UserError as exc:
            raise ApiError(415, "unsupported_media_type", str(exc)) from None
        data = await file.read(s.max_upload_bytes + 1)
        if len(data) > s.max_upload_bytes:
            raise ApiError(413, "too_large", f"{name}: over {s.max_upload_bytes} bytes")
        if not data.strip():
            raise ApiError(422, "unusable_score", f"{name} is empty")
        try:
            tunes = await conversion_gate.run(convert_upload, data, name, s.max_upload_bytes, s.conversion_timeout_s)
        except UserError as exc:
            metrics.conversions.labels("rejected").inc()
            raise ApiError(422, "unusable_score", str(exc)) from None
        metrics.conversions.labels("ok").inc()
        return tunes

    K = Annotated[int, Query(ge=1, le=s.max_k, description=f"how many results (1 to {s.max_k})")]
    Source = Annotated[str | None, Query(max_length=200, description="only tunes of this source")]
    Split = Annotated[str | None, Query(max_length=50, description="only tunes of this split: train, valid, test")]
    Meta = Annotated[list[str], Query(max_length=20, description="metadata filters key=value (dotted keys reach "
                                                                 "nested fields, e.g. labels.tune_type=reel)")]

    # --- health and metrics ----------------------------------------------------------------
    @app.get("/healthz", tags=["ops"], summary="the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="the model and index are loaded", responses={503: {"model": ErrorBody}})
    async def readyz() -> dict[str, Any]:
        snap = ready()
        metrics.rows.set(len(snap.catalog))
        return {"status": "ready", "rows": len(snap.catalog), "index": snap.index.kind, "reloading": state.reloading}

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # --- API ---------------------------------------------------------------------------------
    @app.get("/api/info", tags=["api"], summary="what is served, and the limits", response_model=Info)
    async def info() -> Info:
        snap = ready()
        return Info(dataset=str(snap.catalog.manifest.get("name", "")), rows=len(snap.catalog),
                    index=snap.index.kind, model="/".join(Path(s.model_dir).resolve().parts[-2:]), sources=snap.catalog.sources,
                    splits=snap.catalog.splits, tasks=sorted(DEFAULT_TEMPLATES),
                    limits={"max_upload_bytes": s.max_upload_bytes, "max_query_chars": s.max_query_chars,
                            "max_k": s.max_k, "max_labels": s.max_labels})

    @app.get("/api/search", tags=["api"], summary="text to music search", response_model=SearchResponse)
    async def search(
        q: Annotated[str, Query(description="a description, e.g. 'a lively jig in D major'")],
        k: K = 10, source: Source = None, split: Split = None, meta: Meta = [],  # noqa: B006 - FastAPI's idiom
        abc: Annotated[bool, Query(description="include each tune's ABC")] = True,
    ) -> SearchResponse:
        text = q.strip()
        if not text:
            raise ApiError(422, "invalid_request", "empty query: describe the music, e.g. 'a lively jig in D major'")
        if len(text) > s.max_query_chars:
            raise ApiError(422, "invalid_request", f"query of {len(text)} characters; at most {s.max_query_chars}")
        snap = ready()
        allowed = filters(snap, source, split, meta)
        query = await batcher.embed(text)
        rows, scores = await search_gate.run(snap.index.search, query, k, allowed)
        return SearchResponse(query=text, k=k, index=snap.index.kind, results=hits(snap, rows, scores, abc))

    @app.get("/api/similar", tags=["api"], summary="music to music: tunes like a tune of the index",
             response_model=SimilarResponse)
    async def similar_by_id(
        id: Annotated[str, Query(min_length=1, max_length=1000, description="a tune id")],
        k: K = 10, source: Source = None, split: Split = None, meta: Meta = [],  # noqa: B006
        abc: Annotated[bool, Query(description="include each tune's ABC")] = True,
    ) -> SimilarResponse:
        snap = ready()
        row = row_of(snap, id)
        allowed = filters(snap, source, split, meta)
        query = np.asarray(snap.index.vectors[row], dtype=np.float32)
        rows, scores = await search_gate.run(lambda: snap.index.search(query, k, allowed, exclude=row))
        return SimilarResponse(query=TuneRef(id=id, title=snap.index.titles[row]), k=k,
                               results=hits(snap, rows, scores, abc))

    @app.post("/api/similar", tags=["api"], summary="music to music: tunes like an uploaded score (its first "
                                                    "usable tune)", response_model=SimilarResponse)
    async def similar_by_file(
        file: Annotated[UploadFile, File(description=".abc .xml .musicxml .mxl .mid .midi .krn, at most 1 MB")],
        k: Annotated[int, Form(ge=1, le=s.max_k)] = 10,
        abc: Annotated[bool, Form()] = True,
    ) -> SimilarResponse:
        snap = ready()
        tunes = await read_upload(file)
        first = next(t for t in tunes if t.abc is not None)
        rows, scores = await gate.run(lambda: snap.index.search(state.embed_tunes([first.abc])[0], k))
        return SimilarResponse(query=TuneRef(index=first.index, title=first.title), k=k,
                               results=hits(snap, rows, scores, abc))

    @app.post("/api/classify", tags=["api"], summary="zero-shot classification among given labels, per tune",
              response_model=ClassifyResponse)
    async def classify(
        labels: Annotated[str, Form(description="comma-separated labels, e.g. jig,reel,waltz")],
        task: Annotated[str, Form(description=f"prompt templates: {', '.join(sorted(DEFAULT_TEMPLATES))}")] = "rhythm",
        file: Annotated[UploadFile | None, File(description="a score (every tune of an ABC file)")] = None,
        id: Annotated[str | None, Form(max_length=1000, description="a tune id instead of a file")] = None,
    ) -> ClassifyResponse:
        names = list(dict.fromkeys(x.strip() for x in labels.split(",") if x.strip()))
        if len(names) < 2:
            raise ApiError(422, "invalid_request", "give at least two labels, all different, e.g. jig,reel")
        if len(names) > s.max_labels or any(len(n) > s.max_label_chars for n in names):
            raise ApiError(422, "invalid_request",
                           f"at most {s.max_labels} labels of at most {s.max_label_chars} characters each")
        if task not in DEFAULT_TEMPLATES:
            raise ApiError(422, "invalid_request", f"unknown task {task[:50]!r}; choose from "
                                                   f"{', '.join(sorted(DEFAULT_TEMPLATES))}")
        if (file is None) == (id is None):
            raise ApiError(422, "invalid_request", "give either a file or an id")
        snap = ready()
        if file is not None:
            tunes = await read_upload(file)
            usable = [t for t in tunes if t.abc is not None]

            def scores_of() -> np.ndarray:
                return state.embed_tunes([t.abc for t in usable]) @ state.centroids(tuple(names), task).T
        else:
            row = row_of(snap, id)  # type: ignore[arg-type]
            tunes = usable = [MusicTune(1, "")]
            title = snap.index.titles[row]

            def scores_of() -> np.ndarray:
                return np.asarray(snap.index.vectors[row:row + 1]) @ state.centroids(tuple(names), task).T
        matrix = await gate.run(scores_of)
        by_index = dict(zip((t.index for t in usable), matrix, strict=True))
        out = []
        for t in tunes:
            if t.abc is None:
                out.append(TuneLabels(index=t.index, title=t.title, error=t.error))
                continue
            ranked = sorted(zip(names, by_index[t.index].tolist(), strict=True), key=lambda x: -x[1])
            out.append(TuneLabels(index=t.index, title=t.title if file is not None else title,
                                  labels=[LabelScore(label=n, score=round(float(v), 4)) for n, v in ranked]))
        return ClassifyResponse(labels=names, task=task, tunes=out)

    @app.get("/api/tunes/{tune_id:path}", tags=["api"], summary="a tune: ABC, texts, metadata, provenance, licence",
             response_model=TuneRecord)
    async def tune(tune_id: str) -> TuneRecord:
        snap = ready()
        return TuneRecord(**snap.catalog.record(row_of(snap, tune_id)))

    # --- the page and what it loads ----------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        entry = STATIC_FILES.get(name)
        if entry is None:
            raise ApiError(404, "not_found", f"no static file {name[:100]!r}")
        path, media = entry
        if not path.is_file():
            raise ApiError(404, "not_found", f"{name} is not installed: run `npm ci` in {STATIC} "
                                             "(infra/bootstrap.sh does)")
        return FileResponse(path, media_type=media, headers={"Cache-Control": "public, max-age=3600"})

    @app.get("/soundfont/{instrument}/{note}", include_in_schema=False)
    async def soundfont(instrument: str, note: str) -> Response:
        name, _, ext = note.rpartition(".")
        midi = sound.midi_number(name)
        if not instrument.endswith("-mp3") or ext != "mp3" or midi is None \
                or not sound.INSTRUMENT.match(instrument[:-4]):
            raise ApiError(404, "not_found", "no such note")
        return Response(sound.note_wav(midi), media_type="audio/wav",
                        headers={"Cache-Control": "public, max-age=86400"})

    return app


def run(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve until interrupted (uvicorn, one process: the model and index are loaded once)."""
    import uvicorn

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, server_header=False,
                    proxy_headers=False, timeout_graceful_shutdown=10)
