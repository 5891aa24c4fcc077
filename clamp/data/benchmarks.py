"""The benchmark registry (docs/evaluation.md, "Benchmarks"): WikiMT, VGMIDI and Pianist8, read one way for all.

Decontamination (`clamp.data.decontam`, training data must not hold benchmark music) and
evaluation (`clamp.eval`) both load benchmarks here, so they see the same items under the same
ids, and a benchmark added to `BENCHMARKS` is decontaminated as soon as it is evaluated.

Each `BenchmarkSpec` says what the label means, where the benchmark lives under the benchmarks
directory (`CLAMP_BENCHMARKS_DIR`, default `../shared/benchmarks`; nothing is downloaded) and
how to discover its items. MIDI is converted to ABC as the build converts training data, through
the build's conversion cache (`<cache_dir>/conversions`), so only the first load converts.
Items that fail (unreadable file, failed conversion, no music) are counted per id with their
reason, never hidden.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from clamp.abc.convert import DEFAULT_TIMEOUT_S, ConversionError, to_abc
from clamp.abc.pool import default_pool
from clamp.config import BuildConfig, default_benchmarks_dir
from clamp.data.prepare import ConversionCache
from clamp.errors import UserError

log = logging.getLogger("clamp.data.benchmarks")

VGMIDI_QUADRANTS = {(1, 1): "happy", (-1, 1): "tense", (-1, -1): "sad", (1, -1): "calm"}


class BenchmarkNotFound(UserError, FileNotFoundError):
    """A benchmarks directory, or one benchmark in it, is missing (callers may skip it)."""


@dataclass
class Benchmark:
    name: str
    task: str  # the label's meaning, e.g. "genre"
    ids: list[str]
    abc: list[str]
    labels: list[str]
    texts: list[str] | None = None
    failures: dict[str, str] = field(default_factory=dict)  # item id -> why it has no ABC
    provenance: str = ""
    converted: int = 0  # MIDI files converted by this load (conversion cache misses)
    location: str = ""  # the file or folder it was read from

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class BenchmarkItem:
    """One discovered item: its music is inline ABC or a MIDI file to convert."""

    id: str
    label: str
    abc: str | None = None
    midi: Path | None = None
    text: str | None = None


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    task: str  # what the label means
    path: str  # file or folder under the benchmarks directory; missing means not installed
    discover: Callable[[Path], list[BenchmarkItem]]  # items from `<benchmarks_dir>/<path>`
    source: str  # where this copy comes from (provenance)
    home: str  # where the benchmark is published
    has_texts: bool = False


def _discover_wikimt(path: Path) -> list[BenchmarkItem]:
    items = json.loads(path.read_text(encoding="utf-8"))
    bad = next((i for i, it in enumerate(items) if not isinstance(it, dict) or not it.get("genre")), None)
    if bad is not None:
        raise UserError(f"{path}: item {bad} has no genre")
    return [
        BenchmarkItem(f"wikimt:{i}", it["genre"], abc=it.get("music") or "", text=it.get("text") or "")
        for i, it in enumerate(items)
    ]


def _sign(value: str) -> int:
    v = float(value)
    return 1 if v > 0 else -1 if v < 0 else 0


def _discover_vgmidi(csv_path: Path) -> list[BenchmarkItem]:
    # The csv `id` repeats across the phrases of one piece: the MIDI path (relative to the
    # VGMIDI folder) is the unique key.
    with csv_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    items = []
    for line, r in enumerate(rows, start=2):
        try:
            label = VGMIDI_QUADRANTS[(_sign(r["valence"]), _sign(r["arousal"]))]
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{csv_path} line {line}: valence and arousal must be +1 or -1") from None
        if not r.get("midi"):
            raise UserError(f"{csv_path} line {line}: no midi path")
        items.append(BenchmarkItem(f"vgmidi:{r['midi']}", label, midi=csv_path.parent / r["midi"]))
    return items


def _discover_pianist8(root: Path) -> list[BenchmarkItem]:
    # `midi/<Pianist>/<file>.mid`, one level (the published layout); the label is the folder.
    return [
        BenchmarkItem(f"pianist8:{p.relative_to(root).as_posix()}", p.parent.name, midi=p)
        for p in sorted(root.glob("*/*.mid"))
    ]


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec(
            "wikimt",
            "genre",
            "wikimt/wikimusictext.json",
            _discover_wikimt,
            source="WikiMusicText (WikiMT), released with CLaMP (microsoft/muzic clamp/wikimusictext/)",
            home="https://huggingface.co/datasets/sander-wood/wikimusictext",
            has_texts=True,
        ),
        BenchmarkSpec(
            "vgmidi",
            "emotion",
            "vgmidi/vgmidi_labelled.csv",
            _discover_vgmidi,
            source="VGMIDI (lucasnfe/vgmidi), labelled part",
            home="https://github.com/lucasnfe/vgmidi",
        ),
        BenchmarkSpec(
            "pianist8",
            "pianist",
            "pianist8/midi",
            _discover_pianist8,
            source="Pianist8 (joann8512/Pianist8)",
            home="https://zenodo.org/record/5089279",
        ),
    )
}


def benchmarks_root(benchmarks_dir: str | Path | None = None) -> Path:
    """The benchmarks directory: the one given, else `CLAMP_BENCHMARKS_DIR` / `../shared/benchmarks`."""
    root = Path(benchmarks_dir).expanduser() if benchmarks_dir else default_benchmarks_dir()
    if root is None:
        raise BenchmarkNotFound("benchmarks directory not found: set CLAMP_BENCHMARKS_DIR")
    if not root.is_dir():
        raise BenchmarkNotFound(f"benchmarks directory not found: {root}")
    return root


def default_cache_dir() -> Path:
    """The build's cache folder (`BuildConfig.cache_dir`: `CLAMP_CACHE_DIR`, else `.clamp/cache`)."""
    return (
        Path(os.environ.get("CLAMP_CACHE_DIR") or BuildConfig.model_fields["cache_dir"].default).expanduser().resolve()
    )


