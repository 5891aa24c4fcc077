"""Per-chunk preparation: convert to ABC, decode, clean, normalize, patch, hash.

`prepare_table` is a pure function over an Arrow table of raw records; it returns the
prepared rows and the quarantined rows, and every input row lands in exactly one of them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from clamp.abc.convert import ConversionError, to_abc
from clamp.abc.normalize import normalize_abc
from clamp.abc.notation import canonical_abc
from clamp.abc.patching import PATCH_SIZE, get_patch_mode
from clamp.config import BuildConfig
from clamp.data.clean import (
    RejectedRecord,
    check_has_music,
    check_raw_bytes,
    content_hash,
    decode_text,
    strip_control_chars,
)
from clamp.data.dedup import NUM_PERM, minhash
from clamp.io import write_json_atomic
from clamp.text.captions import describe
from clamp.text.clean import dedupe, scrub_music_fields, text_candidates

PREPARED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_format", pa.string(), nullable=False),
        pa.field("abc", pa.large_string(), nullable=False),
        pa.field("texts", pa.list_(pa.string()), nullable=False),
        pa.field("metadata", pa.string(), nullable=False),
        pa.field("provenance", pa.string(), nullable=False),
        pa.field("license", pa.string(), nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field("n_chars", pa.int32(), nullable=False),
        pa.field("patch_bytes", pa.large_binary(), nullable=False),
        pa.field("minhash", pa.binary(NUM_PERM * 4), nullable=False),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("format", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("provenance", pa.string(), nullable=False),
        pa.field("content", pa.large_binary(), nullable=False),
    ]
)


# Bump when preparation (cleaning, normalization, patching) changes its output, so reruns
# redo the chunks instead of skipping them. (Captions have their own CAPTIONS_VERSION, which
# the prepare fingerprint also covers.) 4: cleaned text candidates, captions and labels.
# 5: Humdrum through `light_notation`, dangling hairpin stops dropped before xml2abc.
# 6: the music patched in the notation the model reads (`notation`). 7: contacts scrubbed from the
# free-text fields of the stored tune (the patches do not change).
PREPARE_VERSION = 7

# Per-chunk caption counts, kept in the prepared table's schema metadata (read by finalize).
CAPTIONED_KEY = b"clamp.captioned"
CAPTION_FAILURES_KEY = b"clamp.caption_failures"


@dataclass(frozen=True)
class RowTexts:
    """A prepared row's text candidates and metadata JSON, and what its captions did."""

    texts: list[str]
    metadata: str
    n_captions: int
    caption_failed: bool


def row_texts(abc: str, raw_texts: list[str], metadata_json: str, row_id: str, n_patches: int) -> RowTexts:
    """Text candidates of one row (cleaned info fields and source texts, then captions) and its
    metadata with the tune's labels under `"labels"` and the number of captions (the last
    `n_captions` texts) under `"n_captions"` (docs/shard-schema.md, "Captions and labels").

    Caption generation never fails a row: a tune that cannot be analysed keeps its cleaned
    raw texts, gets no captions and `caption_failed`.
    """
    texts = text_candidates(abc, raw_texts)
    try:
        parsed = json.loads(metadata_json) if metadata_json else {}
    except ValueError:
        parsed = {}
    meta = parsed if isinstance(parsed, dict) else {}
    found = describe(abc, raw_texts, meta, row_id, n_patches)
    combined = dedupe(texts + found.captions)
    n_captions = len(combined) - len(texts)
    out_meta = {**parsed, "labels": found.labels, "n_captions": n_captions} if isinstance(parsed, dict) else parsed
    return RowTexts(
        texts=combined,
        metadata=json.dumps(out_meta, sort_keys=True, ensure_ascii=False),
        n_captions=n_captions,
        caption_failed=found.error is not None,
    )


_BUILD_FIELDS = BuildConfig.model_fields


class PrepareConfig(BaseModel):
    """What preparing one chunk needs from the build's `BuildConfig` (picklable, for Dask and
    pool workers). Its defaults are BuildConfig's, so they are written once, there."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    patch_mode: Literal["clamp-v1", "m3"] = _BUILD_FIELDS["patch_mode"].default
    notation: Literal["as-written", "canonical"] = _BUILD_FIELDS["notation"].default
    max_patches: int = Field(_BUILD_FIELDS["max_patches"].default, ge=2)
    max_record_bytes: int = Field(_BUILD_FIELDS["max_record_bytes"].default, ge=1)
    conversion_timeout_s: float = Field(_BUILD_FIELDS["conversion_timeout_s"].default, gt=0)
    conversion_cache_dir: str | None = None  # not part of what a chunk is: where conversions are cached

    @classmethod
    def from_build(cls, cfg: BuildConfig) -> PrepareConfig:
        shared = cls.model_fields.keys() - {"conversion_cache_dir"}
        return cls(**cfg.model_dump(include=shared), conversion_cache_dir=str(cfg.cache_dir / "conversions"))

    def semantic(self) -> dict:
        """The settings that change a prepared chunk (its fingerprint covers these)."""
        return self.model_dump(exclude={"conversion_cache_dir"})


# Failures of a run, not of a score (clamp.abc.converters.TransientConversionError), as older
# versions cached them ("unparseable_musicxml: xml2abc timed out after 1s"): read as misses.
# (today's messages, "conversion_timeout: ... timed out after ..." and "converter_crashed: ... converter
# crashed ...", hold the same words, though they are never cached)
TRANSIENT_MARKS = (" timed out after ", "converter crashed")


class ConversionCache:
    """Converted ABC (or the failure reason) by content hash, so reruns skip slow conversions."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # Bump when a converter's output changes, so cached results (and failures) are redone.
    # 3: the Humdrum route of PREPARE_VERSION 5 and the hairpin fix.
    VERSION = b"3"

    def _path(self, fmt: str, content: bytes) -> Path:
        digest = hashlib.sha256(self.VERSION + b"\0" + fmt.encode() + b"\0" + content).hexdigest()
        return self.root / digest[:2] / f"{digest}.json"

    def get(self, fmt: str, content: bytes) -> tuple[str | None, str | None] | None:
        path = self._path(fmt, content)
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        error = data.get("error")
        if error and any(mark in error for mark in TRANSIENT_MARKS):
            return None  # a timeout or crash cached by an older version: convert again
        return data.get("abc"), error

    def remember(self, fmt: str, content: bytes, abc: str | None, failure: ConversionError | None) -> None:
        """Cache a converted score or a failure that repeats; a transient one (a timeout, a
        crash) is not cached, so the next run tries the score again."""
        if failure is not None and failure.transient:
            return
        self.put(fmt, content, abc, str(failure) if failure is not None else None)

    def put(self, fmt: str, content: bytes, abc: str | None, error: str | None) -> None:
        # compact JSON, keys in insertion order, no trailing newline: the format cached files have always had
        write_json_atomic({"abc": abc, "error": error}, self._path(fmt, content), indent=None, sort_keys=False)


