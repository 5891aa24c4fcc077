"""The ASGI app of `clamp serve` (FastAPI): `create_app(settings)`.

Requests never block the event loop: model calls and conversions run in worker threads, at
most `max_concurrency` at once, with at most `max_queue` requests waiting for a slot (a 503
beyond that, so an overload is refused quickly instead of queueing without bound). Every error
is a JSON object `{"error": code, "detail": one line}`; a bug is a 500 with no traceback (the
traceback goes to the server's log).

The parts: `state.py` (model and index, batcher, gates), `schemas.py` (responses),
`errors.py`, `middleware.py` (metrics, limits), `context.py` (what routes share) and
`routes/` (one module per resource).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from clamp.serve.context import Context
from clamp.serve.errors import ApiError, install_error_handlers
from clamp.serve.middleware import FORM_OVERHEAD, Metrics, ServeMiddleware
from clamp.serve.routes import classify, ops, page, search, tunes
from clamp.serve.routes.page import ABCJS_DIST, STATIC
from clamp.serve.schemas import ErrorBody
from clamp.serve.settings import ServeSettings
from clamp.serve.state import Gate, QueryBatcher, ServeState

__all__ = ["ABCJS_DIST", "STATIC", "ApiError", "Gate", "QueryBatcher", "ServeState", "create_app", "run"]


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
    conversion_gate = Gate(
        s.max_conversions, s.max_queue, s.queue_timeout_s + s.conversion_timeout_s, name="clamp-convert"
    )
    # searches are short (ms) but CPU-bound: as many at once as cores, on threads of their own
    search_gate = Gate(s.max_concurrency, s.max_queue * 4, s.queue_timeout_s, name="clamp-search")
    ctx = Context(s, state, metrics, gate, conversion_gate, search_gate, QueryBatcher(state, gate))

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
        title="CLaMP serve",
        version="1",
        lifespan=lifespan,
        description="Search, compare and classify symbolic music with a CLaMP model (docs/serve.md). "
        'Every error is `{"error": code, "detail": message}`.',
        responses={
            400: {"model": ErrorBody},
            404: {"model": ErrorBody},
            413: {"model": ErrorBody},
            415: {"model": ErrorBody},
            422: {"model": ErrorBody},
            503: {"model": ErrorBody},
        },
    )
    app.state.serve = state
    app.state.metrics = metrics
    install_error_handlers(app)
    if s.cors_origins:  # off unless origins are given
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(s.cors_origins), allow_methods=["GET", "POST"], allow_headers=["*"]
        )
    app.add_middleware(ServeMiddleware, metrics=metrics, max_body=s.max_upload_bytes + FORM_OVERHEAD)
    for routes in (ops, search, classify, tunes, page):  # the order of the OpenAPI document
        routes.register(app, ctx)
    return app


def run(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve until interrupted (uvicorn, one process: the model and index are loaded once)."""
    import uvicorn

    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_level=log_level,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=10,
        )
