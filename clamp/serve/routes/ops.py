"""Health, readiness and Prometheus metrics."""

# no `from __future__ import annotations`: FastAPI must resolve the Annotated aliases made
# inside register (K, Source, ...), which are not module globals
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from clamp.serve.context import Context
from clamp.serve.schemas import (
    ErrorBody,
)


def register(app: FastAPI, ctx: Context) -> None:
    state, metrics, ready = ctx.state, ctx.metrics, ctx.ready

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
