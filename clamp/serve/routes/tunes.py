"""A tune's record: ABC, texts, metadata, provenance, licence."""

# no `from __future__ import annotations`: FastAPI must resolve the Annotated aliases made
# inside register (K, Source, ...), which are not module globals

from fastapi import FastAPI

from clamp.serve.context import Context
from clamp.serve.schemas import (
    TuneRecord,
)


def register(app: FastAPI, ctx: Context) -> None:
    ready, row_of = ctx.ready, ctx.row_of

    @app.get(
        "/api/tunes/{tune_id:path}",
        tags=["api"],
        summary="a tune: ABC, texts, metadata, provenance, licence",
        response_model=TuneRecord,
    )
    async def tune(tune_id: str) -> TuneRecord:
        snap = ready()
        return TuneRecord(**snap.catalog.record(row_of(snap, tune_id)))
