"""The response models of the API (its OpenAPI schema)."""

from typing import Any

from pydantic import BaseModel, Field


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
