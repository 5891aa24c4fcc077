"""Exact and near-duplicate detection, and decontamination against the benchmarks.

Near duplicates use MinHash over character 5-grams of the music body (whitespace removed)
with banded LSH. Signatures are computed with vectorised numpy (multiply-shift hashing), so
one tune costs tens of microseconds; the global pass works on numpy arrays of band keys,
so a million tunes need a few hundred MB, not a dict per band.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clamp.data.clean import music_body

NUM_PERM = 64
BANDS = 8
ROWS = NUM_PERM // BANDS
SHINGLE = 5
DEFAULT_THRESHOLD = 0.8
_MASK61 = np.uint64((1 << 61) - 1)

_rng = np.random.default_rng(20230425)  # fixed: signatures must be comparable across runs
_A = _rng.integers(1, 2**63, size=NUM_PERM, dtype=np.uint64) | np.uint64(1)
_B = _rng.integers(0, 2**63, size=NUM_PERM, dtype=np.uint64)
_EMPTY = np.full(NUM_PERM, np.iinfo(np.uint32).max, dtype=np.uint32)


def minhash(normalized: str) -> np.ndarray:
    """MinHash signature (uint32[NUM_PERM]) of the music in clamp-v1-normalized ABC
    (docs/abc-normalisation-and-patching.md)."""
    body = "".join(music_body(normalized).split()).encode("ascii", "replace")
    if len(body) < SHINGLE:
        body = body.ljust(SHINGLE, b"\0")
    return minhash_ids(shingle_ids(np.frombuffer(body, dtype=np.uint8), SHINGLE))


def shingle_ids(symbols: np.ndarray, k: int = SHINGLE) -> np.ndarray:
    """The distinct k-grams (k <= 8) of a sequence of byte values, each packed into one uint64."""
    arr = np.asarray(symbols, dtype=np.uint8).astype(np.uint64)
    if len(arr) < k:
        return np.zeros(0, dtype=np.uint64)
    grams = arr[: len(arr) - k + 1].copy()
    for j in range(1, k):
        grams |= arr[j : len(arr) - k + 1 + j] << np.uint64(8 * j)
    return np.unique(grams)


def minhash_ids(ids: np.ndarray) -> np.ndarray:
    """MinHash signature (uint32[NUM_PERM]) of a set of uint64 ids, with the fixed hash
    functions of `minhash`; an empty set gives all-ones (it matches nothing but itself)."""
    if len(ids) == 0:
        return _EMPTY.copy()
    grams = np.asarray(ids, dtype=np.uint64)
    with np.errstate(over="ignore"):
        hashed = (grams[:, None] * _A[None, :] + _B[None, :]) >> np.uint64(32)
    return hashed.min(axis=0).astype(np.uint32)


def band_keys(signatures: np.ndarray, bands: int = BANDS) -> np.ndarray:
    """(n, bands) uint64 keys, one per band of NUM_PERM // bands signature values (default:
    BANDS bands of ROWS values, the dedup LSH)."""
    rows = NUM_PERM // bands
    sig = np.ascontiguousarray(signatures, dtype=np.uint32).reshape(len(signatures), bands, rows)
    keys = np.zeros((len(signatures), bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for r in range(rows):
            keys = keys * np.uint64(0x100000001B3) ^ sig[:, :, r].astype(np.uint64)
    return keys


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of two signatures."""
    return float(np.mean(a == b))


@dataclass
class NearDupResult:
    duplicate_of: np.ndarray  # index of the earlier similar row, -1 when the row is kept
    similarity: np.ndarray


def find_near_duplicates(
    signatures: np.ndarray, eligible: np.ndarray, threshold: float = DEFAULT_THRESHOLD
) -> NearDupResult:
    """Mark each eligible row similar to an earlier eligible row (first occurrence wins).

    For every band, rows with the same key form a candidate group; each later member is
    compared with the group's first member, and the row is a duplicate when the estimated
    Jaccard similarity reaches `threshold`. Deterministic in row order.
    """
    n = len(signatures)
    dup_of = np.full(n, -1, dtype=np.int64)
    sim = np.zeros(n, dtype=np.float32)
    idx = np.flatnonzero(eligible)
    if len(idx) < 2:
        return NearDupResult(dup_of, sim)
    keys = band_keys(signatures[idx])
    for band in range(BANDS):
        order = np.lexsort((idx, keys[:, band]))  # by key, then row order
        k_sorted = keys[order, band]
        starts = np.r_[True, k_sorted[1:] != k_sorted[:-1]]
        group_first = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))
        later = ~starts
        rows = idx[order[later]]
        firsts = idx[order[group_first[later]]]
        undecided = dup_of[rows] < 0
        rows, firsts = rows[undecided], firsts[undecided]
        if len(rows) == 0:
            continue
        s = (signatures[rows] == signatures[firsts]).mean(axis=1)
        hit = s >= threshold
        dup_of[rows[hit]] = firsts[hit]
        sim[rows[hit]] = s[hit]
    return NearDupResult(dup_of, sim)


@dataclass
class ReferenceIndex:
    """Exact hashes and LSH band keys of reference items (the benchmarks), for decontamination."""

    names: list[str]
    hashes: dict[str, int]
    signatures: np.ndarray
    band_maps: list[dict[int, list[int]]]

    @classmethod
    def build(cls, names: list[str], hashes: list[str], signatures: np.ndarray) -> ReferenceIndex:
        keys = band_keys(signatures) if len(signatures) else np.zeros((0, BANDS), dtype=np.uint64)
        band_maps: list[dict[int, list[int]]] = [{} for _ in range(BANDS)]
        for i, row in enumerate(keys):
            for b in range(BANDS):
                band_maps[b].setdefault(int(row[b]), []).append(i)
        return cls(names, {h: i for i, h in enumerate(hashes)}, signatures, band_maps)

    def match(
        self, content_hash: str, signature: np.ndarray, threshold: float = DEFAULT_THRESHOLD
    ) -> tuple[str, str, float] | None:
        """(reference name, 'exact'|'near', similarity) of the best match, or None."""
        if content_hash in self.hashes:
            return self.names[self.hashes[content_hash]], "exact", 1.0
        keys = band_keys(signature[None, :])[0]
        candidates = {i for b in range(BANDS) for i in self.band_maps[b].get(int(keys[b]), ())}
        best: tuple[str, str, float] | None = None
        for i in sorted(candidates):
            s = similarity(signature, self.signatures[i])
            if s >= threshold and (best is None or s > best[2]):
                best = (self.names[i], "near", s)
        return best
