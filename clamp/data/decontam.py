"""The decontamination reference: every benchmark item's music, hashed and MinHashed.

Training data must not contain benchmark music (docs/evaluation.md, "Decontamination"). The index holds every item of
every registered benchmark (`clamp.data.benchmarks.BENCHMARKS`), under the ids evaluation
uses, loaded the same way (MIDI through the conversion cache). It is cached by a fingerprint of
the benchmark files; items that could not be converted are counted and logged, never dropped
silently.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path

import numpy as np

from clamp.abc.normalize import normalize_abc
from clamp.abc.notation import canonical_abc
from clamp.data.benchmarks import BENCHMARKS, available, benchmarks_root, load_benchmark
from clamp.data.clean import content_hash
from clamp.data.dedup import NUM_PERM, ReferenceIndex, minhash
from clamp.data.prepare import PREPARE_VERSION, ConversionCache
from clamp.io import write_bytes_atomic

log = logging.getLogger("clamp.data.decontam")

# Bump when the index's contents change (v2: ids from the benchmark registry).
DECONTAM_VERSION = "decontam-v2"


def benchmark_fingerprint(benchmarks_dir: Path) -> str:
    h = hashlib.sha256(f"{DECONTAM_VERSION}:{sorted(BENCHMARKS)}:{PREPARE_VERSION}:".encode() + ConversionCache.VERSION)
    for path in sorted(p for p in benchmarks_dir.rglob("*") if p.is_file()):
        st = path.stat()
        h.update(f"{path.relative_to(benchmarks_dir)}:{st.st_size}:{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:16]


def build_reference(
    benchmarks_dir: Path, cache_dir: Path, notation: str = "canonical"
) -> tuple[list[str], list[str], np.ndarray, dict]:
    """(ids, content hashes, MinHash signatures, stats) of every registered benchmark found, each
    item hashed in the build's `notation` as training rows are (clamp.data.prepare)."""
    names: list[str] = []
    hashes: list[str] = []
    sigs: list[np.ndarray] = []
    stats: dict = {"items": 0, "conversion_failures": 0, "by_benchmark": {}, "failures": {}, "missing": {}}
    for name, missing in available(benchmarks_dir).items():
        if missing:
            log.warning("decontamination without %s: %s", name, missing)
            stats["missing"][name] = missing
            continue
        bench = load_benchmark(name, benchmarks_dir, cache_dir)
        for item_id, reason in bench.failures.items():
            log.warning("benchmark item %s not indexed: %s", item_id, reason)
        for item_id, abc in zip(bench.ids, bench.abc, strict=True):
            normalized = normalize_abc(canonical_abc(abc) if notation == "canonical" else abc)
            names.append(item_id)
            hashes.append(content_hash(normalized))
            sigs.append(minhash(normalized))
        stats["by_benchmark"][name] = len(bench)
        stats["failures"].update(bench.failures)
    stats["items"] = len(names)
    stats["conversion_failures"] = len(stats["failures"])
    signatures = np.stack(sigs) if sigs else np.zeros((0, NUM_PERM), dtype=np.uint32)
    return names, hashes, signatures, stats


def load_reference_index(
    benchmarks_dir: Path, cache_dir: Path, notation: str = "canonical"
) -> tuple[ReferenceIndex, dict]:
    """The index and its stats (items, conversion failures by id, missing benchmarks), from cache when possible.

    MIDI conversions go through `<cache_dir>/conversions`, the build's conversion cache.
    """
    benchmarks_dir = benchmarks_root(benchmarks_dir)  # a missing directory is a UserError
    cache = Path(cache_dir) / f"decontam-{benchmark_fingerprint(benchmarks_dir)}-{notation}.npz"
    if cache.is_file():
        data = np.load(cache, allow_pickle=False)
        stats = json.loads(str(data["stats"]))
        return ReferenceIndex.build(
            [str(n) for n in data["names"]], [str(h) for h in data["hashes"]], data["signatures"]
        ), stats
    names, hashes, signatures, stats = build_reference(benchmarks_dir, Path(cache_dir), notation)
    buf = io.BytesIO()
    np.savez(
        buf,
        names=np.array(names, dtype=str),
        hashes=np.array(hashes, dtype=str),
        signatures=signatures,
        stats=np.array(json.dumps(stats, sort_keys=True)),
    )
    write_bytes_atomic(buf.getvalue(), cache)
    return ReferenceIndex.build(names, hashes, signatures), stats
