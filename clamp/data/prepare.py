"""Per-chunk preparation: convert to ABC, decode, clean, normalize, patch, hash.

`prepare_table` is a pure function over an Arrow table of raw records; it returns the
prepared rows and the quarantined rows, and every input row lands in exactly one of them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from clamp.abc.convert import ConversionError, to_abc
from clamp.abc.normalize import normalize_abc
from clamp.abc.patching import get_patch_mode
from clamp.data.clean import (
    MAX_RECORD_BYTES,
    RejectedRecord,
    check_has_music,
    check_raw_bytes,
    content_hash,
    decode_text,
    strip_control_chars,
    text_candidates,
)
from clamp.data.dedup import NUM_PERM, minhash
from clamp.io import write_json_atomic

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
# redo the chunks instead of skipping them.
PREPARE_VERSION = 3


@dataclass(frozen=True)
class PrepareConfig:
    patch_mode: str = "clamp-v1"
    max_patches: int = 512
    max_record_bytes: int = MAX_RECORD_BYTES
    conversion_timeout_s: float = 120.0
    conversion_cache_dir: str | None = None


class ConversionCache:
    """Converted ABC (or the failure reason) by content hash, so reruns skip slow conversions."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # Bump when a converter's output changes, so cached results (and failures) are redone.
    VERSION = b"2"

    def _path(self, fmt: str, content: bytes) -> Path:
        digest = hashlib.sha256(self.VERSION + b"\0" + fmt.encode() + b"\0" + content).hexdigest()
        return self.root / digest[:2] / f"{digest}.json"

    def get(self, fmt: str, content: bytes) -> tuple[str | None, str | None] | None:
        path = self._path(fmt, content)
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return data.get("abc"), data.get("error")

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
        try:
            abc, error = to_abc(fmt, content, cfg.conversion_timeout_s), None
        except ConversionError as exc:
            abc, error = None, str(exc)
        if cache:
            cache.put(fmt, content, abc, error)
    else:
        abc, error = cached
    if error is not None or abc is None:
        reason, _, detail = (error or "conversion_failed").partition(": ")
        raise RejectedRecord(reason, detail)
    return abc


def prepare_table(raw: pa.Table, cfg: PrepareConfig) -> tuple[pa.Table, pa.Table]:
    """Prepare one chunk of raw records; returns (prepared, quarantined)."""
    mode = get_patch_mode(cfg.patch_mode)
    cache = ConversionCache(cfg.conversion_cache_dir) if cfg.conversion_cache_dir else None
    good: dict[str, list] = {f.name: [] for f in PREPARED_SCHEMA}
    bad: dict[str, list] = {f.name: [] for f in QUARANTINE_SCHEMA}
    for row in raw.to_pylist():
        stage = "convert"
        try:
            abc = convert_record(row["format"], row["content"], cfg, cache)
            stage = "clean"
            abc = strip_control_chars(abc)
            normalized = normalize_abc(abc)
            check_has_music(normalized)
            prepared = normalized if mode.name == "clamp-v1" else mode.prepare(abc)
            patches = mode.patch_bytes(prepared, cfg.max_patches)
        except RejectedRecord as exc:
            for key, value in (
                ("id", row["id"]), ("source", row["source"]), ("format", row["format"]), ("stage", stage),
                ("reason", exc.reason), ("detail", exc.detail), ("provenance", row["provenance"]),
                ("content", row["content"]),
            ):
                bad[key].append(value)
            continue
        for key, value in (
            ("id", row["id"]), ("source", row["source"]), ("source_format", row["format"]), ("abc", abc),
            ("texts", text_candidates(abc, row["texts"])), ("metadata", row["metadata"]),
            ("provenance", row["provenance"]), ("license", row["license"]),
            ("content_hash", content_hash(normalized)), ("n_chars", len(prepared)),
            ("patch_bytes", patches), ("minhash", minhash(normalized).tobytes()),
        ):
            good[key].append(value)
    return pa.table(good, schema=PREPARED_SCHEMA), pa.table(bad, schema=QUARANTINE_SCHEMA)
