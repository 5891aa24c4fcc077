"""Evaluation tasks (docs/evaluation.md): the registered benchmarks and in-domain corpus tasks.

WikiMT, VGMIDI and Pianist8 come from the benchmark registry in `clamp.data.benchmarks`,
the one decontamination also reads, so every evaluated item is one training data was checked
against. `load_benchmark(name, benchmarks_dir=None, cache_dir=None)` returns a `Benchmark`:
ABC per item (MIDI converted the same way as training data, through the build's conversion
cache), labels, optional texts (WikiMT's descriptions, the query side of search), and the
items that failed conversion, counted rather than hidden. This module adds the held-out
in-domain tasks of a built dataset (`load_heldout`, `heldout_items`, `heldout_benchmark`).

An item's labels (`item_labels`) come from its row's `metadata["labels"]` when the build wrote
one (tune_type, key, mode, meter, tempo, collection, composer, period), and otherwise, for rows
built before labels existed, from its text candidates (composer) and its ABC header (key and
mode from `K:`, meter from `M:`). `rhythm` (`R:`) and `origin` (`O:`) always come from the
text candidates, as before.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from clamp.data.benchmarks import BENCHMARKS, Benchmark, BenchmarkNotFound, load_benchmark

__all__ = [
    "BENCHMARKS",
    "HELDOUT_TASKS",
    "IN_DOMAIN_FIELDS",
    "Benchmark",
    "BenchmarkNotFound",
    "HeldoutItems",
    "HeldoutTask",
    "heldout_benchmark",
    "heldout_items",
    "item_labels",
    "key_from_abc",
    "label_from_texts",
    "label_key",
    "load_benchmark",
    "load_heldout",
    "meter_from_abc",
]


IN_DOMAIN_FIELDS = {"rhythm": "Rhythm", "origin": "Origin", "composer": "Composer"}


@dataclass(frozen=True)
class HeldoutTask:
    """One held-out task: which item label it reads, its prompt templates and which classes it keeps."""

    name: str  # the benchmark is `corpus-<name>`
    label: str  # the item label it reads (`item_labels`)
    task: str  # prompt templates (`clamp.inference.prompts.DEFAULT_TEMPLATES`)
    min_count: int  # a class needs at least this many test items
    max_classes: int | None  # keep only the most frequent classes; None keeps every class with min_count
    exclude: frozenset[str] = frozenset()  # labels left out of the task
    only: frozenset[str] = frozenset()  # when given, the only labels the task keeps


# docs/evaluation.md, "Held-out corpus tasks". The first three keep their original definition (the
# 10 most frequent labels with 10 or more items) so their numbers stay comparable across versions.
HELDOUT_TASKS: dict[str, HeldoutTask] = {
    t.name: t
    for t in (
        HeldoutTask("rhythm", "rhythm", "rhythm", 10, 10),
        HeldoutTask("origin", "origin", "origin", 10, 10),
        HeldoutTask("composer", "composer", "composer", 10, 10),
        # tune types tell dances and airs apart; `song` is the Essen collection's bucket for its song
        # genres (a matter of collection, which its own task measures), and at four in five test items
        # it would leave the task nothing to show above its majority
        HeldoutTask("tune_type", "tune_type", "tune_type", 5, None, frozenset({"song"})),
        HeldoutTask("key", "key", "key", 10, None),
        HeldoutTask("meter", "meter", "meter", 10, None),
        HeldoutTask("collection", "collection", "collection", 10, None),
        HeldoutTask("composer_all", "composer", "composer", 5, None),  # every composer with 5 or more test items
        # reels and hornpipes share their meters (2/2, 2/4, 4/4), so the header cannot tell them apart
        HeldoutTask("reel_hornpipe", "tune_type", "tune_type", 5, None, only=frozenset({"reel", "hornpipe"})),
    )
}

# The benchmark-name prefix of the held-out tasks of each split: `corpus-` for the test split
# (the quality report), `valid-` for the valid split (decisions: retraining, recipes), `unseen-`
# for the held-out collection (`BuildConfig.holdout_collections`, split `heldout`).
SPLIT_PREFIX = {"test": "corpus", "valid": "valid", "heldout": "unseen"}


def label_from_texts(texts: list[str], field: str) -> str | None:
    """The label of an info field in a row's text candidates ("Rhythm: jig" -> "jig")."""
    prefix = IN_DOMAIN_FIELDS[field] + ": "
    for t in texts:
        if t.startswith(prefix):
            value = t[len(prefix) :].strip()
            if field == "origin":  # "Europa, Mitteleuropa, Deutschland" -> "Deutschland"
                value = value.split(",")[-1].strip()
            return value.lower() or None
    return None


