"""Zero-shot classification of an upload's tunes, or of a tune of the index, among given labels."""

# no `from __future__ import annotations`: FastAPI must resolve the Annotated aliases made
# inside register (K, Source, ...), which are not module globals
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, Form, UploadFile

from clamp.inference.files import MusicTune
from clamp.inference.prompts import DEFAULT_TEMPLATES
from clamp.serve.context import Context
from clamp.serve.errors import ApiError
from clamp.serve.schemas import (
    ClassifyResponse,
    LabelScore,
    TuneLabels,
)


def register(app: FastAPI, ctx: Context) -> None:
    s, state, gate = ctx.settings, ctx.state, ctx.gate
    ready, row_of, read_upload = ctx.ready, ctx.row_of, ctx.read_upload

    @app.post(
        "/api/classify",
        tags=["api"],
        summary="zero-shot classification among given labels, per tune",
        response_model=ClassifyResponse,
    )
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
            raise ApiError(
                422, "invalid_request", f"at most {s.max_labels} labels of at most {s.max_label_chars} characters each"
            )
        if task not in DEFAULT_TEMPLATES:
            raise ApiError(
                422,
                "invalid_request",
                f"unknown task {task[:50]!r}; choose from {', '.join(sorted(DEFAULT_TEMPLATES))}",
            )
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
                return np.asarray(snap.index.vectors[row : row + 1]) @ state.centroids(tuple(names), task).T

        matrix = await gate.run(scores_of)
        by_index = dict(zip((t.index for t in usable), matrix, strict=True))
        out = []
        for t in tunes:
            if t.abc is None:
                out.append(TuneLabels(index=t.index, title=t.title, error=t.error))
                continue
            ranked = sorted(zip(names, by_index[t.index].tolist(), strict=True), key=lambda x: -x[1])
            out.append(
                TuneLabels(
                    index=t.index,
                    title=t.title if file is not None else title,
                    labels=[LabelScore(label=n, score=round(float(v), 4)) for n, v in ranked],
                )
            )
        return ClassifyResponse(labels=names, task=task, tunes=out)
