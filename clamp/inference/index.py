"""A search index over a built dataset: its music embedded once per (dataset fingerprint, model),
cached next to the dataset, and an approximate-nearest-neighbour (HNSW) index beside it for
large datasets.

Files, all under the dataset folder and named by the cache key:

- `embeddings-<key>.parquet`: id, title, embedding (what `clamp search` has always cached; the
  last file written, so its presence means the others are complete);
- `embeddings-<key>.npy`: the same embeddings as one float32 matrix, memory-mapped when loaded;
- `embeddings-<key>.usearch`: the HNSW graph (usearch), memory-mapped when loaded; written only
  for datasets of `ann_threshold` rows or more, below which search is exact (a matrix-vector
  product is then as fast and never misses).

Every file is written through `atomic_path`, so a reader sees the old file or the new one; a
loaded index keeps its mapped files even after a rebuild replaces them (POSIX keeps an unlinked
file's data until it is unmapped), which is how a running server keeps answering during one.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clamp.errors import UserError

# Below this many rows search is exact (about 3 ms for 50,000 x 256 on one core).
ANN_THRESHOLD = 50_000
# HNSW settings, tuned on 1,000,000 clustered synthetic embeddings (benchmarks/bench_serve.py):
# recall@10 >= 0.95 against exact search needs a denser graph than usearch's defaults (16/128/64).
ANN_CONNECTIVITY = 32
ANN_EXPANSION_ADD = 256
ANN_EXPANSION_SEARCH = 512
# A filtered ANN search fetches this many times the share of rows it would drop, then falls back
# to exact search over the allowed rows when too few survive.
_OVERFETCH = 2.0
_EXACT_SHARE = 0.05  # filters leaving fewer rows than this share: exact search over them is cheaper


def cache_key(dataset_dir: str | Path, model: Any) -> str:
    """The key of a dataset's embeddings for one model: its manifest fingerprint (changes with any
    rebuild that changes its rows) and the model's weights (their modification time)."""
    from clamp.data.shards import load_manifest

    return cache_key_of(load_manifest(dataset_dir)["fingerprint"], model)


