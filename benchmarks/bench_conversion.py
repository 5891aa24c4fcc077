"""Conversion throughput to ABC per format: one process per score (before) vs the converter pool (after).

For a seeded sample of the music21 corpus (MusicXML ``.mxl``/``.xml``, Humdrum ``.krn``) and of
the VGMIDI benchmark's MIDI files, every score is converted with ``clamp.abc.convert.to_abc`` in
two ways, one after the other, over the same bytes:

- ``before`` (``mode="subprocess"``): what the pipeline did before the pool. MusicXML starts a
  new Python process per score to run xml2abc; Humdrum is parsed and exported by music21 (full
  ``makeNotation``, the route before ``light_notation``) in
  the calling process, then the same xml2abc process; MIDI is checked by symusic in the
  calling process, then abcMIDI's ``midi2abc``.
- ``after`` (``mode="pool"``, the default): the whole conversion in a long-lived worker of the
  process's converter pool (``clamp.abc.pool``), with xml2abc imported once. The pool is
  started and warmed (one score per format) before timing; its start-up is printed apart.

Each way is timed ``--runs`` times over the whole sample; the table gives the median scores
per second, and whether both ways gave the same ABC (or the same failure reason) for every
score. Run it on one core for figures that compare, as the docs do:

    taskset -c 1 .venv/bin/python benchmarks/bench_conversion.py

(worker processes inherit the affinity, so the pool gets the same core).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def sample(n_xml: int, n_krn: int, n_midi: int, seed: int, max_bytes: int) -> dict[str, list[tuple[str, str, bytes]]]:
    """format group -> [(fmt, name, bytes)], seeded."""
    from music21 import corpus

    from clamp.config import default_benchmarks_dir

    rng = random.Random(seed)
    xml = sorted(
        str(p) for p in corpus.getPaths(fileExtensions=("mxl", "xml", "musicxml")) if p.stat().st_size <= max_bytes
    )
    krn = sorted(str(p) for p in corpus.getPaths(fileExtensions=("krn",)) if p.stat().st_size <= max_bytes)
    out: dict[str, list[tuple[str, str, bytes]]] = {
        "MusicXML": [
            ("mxl" if p.endswith(".mxl") else "musicxml", p, Path(p).read_bytes())
            for p in rng.sample(xml, min(n_xml, len(xml)))
        ],
        "Humdrum": [("humdrum", p, Path(p).read_bytes()) for p in rng.sample(krn, min(n_krn, len(krn)))],
    }
    root = default_benchmarks_dir()
    midi = sorted(str(p) for p in (root / "vgmidi").rglob("*.mid")) if root and (root / "vgmidi").is_dir() else []
    if midi and n_midi:
        out["MIDI"] = [("midi", p, Path(p).read_bytes()) for p in rng.sample(midi, min(n_midi, len(midi)))]
    else:
        print("no VGMIDI files (CLAMP_BENCHMARKS_DIR / ../shared/benchmarks): MIDI skipped", file=sys.stderr)
    return out


def humdrum_before_light_notation(data: bytes, timeout_s: float) -> str:
    """The Humdrum route before `light_notation`: music21's full `makeNotation` on export, and
    xml2abc in a new process (what the pipeline did before the pool and the route change)."""
    from music21 import converter
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    from clamp.abc.converters import ConversionError, musicxml_to_abc

    try:
        score = converter.parseData(data.decode("utf-8", errors="replace"), format="humdrum")
        xml = GeneralObjectExporter(score).parse()
    except Exception as exc:
        raise ConversionError(f"unparseable_humdrum: {type(exc).__name__}: {str(exc)[:160]}") from None
    return musicxml_to_abc(xml, timeout_s, failure="unparseable_humdrum", subprocess_xml2abc=True)


def convert_all(items: list[tuple[str, str, bytes]], mode: str, timeout_s: float) -> tuple[float, list[str]]:
    """(seconds, outcomes): the whole sample converted once. In `subprocess` mode (before) a
    Humdrum score takes the route before `light_notation` too."""
    from clamp.abc.convert import ConversionError, to_abc

    outcomes = []
    t0 = time.perf_counter()
    for fmt, _name, data in items:
        try:
            if mode == "subprocess" and fmt == "humdrum":
                outcomes.append("ok:" + humdrum_before_light_notation(data, timeout_s))
                continue
            outcomes.append("ok:" + to_abc(fmt, data, timeout_s, mode=mode))
        except ConversionError as exc:
            outcomes.append("error:" + str(exc))
    return time.perf_counter() - t0, outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--musicxml", type=int, default=40, help="MusicXML scores (music21 corpus), default 40")
    parser.add_argument("--humdrum", type=int, default=20, help="Humdrum scores (music21 corpus), default 20")
    parser.add_argument("--midi", type=int, default=20, help="MIDI files (VGMIDI benchmark), default 20")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per way; the median is reported (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument(
        "--max-bytes", type=int, default=200_000, help="skip corpus files larger than this (default 200000)"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="per-score conversion timeout in seconds (default 120)"
    )
    args = parser.parse_args(argv)

    import warnings

    warnings.filterwarnings("ignore")
    from clamp.abc.convert import to_abc
    from clamp.abc.pool import default_pool

    groups = sample(args.musicxml, args.humdrum, args.midi, args.seed, args.max_bytes)
    t0 = time.perf_counter()
    pool = default_pool()
    first = next(items for items in groups.values() if items)[0]
    to_abc(first[0], first[2], args.timeout)  # the first worker starts
    start_s = time.perf_counter() - t0
    for items in groups.values():  # warm both ways: imports (music21, symusic) happen once, untimed
        for mode in ("subprocess", "pool"):
            convert_all(items[:1], mode, args.timeout)

    rows = []
    for group, items in groups.items():
        if not items:
            continue
        timings: dict[str, list[float]] = {"subprocess": [], "pool": []}
        outcomes: dict[str, list[str]] = {}
        for _ in range(args.runs):
            for mode in ("subprocess", "pool"):
                seconds, outcomes[mode] = convert_all(items, mode, args.timeout)
                timings[mode].append(seconds)
        same = sum(a == b for a, b in zip(outcomes["subprocess"], outcomes["pool"], strict=True))
        failed = sum(o.startswith("error:") for o in outcomes["pool"])
        before = len(items) / statistics.median(timings["subprocess"])
        after = len(items) / statistics.median(timings["pool"])
        rows.append((group, len(items), failed, before, after, after / before, f"{same}/{len(items)}"))
        for (_, name, _), a, b in zip(items, outcomes["subprocess"], outcomes["pool"], strict=True):
            if a != b:
                print(f"differs: {name}: before {a[:80]!r} after {b[:80]!r}", file=sys.stderr)

    print(
        f"converter pool: {pool.workers} worker(s), first worker ready in {start_s:.2f} s (not in the figures); "
        f"median of {args.runs} runs, scores/s"
    )
    header = (
        "format",
        "scores",
        "failed",
        "before /s",
        "after /s",
        "speed-up",
        "before ms/score",
        "after ms/score",
        "same ABC",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for group, n, failed, before, after, ratio, same in rows:
        print(
            f"| {group} | {n} | {failed} | {before:.1f} | {after:.1f} | {ratio:.2f}x | {1000 / before:.1f} | "
            f"{1000 / after:.1f} | {same} |"
        )
    print(f"pool stats: {pool.stats}")
    print("same ABC: Humdrum changed route (light notation, docs/conversion-fidelity.md), so some of its ABC differs")
    return 0 if all(r[6].split("/")[0] == r[6].split("/")[1] for r in rows if r[0] != "Humdrum") else 1


if __name__ == "__main__":
    raise SystemExit(main())
