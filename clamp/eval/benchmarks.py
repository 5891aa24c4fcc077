"""Evaluation tasks (docs/evaluation.md): the registered benchmarks and in-domain corpus tasks.

WikiMT, VGMIDI and Pianist8 come from the benchmark registry in `clamp.data.benchmarks`,
the one decontamination also reads, so every evaluated item is one training data was checked
against. `load_benchmark(name, benchmarks_dir=None, cache_dir=None)` returns a `Benchmark`:
ABC per item (MIDI converted the same way as training data, through the build's conversion
cache), labels, optional texts (WikiMT's descriptions, the query side of search), and the
items that failed conversion, counted rather than hidden. This module adds the held-out
in-domain tasks of a built dataset (`load_heldout`).
"""

from __future__ import annotations

from pathlib import Path

from clamp.data.benchmarks import BENCHMARKS, Benchmark, BenchmarkNotFound, load_benchmark

__all__ = ["BENCHMARKS", "IN_DOMAIN_FIELDS", "Benchmark", "BenchmarkNotFound", "label_from_texts", "load_benchmark",
           "load_heldout"]


IN_DOMAIN_FIELDS = {"rhythm": "Rhythm", "origin": "Origin", "composer": "Composer"}


def label_from_texts(texts: list[str], field: str) -> str | None:
    """The label of an info field in a row's text candidates ("Rhythm: jig" -> "jig")."""
    prefix = IN_DOMAIN_FIELDS[field] + ": "
    for t in texts:
        if t.startswith(prefix):
            value = t[len(prefix):].strip()
            if field == "origin":  # "Europa, Mitteleuropa, Deutschland" -> "Deutschland"
                value = value.split(",")[-1].strip()
            return value.lower() or None
    return None


def load_heldout(dataset_dir: str | Path, field: str, split: str = "test", min_count: int = 10,
                 max_classes: int = 10) -> Benchmark:
    """An in-domain task from a built dataset's held-out split (training never reads it).

    Keeps the `max_classes` most frequent labels with at least `min_count` items.
    """
    from collections import Counter

    from clamp.data.shards import read_dataset

    if field not in IN_DOMAIN_FIELDS:
        raise ValueError(f"field must be one of {sorted(IN_DOMAIN_FIELDS)}")
    table = read_dataset(dataset_dir, ["id", "abc", "texts"], split=split)
    rows = [(i, a, label_from_texts(t, field)) for i, a, t in zip(
        table.column("id").to_pylist(), table.column("abc").to_pylist(), table.column("texts").to_pylist(), strict=True)]
    rows = [r for r in rows if r[2]]
    counts = Counter(r[2] for r in rows)
    keep = {label for label, n in counts.most_common(max_classes) if n >= min_count}
    rows = [r for r in rows if r[2] in keep]
    return Benchmark(name=f"corpus-{field}", task=field, ids=[r[0] for r in rows], abc=[r[1] for r in rows],
                     labels=[r[2] for r in rows], provenance=f"{dataset_dir} ({split} split)")
