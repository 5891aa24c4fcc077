"""The decontamination reference: every benchmark item's music, hashed and MinHashed.

Training data must not contain benchmark music (DESIGN §3.2). The index is built from the
benchmarks directory (WikiMT ABC; VGMIDI and Pianist8 MIDI converted to ABC) and cached by a
fingerprint of the benchmark files, since converting 615 MIDI files takes a while.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from clamp.abc.convert import ConversionError, midi_to_abc
from clamp.abc.normalize import normalize_abc
from clamp.data.clean import content_hash
from clamp.data.dedup import NUM_PERM, ReferenceIndex, minhash

log = logging.getLogger("clamp.data.decontam")


def iter_benchmark_music(benchmarks_dir: Path) -> Iterator[tuple[str, str | None, str | None]]:
    """(item name, ABC or None, failure reason or None) for every benchmark item found."""
    wikimt = benchmarks_dir / "wikimt" / "wikimusictext.json"
    if wikimt.is_file():
        for i, item in enumerate(json.loads(wikimt.read_text(encoding="utf-8"))):
            yield f"wikimt:{i}", item.get("music") or "", None
    vgmidi = benchmarks_dir / "vgmidi" / "vgmidi_labelled.csv"
    midi_paths: list[tuple[str, Path]] = []
    if vgmidi.is_file():
        with vgmidi.open(newline="", encoding="utf-8") as fh:
            midi_paths += [(f"vgmidi:{row['id']}", vgmidi.parent / row["midi"]) for row in csv.DictReader(fh)]
    pianist8 = benchmarks_dir / "pianist8" / "midi"
    if pianist8.is_dir():
        midi_paths += [(f"pianist8:{p.relative_to(pianist8).as_posix()}", p) for p in sorted(pianist8.rglob("*.mid"))]
    for name, path in midi_paths:
        try:
            yield name, midi_to_abc(path.read_bytes()), None
        except (ConversionError, OSError) as exc:
            yield name, None, str(exc)


def benchmark_fingerprint(benchmarks_dir: Path) -> str:
    h = hashlib.sha256(b"decontam-v1")
    for path in sorted(p for p in benchmarks_dir.rglob("*") if p.is_file()):
        st = path.stat()
        h.update(f"{path.relative_to(benchmarks_dir)}:{st.st_size}:{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:16]


def load_reference_index(benchmarks_dir: Path, cache_dir: Path) -> tuple[ReferenceIndex, dict[str, int]]:
    """The index and counts (items, conversion failures), from cache when possible."""
    cache = cache_dir / f"decontam-{benchmark_fingerprint(benchmarks_dir)}.npz"
    if cache.is_file():
        data = np.load(cache, allow_pickle=False)
        names, hashes = list(data["names"]), list(data["hashes"])
        stats = json.loads(str(data["stats"]))
        return ReferenceIndex.build([str(n) for n in names], [str(h) for h in hashes], data["signatures"]), stats
    names, hashes, sigs = [], [], []
    failed = 0
    for name, abc, error in iter_benchmark_music(benchmarks_dir):
        if abc is None:
            failed += 1
            log.warning("benchmark item %s not indexed: %s", name, error)
            continue
        normalized = normalize_abc(abc)
        names.append(name)
        hashes.append(content_hash(normalized))
        sigs.append(minhash(normalized))
    signatures = np.stack(sigs) if sigs else np.zeros((0, NUM_PERM), dtype=np.uint32)
    stats = {"items": len(names), "conversion_failures": failed}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.stem + ".tmp.npz")
    np.savez(tmp, names=np.array(names), hashes=np.array(hashes), signatures=signatures, stats=np.array(json.dumps(stats)))
    tmp.replace(cache)
    return ReferenceIndex.build(names, hashes, signatures), stats