def cache_key_of(fingerprint: str, model: Any) -> str:
    from clamp.model.clamp_model import WEIGHTS_NAME

    weights = Path(model.source_dir) / WEIGHTS_NAME if getattr(model, "source_dir", None) else None
    stamp = str(weights.stat().st_mtime_ns) if weights and weights.is_file() else ""
    return hashlib.sha256((fingerprint + stamp).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class IndexFiles:
    table: Path
    vectors: Path
    ann: Path

    @classmethod
    def of(cls, dataset_dir: str | Path, key: str) -> IndexFiles:
        base = Path(dataset_dir) / f"embeddings-{key}"
        return cls(base.with_suffix(".parquet"), base.with_suffix(".npy"), base.with_suffix(".usearch"))


def title_of(row_id: str, texts: list[str]) -> str:
    """A tune's display title: its first `Title:` text, else its id."""
    return next((x[7:] for x in texts if x.startswith("Title: ")), row_id)


class SearchIndex:
    """Embeddings (rows in dataset order) with exact or HNSW search; safe to share between threads."""

    def __init__(
        self,
        ids: list[str],
        titles: list[str],
        vectors: np.ndarray,
        ann: Any | None = None,
        key: str = "",
        expansion_search: int = ANN_EXPANSION_SEARCH,
    ) -> None:
        self.ids, self.titles, self.vectors, self.ann, self.key = ids, titles, vectors, ann, key
        self.row_of = {i: r for r, i in enumerate(ids)}
        if ann is not None:
            ann.expansion_search = expansion_search
        self._lock = threading.Lock()  # usearch's search is thread-safe; the lock only guards changing ef

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def kind(self) -> str:
        return "hnsw" if self.ann is not None else "exact"

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None, exclude: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the `k` best rows by inner product (cosine: the rows are unit vectors),
        best first; `allowed` is a boolean mask of the rows that may be returned; `exclude` a row
        never returned (the query tune itself in 'more like this')."""
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        n = len(self.ids)
        if allowed is not None:
            allowed = allowed.copy() if exclude is not None else allowed
        if exclude is not None:
            allowed = np.ones(n, dtype=bool) if allowed is None else allowed
            allowed[exclude] = False
        n_allowed = n if allowed is None else int(allowed.sum())
        k = min(k, n_allowed)
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if self.ann is not None and n_allowed >= _EXACT_SHARE * n:
            fetch = k if allowed is None else min(n, int(np.ceil(k * _OVERFETCH * n / n_allowed)) + 1)
            found = self.ann.search(query, fetch)
            rows = np.asarray(found.keys, dtype=np.int64)
            scores = 1.0 - np.asarray(found.distances, dtype=np.float32)  # usearch's "ip" distance is 1 - dot
            if allowed is not None:
                keep = allowed[rows]
                rows, scores = rows[keep], scores[keep]
            if len(rows) >= k:
                return rows[:k], scores[:k]
        return self._exact(query, k, allowed)

    def _exact(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if allowed is None:
            scores = self.vectors @ query
            candidates = np.arange(len(scores))
        else:
            candidates = np.flatnonzero(allowed)
            scores = self.vectors[candidates] @ query
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        return candidates[top].astype(np.int64), scores[top].astype(np.float32)


def _load(files: IndexFiles, key: str, expansion_search: int) -> SearchIndex:
    import pyarrow.parquet as pq

    t = pq.read_table(files.table, columns=["id", "title"])
    ids, titles = t.column("id").to_pylist(), t.column("title").to_pylist()
    vectors = np.load(files.vectors, mmap_mode="r")
    if vectors.shape[0] != len(ids):
        raise RuntimeError(f"{files.vectors} has {vectors.shape[0]} rows, {files.table} {len(ids)}: delete both")
    ann = None
    if files.ann.is_file():
        from usearch.index import Index

        ann = Index.restore(str(files.ann), view=True)  # memory-mapped, not read into memory
    return SearchIndex(ids, titles, vectors, ann, key, expansion_search)


def _write_vectors(vectors: np.ndarray, path: Path) -> None:
    from clamp.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(vectors, dtype=np.float32))


def build_ann(
    vectors: np.ndarray,
    path: Path,
    threads: int = 0,
    connectivity: int = ANN_CONNECTIVITY,
    expansion_add: int = ANN_EXPANSION_ADD,
) -> None:
    """Write an HNSW index of `vectors` (keys: row numbers) atomically to `path`."""
    from usearch.index import Index

    from clamp.io import atomic_path

    index = Index(
        ndim=vectors.shape[1], metric="ip", dtype="f32", connectivity=connectivity, expansion_add=expansion_add
    )
    index.add(
        np.arange(len(vectors), dtype=np.uint64), np.ascontiguousarray(vectors, dtype=np.float32), threads=threads
    )
    with atomic_path(path) as tmp:
        index.save(str(tmp))


def open_index(
    model: Any,
    dataset_dir: str | Path,
    *,
    ann_threshold: int = ANN_THRESHOLD,
    expansion_search: int = ANN_EXPANSION_SEARCH,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> SearchIndex:
    """The search index of a built dataset for `model`: loaded from the cache, or embedded (and
    cached) first. An HNSW index is built when the dataset has `ann_threshold` rows or more and
    none is cached. `progress(done, total)` is called while embedding."""
    dataset_dir = Path(dataset_dir)
    if not (dataset_dir / "manifest.json").is_file():
        raise UserError(f"no built dataset at {dataset_dir} (a folder with manifest.json)")
    key = cache_key(dataset_dir, model)
    files = IndexFiles.of(dataset_dir, key)
    if not files.table.is_file():
        _embed_dataset(model, dataset_dir, files, key, batch_size, progress)
    if not files.vectors.is_file():  # a cache written by an older `clamp search`: derive the matrix once
        import pyarrow.parquet as pq

        column = pq.read_table(files.table, columns=["embedding"]).column("embedding")
        _write_vectors(np.stack(column.to_numpy(zero_copy_only=False)).astype(np.float32), files.vectors)
    if len_of(files) >= ann_threshold and not files.ann.is_file():
        build_ann(np.load(files.vectors, mmap_mode="r"), files.ann)
    index = _load(files, key, expansion_search)
    if len(index) < ann_threshold:
        index.ann = None  # a cached graph from a lower threshold: exact search is as fast here
    return index


def len_of(files: IndexFiles) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(files.table).metadata.num_rows


def _embed_dataset(
    model: Any,
    dataset_dir: Path,
    files: IndexFiles,
    key: str,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clamp.data.shards import open_shards
    from clamp.inference.embed import embed_music
    from clamp.io import atomic_path

    manifest, tables = open_shards(dataset_dir, ["id", "abc", "texts"])  # one consistent set of shards
    if cache_key_of(manifest["fingerprint"], model) != key:
        raise RuntimeError(f"{dataset_dir} was rebuilt while its index was opened: open it again")
    table = pa.concat_tables(tables)
    ids = table.column("id").to_pylist()
    titles = [title_of(i, t) for i, t in zip(ids, table.column("texts").to_pylist(), strict=True)]

    class _Progress:
        done = 0

        def update(self, n: int) -> None:
            self.done += n
            if progress is not None:
                progress(self.done, table.num_rows)

    feats = embed_music(model, table.column("abc").to_pylist(), batch_size, progress=_Progress())
    _write_vectors(feats, files.vectors)
    with atomic_path(files.table) as tmp:  # last: its presence says the cache is complete
        pq.write_table(pa.table({"id": ids, "title": titles, "embedding": list(feats)}), tmp)