def label_key(label: str) -> str:
    """What makes two spellings one class: case and everything but letters and digits are ignored
    ("J.S. Bach" = "J. S. Bach", "slip jig" = "slip-jig", "6/8" stays apart from "3/4")."""
    return "".join(ch for ch in label.casefold() if ch.isalnum())


def _header_field(abc: str, letter: str) -> str | None:
    """The first `<letter>:` field of a tune's header (which ends at its `K:` line), comments removed."""
    for line in abc.splitlines():
        if line.startswith(f"{letter}:"):
            return line[2:].split("%", 1)[0].strip()
        if line.startswith("K:"):
            return None
    return None


_MODES = {
    "": "major",
    "maj": "major",
    "ion": "major",
    "m": "minor",
    "min": "minor",
    "aeo": "minor",
    "mix": "mixolydian",
    "dor": "dorian",
    "phr": "phrygian",
    "lyd": "lydian",
    "loc": "locrian",
}
_CLEFS = {"treble", "bass", "alto", "tenor", "baritone", "perc", "none"}
_TONIC = re.compile(r"([A-G])([#b]?)(.*)$")
_METER = re.compile(r"\d+(\+\d+)*/\d+")


def key_from_abc(abc: str) -> tuple[str, str] | None:
    """(key, mode) from a tune's `K:` field in the labels' spelling: "K:Bbm" -> ("B flat minor", "minor").

    ABC reads a mode from its first three letters, "m" alone meaning minor, and no mode meaning
    major; clef and octave settings after it are ignored. Highland-pipe, explicit-accidental or
    empty keys give None.
    """
    value = _header_field(abc, "K")
    match = _TONIC.match(value or "")
    if match is None:
        return None
    letter, accidental, rest = match.groups()
    words = rest.split()
    word = words[0].lower() if words and "=" not in words[0] and not words[0].startswith(("+", "-")) else ""
    if word in _CLEFS:
        word = ""
    mode = _MODES.get(word if word in ("", "m") else word[:3])
    if mode is None:
        return None
    tonic = letter + {"#": " sharp", "b": " flat"}.get(accidental, "")
    return f"{tonic} {mode}", mode


def meter_from_abc(abc: str) -> str | None:
    """A tune's meter from its `M:` field: "6/8", "C" -> "4/4", "C|" -> "2/2"; free meter gives None."""
    value = (_header_field(abc, "M") or "").replace(" ", "")
    if value in ("C", "C|"):
        return {"C": "4/4", "C|": "2/2"}[value]
    return value if _METER.fullmatch(value) else None


def item_labels(texts: list[str], metadata: str | dict | None, abc: str) -> dict[str, str]:
    """Every label of one dataset row (docs/evaluation.md, "Held-out corpus tasks").

    With `metadata["labels"]` (rows built with labels), its values, whitespace collapsed; without
    it (rows built before), composer from the text candidates, key and mode from `K:`, meter from
    `M:`. `rhythm` and `origin` always come from the text candidates.
    """
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata) if metadata else {}
        except json.JSONDecodeError:
            metadata = {}
    given = metadata.get("labels") if isinstance(metadata, dict) else None
    out: dict[str, str] = {}
    if isinstance(given, dict):
        for name, value in given.items():
            if isinstance(value, str | int | float) and not isinstance(value, bool) and label_key(str(value)):
                out[str(name)] = " ".join(str(value).split())
    else:
        composer = label_from_texts(texts, "composer")
        key = key_from_abc(abc)
        meter = meter_from_abc(abc)
        if composer:
            out["composer"] = composer
        if key:
            out["key"], out["mode"] = key
        if meter:
            out["meter"] = meter
    for name in ("rhythm", "origin"):
        value = label_from_texts(texts, name)
        if value and label_key(value):
            out[name] = value
    return out


