"""Every limit and setting of the server, in one place (docs/serve.md lists them)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from clamp.data.clean import MAX_RECORD_BYTES
from clamp.inference.index import ANN_EXPANSION_SEARCH, ANN_THRESHOLD


class ServeSettings(BaseModel):
    """What `clamp serve` loads and the limits it enforces on every request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_dir: Path = Field(description="a trained model folder")
    dataset_dir: Path = Field(description="a built dataset folder: the search index")
    max_upload_bytes: int = Field(
        MAX_RECORD_BYTES, ge=1, description="largest uploaded score (the build's record limit)"
    )
    max_query_chars: int = Field(500, ge=1, description="longest text query")
    max_k: int = Field(100, ge=1, description="most results one request may ask for")
    max_labels: int = Field(32, ge=2, description="most labels of one classification")
    max_label_chars: int = Field(100, ge=1, description="longest label")
    conversion_timeout_s: float = Field(20.0, gt=0, description="an upload's conversion is killed after this")
    max_concurrency: int = Field(
        max(1, os.cpu_count() or 1),
        ge=1,
        description="model calls running at once",
        json_schema_extra={"default_text": "the CPU count"},
    )
    max_queue: int = Field(64, ge=0, description="requests waiting for a model slot before 503s")
    queue_timeout_s: float = Field(30.0, gt=0, description="longest wait for a model slot before a 503")
    max_conversions: int = Field(2, ge=1, description="upload conversions (converter workers) at once")
    cors_origins: tuple[str, ...] = Field((), description="origins allowed by CORS; none (off) by default")
    ann_threshold: int = Field(ANN_THRESHOLD, ge=0, description="rows from which search uses the HNSW index")
    expansion_search: int = Field(ANN_EXPANSION_SEARCH, ge=1, description="HNSW search breadth (ef)")
    reload_every_s: float = Field(0.0, ge=0, description="check for a rebuilt dataset this often (0: never)")
    torch_threads: int | None = Field(1, ge=1, description="torch threads per model call (None: torch's default)")
    query_cache: int = Field(4096, ge=0, description="text-query embeddings kept (LRU)")
