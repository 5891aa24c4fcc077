"""What every route of one app shares: the settings, the loaded state, the metrics, the gates
and the query batcher, and the small steps routes have in common (readiness, a tune's row,
filters, hits, reading an upload)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import UploadFile

from clamp.errors import UserError
from clamp.inference.files import MusicTune, format_of
from clamp.serve.errors import ApiError
from clamp.serve.middleware import Metrics
from clamp.serve.schemas import Hit
from clamp.serve.settings import ServeSettings
from clamp.serve.state import Gate, QueryBatcher, ServeState, Snapshot


@dataclass
class Context:
    settings: ServeSettings
    state: ServeState
    metrics: Metrics
    gate: Gate  # model calls
    conversion_gate: Gate  # uploads converted in converter workers
    search_gate: Gate  # index searches: short, CPU-bound
    batcher: QueryBatcher  # text queries embedded together

    def ready(self) -> Snapshot:
        snap = self.state.snapshot
        if snap is None:
            error = self.state.error
            detail = f"loading failed: {error}" if error else "the model and index are still loading"
            raise ApiError(503, "not_ready", detail, {"Retry-After": "5"})
        return snap

    @staticmethod
    def row_of(snap: Snapshot, tune_id: str) -> int:
        row = snap.index.row_of.get(tune_id)
        if row is None:
            raise ApiError(404, "not_found", f"no tune with id {tune_id[:200]!r}")
        return row

    @staticmethod
    def hits(snap: Snapshot, rows: np.ndarray, scores: np.ndarray, with_abc: bool = True) -> list[Hit]:
        cols = ["id", "source", "split", "texts", *(["abc"] if with_abc else [])]
        records = snap.catalog.rows(rows, cols)
        return [
            Hit(
                rank=r + 1,
                score=round(float(sc), 4),
                title=snap.index.titles[int(row)],
                abc=rec.get("abc"),
                **{k: rec[k] for k in ("id", "source", "split", "texts")},
            )
            for r, (row, sc, rec) in enumerate(zip(rows, scores, records, strict=True))
        ]

    @staticmethod
    def filters(snap: Snapshot, source: str | None, split: str | None, meta: list[str]) -> np.ndarray | None:
        pairs = []
        for item in meta:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ApiError(
                    422,
                    "invalid_request",
                    f"meta filter {item[:100]!r}: write it as key=value, e.g. labels.tune_type=reel",
                )
            pairs.append((key.strip(), value.strip()))
        return snap.catalog.mask(source or None, split or None, tuple(sorted(pairs)))

    async def read_upload(self, file: UploadFile) -> list[MusicTune]:
        from clamp.serve.convert import convert_upload

        s = self.settings
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
            tunes = await self.conversion_gate.run(
                convert_upload, data, name, s.max_upload_bytes, s.conversion_timeout_s
            )
        except UserError as exc:
            self.metrics.conversions.labels("rejected").inc()
            raise ApiError(422, "unusable_score", str(exc)) from None
        self.metrics.conversions.labels("ok").inc()
        return tunes