@dataclass
class HeldoutItems:
    """The rows of a held-out split with every label of each (`item_labels`): the pool of the
    retrieval probes and the source of the held-out tasks."""

    ids: list[str]
    abc: list[str]
    labels: list[dict[str, str]]
    provenance: str = ""
    names: dict[str, dict[str, str]] = field(default_factory=dict)  # label -> label_key -> display spelling

    def __len__(self) -> int:
        return len(self.ids)

    def display(self, label: str, value: str) -> str:
        """One spelling per class: the most frequent spelling of its `label_key` in these items."""
        return self.names.get(label, {}).get(label_key(value), value)


def _spellings(labels: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    seen: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for row in labels:
        for name, value in row.items():
            seen[name][label_key(value)][value] += 1
    return {
        name: {k: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for k, c in keys.items()}
        for name, keys in seen.items()
    }


def heldout_items(dataset_dir: str | Path, split: str = "test") -> HeldoutItems:
    """Every row of a built dataset's split (`test`, `valid`, `heldout`: training never reads
    them; `train` for the header-only baseline's fit) with its labels."""
    from clamp.data.shards import read_dataset

    table = read_dataset(dataset_dir, ["id", "abc", "texts", "metadata"], split=split)
    ids, abcs = table.column("id").to_pylist(), table.column("abc").to_pylist()
    labels = [
        item_labels(t, m, a)
        for t, m, a in zip(table.column("texts").to_pylist(), table.column("metadata").to_pylist(), abcs, strict=True)
    ]
    return HeldoutItems(ids, abcs, labels, f"{dataset_dir} ({split} split)", _spellings(labels))


def heldout_benchmark(
    items: HeldoutItems, name: str, min_count: int | None = None, max_classes: int | None = None, prefix: str = "corpus"
) -> Benchmark:
    """The held-out task `name` (a key of `HELDOUT_TASKS`) over `items`: the items with that label,
    in classes with at least `min_count` items (the `max_classes` most frequent when given;
    defaults from the task)."""
    if name not in HELDOUT_TASKS:
        raise ValueError(f"held-out task must be one of {sorted(HELDOUT_TASKS)}, not {name!r}")
    spec = HELDOUT_TASKS[name]
    min_count = spec.min_count if min_count is None else min_count
    max_classes = spec.max_classes if max_classes is None else max_classes
    rows = [
        (i, a, items.display(spec.label, lab[spec.label]))
        for i, a, lab in zip(items.ids, items.abc, items.labels, strict=True)
        if spec.label in lab and lab[spec.label] not in spec.exclude and (not spec.only or lab[spec.label] in spec.only)
    ]
    counts = Counter(r[2] for r in rows)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))  # ties: alphabetical, so the cut is stable
    keep = {label for label, n in ranked[:max_classes] if n >= min_count}
    rows = [r for r in rows if r[2] in keep]
    return Benchmark(
        name=f"{prefix}-{name}",
        task=spec.task,
        ids=[r[0] for r in rows],
        abc=[r[1] for r in rows],
        labels=[r[2] for r in rows],
        provenance=items.provenance,
    )


def load_heldout(
    dataset_dir: str | Path,
    field: str,
    split: str = "test",
    min_count: int | None = None,
    max_classes: int | None = None,
) -> Benchmark:
    """An in-domain task from a built dataset's held-out split (training never reads it).

    `field` is a key of `HELDOUT_TASKS`; `min_count` and `max_classes` default to the task's.
    """
    if field not in HELDOUT_TASKS:
        raise ValueError(f"field must be one of {sorted(HELDOUT_TASKS)}")
    return heldout_benchmark(heldout_items(dataset_dir, split), field, min_count, max_classes)
