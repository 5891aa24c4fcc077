"""The rows of the served dataset: records by id, and the row masks of search filters."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clamp.inference.index import title_of

COLUMNS = ["id", "source", "source_format", "split", "texts", "metadata", "provenance", "license", "abc"]
_MASKS_KEPT = 256


class Catalog:
    """The dataset's columns, memory-mapped (the shards stay on disk; a row is read when asked)."""

    def __init__(self, dataset_dir: str | Path) -> None:
        from clamp.data.shards import load_manifest, read_dataset

        self.manifest = load_manifest(dataset_dir)
        self.table: pa.Table = read_dataset(dataset_dir, COLUMNS)
        self.ids: list[str] = self.table.column("id").to_pylist()
        self.sources = sorted(set(self.table.column("source").unique().to_pylist()))
        self.splits = sorted(set(self.table.column("split").unique().to_pylist()))
        self._metadata: list[dict[str, Any]] | None = None
        self._masks: OrderedDict[tuple, np.ndarray | None] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.table.num_rows

    def rows(self, rows: list[int] | np.ndarray, columns: list[str] | None = None) -> list[dict[str, Any]]:
        """The records of some rows, in that order."""
        table = self.table.select(columns) if columns else self.table
        # a zero-copy slice per row: `take` on a many-chunk table joins the chunks first (O(rows))
        return [table.slice(int(r), 1).to_pylist()[0] for r in rows]

    def record(self, row: int) -> dict[str, Any]:
        """One tune as the API returns it: its ABC, texts, parsed metadata, provenance and licence."""
        r = self.rows([row])[0]
        try:
            meta = json.loads(r["metadata"]) if r["metadata"] else {}
        except ValueError:
            meta = {"raw": r["metadata"]}
        return {**r, "title": title_of(r["id"], r["texts"]), "metadata": meta}

    def _parsed_metadata(self) -> list[dict[str, Any]]:
        if self._metadata is None:  # parsed on the first metadata filter only
            parsed = []
            for text in self.table.column("metadata").to_pylist():
                try:
                    value = json.loads(text) if text else {}
                except ValueError:
                    value = {}
                parsed.append(value if isinstance(value, dict) else {})
            self._metadata = parsed
        return self._metadata

    def mask(
        self, source: str | None = None, split: str | None = None, meta: tuple[tuple[str, str], ...] = ()
    ) -> np.ndarray | None:
        """The rows a search may return: those of `source`, of `split`, and whose metadata has each
        (dotted key, value) of `meta` (strings compared without case); None means every row."""
        key = (source, split, meta)
        with self._lock:
            if key in self._masks:
                self._masks.move_to_end(key)
                return self._masks[key]
        mask: np.ndarray | None = None
        for column, value in (("source", source), ("split", split)):
            if value is not None:
                m = pc.equal(self.table.column(column), value).to_numpy(zero_copy_only=False)
                mask = m if mask is None else mask & m
        if meta:
            wanted = [(k.split("."), v.casefold()) for k, v in meta]
            m = np.fromiter(
                (all(_matches(_lookup(d, path), v) for path, v in wanted) for d in self._parsed_metadata()),
                dtype=bool,
                count=len(self),
            )
            mask = m if mask is None else mask & m
        with self._lock:
            self._masks[key] = mask
            while len(self._masks) > _MASKS_KEPT:
                self._masks.popitem(last=False)
        return mask


def _lookup(d: Any, path: list[str]) -> Any:
    for part in path:
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _matches(value: Any, wanted: str) -> bool:
    if value is None:
        return False
    if isinstance(value, list):
        return any(_matches(v, wanted) for v in value)
    return str(value).casefold() == wanted