def conversion_cache(cache_dir: str | Path | None = None) -> ConversionCache:
    """The build's conversion cache, `<cache_dir>/conversions` (as `PrepareConfig.from_build`)."""
    return ConversionCache(Path(cache_dir or default_cache_dir()).expanduser().resolve() / "conversions")


def get_spec(name: str) -> BenchmarkSpec:
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark {name!r}; choose from {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]


def available(benchmarks_dir: str | Path | None = None) -> dict[str, str | None]:
    """Each registered benchmark -> None when present, else why it is missing."""
    root = benchmarks_root(benchmarks_dir)
    return {
        name: None if (root / spec.path).exists() else f"{spec.name} not found at {root / spec.path}"
        for name, spec in BENCHMARKS.items()
    }


def convert_midi(
    path: Path, cache: ConversionCache, timeout_s: float = DEFAULT_TIMEOUT_S
) -> tuple[str | None, str | None, bool]:
    """(ABC or None, failure reason or None, whether the converter ran) for one MIDI file.

    Same key as the build (`"midi"` + file bytes), so benchmark MIDI and training MIDI share
    conversions, and a failure that repeats is cached (and reported) like a success; a timeout
    or a crash is reported but not cached.
    """
    try:
        content = path.read_bytes()
    except OSError as exc:
        return None, f"unreadable: {exc}", False
    cached = cache.get("midi", content)
    if cached is not None:
        abc, error = cached
        return abc, error, False
    failure: ConversionError | None = None
    try:
        abc = to_abc("midi", content, timeout_s)
    except ConversionError as exc:
        abc, failure = None, exc
    cache.remember("midi", content, abc, failure)  # not a timeout or a crash: the next load retries it
    return abc, str(failure) if failure is not None else None, True


def load_benchmark(
    name: str, benchmarks_dir: str | Path | None = None, cache_dir: str | Path | None = None, workers: int | None = None
) -> Benchmark:
    """One registered benchmark, its MIDI converted through the conversion cache.

    Raises `BenchmarkNotFound` (a `UserError` and a `FileNotFoundError`) when the benchmarks
    directory or this benchmark is missing, `UserError` when its ids are not unique.
    """
    spec = get_spec(name)
    location = benchmarks_root(benchmarks_dir) / spec.path
    if not location.exists():
        raise BenchmarkNotFound(f"{spec.name} not found at {location}")
    items = spec.discover(location)
    dups = [i for i, n in Counter(it.id for it in items).items() if n > 1]
    if dups:
        raise UserError(f"benchmark {spec.name} has {len(dups)} duplicate ids, e.g. {dups[0]!r}")
    midi = [it for it in items if it.midi is not None]
    converted: dict[str, tuple[str | None, str | None, bool]] = {}
    if midi:
        cache = conversion_cache(cache_dir)
        n_workers = max(1, min(workers or os.cpu_count() or 1, 8, len(midi)))
        # each thread's conversion runs in a converter worker: as many workers as threads
        with default_pool().scaled(n_workers), ThreadPoolExecutor(n_workers) as pool:
            converted = dict(
                zip((it.id for it in midi), pool.map(lambda it: convert_midi(it.midi, cache), midi), strict=True)
            )
    bench = Benchmark(
        name=spec.name,
        task=spec.task,
        ids=[],
        abc=[],
        labels=[],
        texts=[] if spec.has_texts else None,
        provenance=f"{spec.source}: {location}",
        location=str(location),
        converted=sum(ran for _, _, ran in converted.values()),
    )
    for it in items:
        abc, error = (it.abc, None) if it.midi is None else converted[it.id][:2]
        if error is None and not (abc or "").strip():
            error = "no_music: empty ABC"
        if error is not None:
            bench.failures[it.id] = error
            continue
        bench.ids.append(it.id)
        bench.abc.append(abc)
        bench.labels.append(it.label)
        if bench.texts is not None:
            bench.texts.append(it.text or "")
    if bench.failures:
        log.warning(
            "%s: %d of %d items have no ABC (%s)",
            spec.name,
            len(bench.failures),
            len(items),
            ", ".join(
                f"{r} {n}" for r, n in Counter(e.split(":", 1)[0] for e in bench.failures.values()).most_common()
            ),
        )
    if midi:
        log.info(
            "%s: %d MIDI files, %d converted (the rest from the conversion cache)",
            spec.name,
            len(midi),
            bench.converted,
        )
    return bench
