"""Benchmark registry (DESIGN §3.2, §7): WikiMT, VGMIDI, Pianist8, and in-domain corpus tasks.

Every loader returns a `Benchmark`: ABC per item (MIDI converted the same way as training
data), labels, optional texts (WikiMT's descriptions, the query side of search), and the
items that failed conversion, counted rather than hidden. Loaders read `CLAMP_BENCHMARKS_DIR`
(default `../shared/benchmarks`); nothing is downloaded here.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from clamp.config import default_benchmarks_dir

# Where each benchmark is published, for users with a network (not used here).
PUBLIC_HOMES = {
    "wikimt": "https://huggingface.co/datasets/sander-wood/wikimusictext",
    "vgmidi": "https://github.com/lucasnfe/vgmidi",
    "pianist8": "https://zenodo.org/record/5089279",
}

VGMIDI_QUADRANTS = {(1, 1): "happy", (-1, 1): "tense", (-1, -1): "sad", (1, -1): "calm"}


@dataclass
class Benchmark:
    name: str
    task: str  # the label's meaning, e.g. "genre"
    ids: list[str]
    abc: list[str]
    labels: list[str]
    texts: list[str] | None = None
    failures: dict[str, str] = field(default_factory=dict)  # item -> conversion failure
    provenance: str = ""

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def __len__(self) -> int:
        return len(self.ids)


def _root(benchmarks_dir: str | Path | None) -> Path:
    root = Path(benchmarks_dir) if benchmarks_dir else default_benchmarks_dir()
    if root is None or not root.is_dir():
        raise FileNotFoundError("benchmarks directory not found: set CLAMP_BENCHMARKS_DIR")
    return root


def load_wikimt(benchmarks_dir: str | Path | None = None) -> Benchmark:
    path = _root(benchmarks_dir) / "wikimt" / "wikimusictext.json"
    if not path.is_file():
        raise FileNotFoundError(f"WikiMT not found at {path}")
    items = json.loads(path.read_text(encoding="utf-8"))
    return Benchmark(
        name="wikimt", task="genre",
        ids=[f"wikimt:{i}" for i in range(len(items))],
        abc=[it["music"] for it in items],
        labels=[it["genre"] for it in items],
        texts=[it["text"] for it in items],
        provenance=str(path),
    )


def _midi_benchmark(name: str, task: str, entries: list[tuple[str, Path, str]], provenance: str) -> Benchmark:
    from clamp.abc.convert import ConversionError, midi_to_abc

    bench = Benchmark(name=name, task=task, ids=[], abc=[], labels=[], provenance=provenance)
    for item_id, path, label in entries:
        try:
            abc = midi_to_abc(path.read_bytes())
        except (ConversionError, OSError) as exc:
            bench.failures[item_id] = str(exc)
            continue
        bench.ids.append(item_id)
        bench.abc.append(abc)
        bench.labels.append(label)
    return bench


def load_vgmidi(benchmarks_dir: str | Path | None = None) -> Benchmark:
    root = _root(benchmarks_dir) / "vgmidi"
    csv_path = root / "vgmidi_labelled.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"VGMIDI not found at {csv_path}")
    with csv_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    entries = [
        # the csv `id` repeats across phrases of one piece: the MIDI path is the unique key
        (f"vgmidi:{r['midi']}", root / r["midi"], VGMIDI_QUADRANTS[(int(r["valence"]), int(r["arousal"]))]) for r in rows
    ]
    return _midi_benchmark("vgmidi", "emotion", entries, str(csv_path))


def load_pianist8(benchmarks_dir: str | Path | None = None) -> Benchmark:
    root = _root(benchmarks_dir) / "pianist8" / "midi"
    if not root.is_dir():
        raise FileNotFoundError(f"Pianist8 not found at {root}")
    entries = [(f"pianist8:{p.relative_to(root).as_posix()}", p, p.parent.name) for p in sorted(root.glob("*/*.mid"))]
    return _midi_benchmark("pianist8", "pianist", entries, str(root))


BENCHMARKS: dict[str, Callable[..., Benchmark]] = {
    "wikimt": load_wikimt,
    "vgmidi": load_vgmidi,
    "pianist8": load_pianist8,
}


def load_benchmark(name: str, benchmarks_dir: str | Path | None = None) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {sorted(BENCHMARKS)}")
    return BENCHMARKS[name](benchmarks_dir)


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
