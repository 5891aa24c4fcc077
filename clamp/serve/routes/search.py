"""Text-to-music search and "more like this" (by a tune of the index, or an upload), and
what is served (`/api/info`)."""

# no `from __future__ import annotations`: FastAPI must resolve the Annotated aliases made
# inside register (K, Source, ...), which are not module globals
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, Form, Query, UploadFile

from clamp.inference.prompts import DEFAULT_TEMPLATES
from clamp.serve.context import Context
from clamp.serve.errors import ApiError
from clamp.serve.schemas import Info, SearchResponse, SimilarResponse, TuneRef


def register(app: FastAPI, ctx: Context) -> None:
    s, state, gate, search_gate, batcher = ctx.settings, ctx.state, ctx.gate, ctx.search_gate, ctx.batcher
    ready, row_of, hits, filters, read_upload = ctx.ready, ctx.row_of, ctx.hits, ctx.filters, ctx.read_upload
    K = Annotated[int, Query(ge=1, le=s.max_k, description=f"how many results (1 to {s.max_k})")]
    Source = Annotated[str | None, Query(max_length=200, description="only tunes of this source")]
    Split = Annotated[str | None, Query(max_length=50, description="only tunes of this split: train, valid, test")]
    Meta = Annotated[
        list[str],
        Query(
            max_length=20,
            description="metadata filters key=value (dotted keys reach nested fields, e.g. labels.tune_type=reel)",
        ),
    ]

    @app.get("/api/info", tags=["api"], summary="what is served, and the limits", response_model=Info)
    async def info() -> Info:
        snap = ready()
        return Info(
            dataset=str(snap.catalog.manifest.get("name", "")),
            rows=len(snap.catalog),
            index=snap.index.kind,
            model="/".join(Path(s.model_dir).resolve().parts[-2:]),
            sources=snap.catalog.sources,
            splits=snap.catalog.splits,
            tasks=sorted(DEFAULT_TEMPLATES),
            limits={
                "max_upload_bytes": s.max_upload_bytes,
                "max_query_chars": s.max_query_chars,
                "max_k": s.max_k,
                "max_labels": s.max_labels,
            },
        )

    @app.get("/api/search", tags=["api"], summary="text to music search", response_model=SearchResponse)
    async def search(
        q: Annotated[str, Query(description="a description, e.g. 'a lively jig in D major'")],
        k: K = 10,
        source: Source = None,
        split: Split = None,
        meta: Meta = [],  # noqa: B006 - FastAPI's idiom
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

    @app.get(
        "/api/similar",
        tags=["api"],
        summary="music to music: tunes like a tune of the index",
        response_model=SimilarResponse,
    )
    async def similar_by_id(
        id: Annotated[str, Query(min_length=1, max_length=1000, description="a tune id")],
        k: K = 10,
        source: Source = None,
        split: Split = None,
        meta: Meta = [],  # noqa: B006
        abc: Annotated[bool, Query(description="include each tune's ABC")] = True,
    ) -> SimilarResponse:
        snap = ready()
        row = row_of(snap, id)
        allowed = filters(snap, source, split, meta)
        query = np.asarray(snap.index.vectors[row], dtype=np.float32)
        rows, scores = await search_gate.run(lambda: snap.index.search(query, k, allowed, exclude=row))
        return SimilarResponse(
            query=TuneRef(id=id, title=snap.index.titles[row]), k=k, results=hits(snap, rows, scores, abc)
        )

    @app.post(
        "/api/similar",
        tags=["api"],
        summary="music to music: tunes like an uploaded score (its first usable tune)",
        response_model=SimilarResponse,
    )
    async def similar_by_file(
        file: Annotated[UploadFile, File(description=".abc .xml .musicxml .mxl .mid .midi .krn, at most 1 MB")],
        k: Annotated[int, Form(ge=1, le=s.max_k)] = 10,
        abc: Annotated[bool, Form()] = True,
    ) -> SimilarResponse:
        snap = ready()
        tunes = await read_upload(file)
        first = next(t for t in tunes if t.abc is not None)
        rows, scores = await gate.run(lambda: snap.index.search(state.embed_tunes([first.abc])[0], k))
        return SimilarResponse(
            query=TuneRef(index=first.index, title=first.title), k=k, results=hits(snap, rows, scores, abc)
        )