def convert_record(fmt: str, content: bytes, cfg: PrepareConfig, cache: ConversionCache | None) -> str:
    """ABC text of one record; raises RejectedRecord with the reason."""
    check_raw_bytes(content, cfg.max_record_bytes)
    if fmt == "abc":
        return decode_text(content)
    cached = cache.get(fmt, content) if cache else None
    if cached is None:
        failure: ConversionError | None = None
        try:
            abc = to_abc(fmt, content, cfg.conversion_timeout_s)
        except ConversionError as exc:
            abc, failure = None, exc
        error = str(failure) if failure is not None else None
        if cache:
            cache.remember(fmt, content, abc, failure)
    else:
        abc, error = cached
    if error is not None or abc is None:
        reason, _, detail = (error or "conversion_failed").partition(": ")
        raise RejectedRecord(reason, detail)
    return abc


def patch_music(abc: str, cfg: PrepareConfig) -> tuple[str, str, bytes]:
    """(normalized, prepared, patch bytes) of one tune's ABC; raises RejectedRecord when it holds
    no music. The music is patched (and hashed, so dedup sees through notation) in the form the
    model reads; the row keeps the tune as written, for search results and the page."""
    mode = get_patch_mode(cfg.patch_mode)
    music = canonical_abc(abc) if cfg.notation == "canonical" else abc
    normalized = normalize_abc(music)
    check_has_music(normalized)
    prepared = normalized if mode.name == "clamp-v1" else mode.prepare(music)
    return normalized, prepared, mode.patch_bytes(prepared, cfg.max_patches)


def prepare_table(raw: pa.Table, cfg: PrepareConfig) -> tuple[pa.Table, pa.Table]:
    """Prepare one chunk of raw records; returns (prepared, quarantined)."""
    cache = ConversionCache(cfg.conversion_cache_dir) if cfg.conversion_cache_dir else None
    good: dict[str, list] = {f.name: [] for f in PREPARED_SCHEMA}
    bad: dict[str, list] = {f.name: [] for f in QUARANTINE_SCHEMA}
    captioned = caption_failures = 0
    for row in raw.to_pylist():
        stage = "convert"
        try:
            abc = convert_record(row["format"], row["content"], cfg, cache)
            stage = "clean"
            abc = strip_control_chars(abc)
            normalized, prepared, patches = patch_music(abc, cfg)
        except RejectedRecord as exc:
            for key, value in (
                ("id", row["id"]),
                ("source", row["source"]),
                ("format", row["format"]),
                ("stage", stage),
                ("reason", exc.reason),
                ("detail", exc.detail),
                ("provenance", row["provenance"]),
                ("content", row["content"]),
            ):
                bad[key].append(value)
            continue
        described = row_texts(abc, row["texts"], row["metadata"], row["id"], len(patches) // PATCH_SIZE)
        captioned += described.n_captions > 0
        caption_failures += described.caption_failed
        for key, value in (
            ("id", row["id"]),
            ("source", row["source"]),
            ("source_format", row["format"]),
            ("abc", scrub_music_fields(abc)),  # served with the score: no e-mail addresses or URLs
            ("texts", described.texts),
            ("metadata", described.metadata),
            ("provenance", row["provenance"]),
            ("license", row["license"]),
            ("content_hash", content_hash(normalized)),
            ("n_chars", len(prepared)),
            ("patch_bytes", patches),
            ("minhash", minhash(normalized).tobytes()),
        ):
            good[key].append(value)
    counts = {CAPTIONED_KEY: str(captioned).encode(), CAPTION_FAILURES_KEY: str(caption_failures).encode()}
    prepared = pa.table(good, schema=PREPARED_SCHEMA.with_metadata(counts))
    return prepared, pa.table(bad, schema=QUARANTINE_SCHEMA)


def caption_counts(prepared_path: str | Path) -> dict[str, int]:
    """`captioned` (rows with at least one caption) and `caption_failures` of a prepared chunk,
    read from its schema metadata (0 for chunks prepared before captions existed)."""
    with pa.memory_map(str(prepared_path), "r") as source:
        meta = pa.ipc.open_file(source).schema.metadata or {}
    return {
        "captioned": int(meta.get(CAPTIONED_KEY, b"0")),
        "caption_failures": int(meta.get(CAPTION_FAILURES_KEY, b"0")),
    }
