"""Round-trip fidelity of conversion to ABC.

For a seeded sample of the music21 corpus scores in MusicXML (``.mxl`` and ``.xml``) and
Humdrum (``.krn``), and of the VGMIDI benchmark's MIDI files, this script

1. reads the original and takes its notes as the reference,
2. converts the original bytes to ABC with ``clamp.abc.convert.to_abc`` (the pipeline's code),
3. parses that ABC back with ``music21.converter.parse(abc, format="abc")``,
4. reports the share of reference notes found again in the round-tripped score.

What is compared, and why
-------------------------
A note is the pair ``(pitch.midi, quarterLength rounded to 1/48)``; a chord contributes one
pair per pitch, with the chord's duration. Grace notes (no duration) and unpitched notes are
left out on both sides. Tied notes are merged (``stripTies``) on both sides first, so a note
that the converter re-spells as a tied pair still counts as the same note.

The comparison is over the whole score flattened, as multisets, not part by part: music21's
ABC reader turns the ``V:`` definitions of the ABC header into extra empty parts, xml2abc may
split a two-staff part into two voices, and part order is not guaranteed, so any part-by-part
alignment would measure the alignment heuristic more than the conversion. The price is that a
note moved from one part to another is not counted as an error (rare in practice).

Columns
-------
- ``recall``: |reference ∩ round trip| / |reference| (the fidelity); mean and median per score.
- ``prec``: |reference ∩ round trip| / |round trip| (catches invented notes).
- ``pitch``: recall over pitches only (durations ignored).
- ``pc+dur``: recall over (pitch class, duration), i.e. octaves ignored.

The last two separate kinds of loss. Note that the round trip measures the converter *and*
music21's ABC reader: for example xml2abc writes a per-voice ``L:`` field right after a
``V:`` line in the header, which music21 applies to every voice (durations off by a factor),
and music21 ignores octave clefs such as ``treble-8`` (pitches an octave off).

MIDI (VGMIDI)
-------------
The reference is the note list of the MIDI file read with symusic. Performance-style MIDI has
note durations that do not fall on a notation grid, and midi2abc quantizes them, so durations
are not comparable: for MIDI only pitch multisets are compared (``recall`` = ``pitch``).

Usage: ``python benchmarks/conversion_fidelity.py --limit 60 --seed 0``.
"""

from __future__ import annotations

import argparse
import csv
import random
import signal
import statistics
import sys
import time
import warnings
import zipfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

FORMAT_BY_SUFFIX = {".mxl": "mxl", ".xml": "musicxml", ".musicxml": "musicxml", ".krn": "humdrum"}
SCORE_FORMATS = ("mxl", "musicxml", "humdrum")
GRID = 48  # durations rounded to 1/48 of a quarter note


@dataclass
class Result:
    fmt: str
    name: str
    status: (
        str  # "ok", or the failure: "reference_failed", "conversion_failed", "abc_parse_failed", "timeout"
    )
    detail: str = ""
    n_ref: int = 0
    n_rt: int = 0
    recall: float = float("nan")
    precision: float = float("nan")
    pitch_recall: float = float("nan")
    pc_dur_recall: float = float("nan")
    seconds: float = 0.0


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


# ----------------------------------------------------------------------------------------- note multisets


def score_notes(score) -> list[tuple[int, float]]:
    """(midi pitch, quarterLength on the 1/48 grid) for every pitched, non-grace note."""
    from music21 import chord, note

    out: list[tuple[int, float]] = []
    for n in score.stripTies().flatten().notes:
        if n.duration.isGrace:
            continue
        if isinstance(n, chord.Chord):
            pitches = n.pitches
        elif isinstance(n, note.Note):
            pitches = (n.pitch,)
        else:  # unpitched percussion
            continue
        ql = round(float(n.quarterLength) * GRID) / GRID
        out.extend((p.midi, ql) for p in pitches)
    return out


def _recall(ref: Counter, got: Counter) -> float:
    total = sum(ref.values())
    return sum((ref & got).values()) / total if total else float("nan")


def compare(
    ref: list[tuple[int, float]], rt: list[tuple[int, float]], durations: bool = True
) -> dict[str, float]:
    if durations:
        a, b = Counter(ref), Counter(rt)
    else:
        a, b = Counter(p for p, _ in ref), Counter(p for p, _ in rt)
    matched = sum((a & b).values())
    return {
        "recall": matched / sum(a.values()) if a else float("nan"),
        "precision": matched / sum(b.values()) if b else float("nan"),
        "pitch_recall": _recall(Counter(p for p, _ in ref), Counter(p for p, _ in rt)),
        "pc_dur_recall": _recall(Counter((p % 12, d) for p, d in ref), Counter((p % 12, d) for p, d in rt))
        if durations
        else float("nan"),
    }


# ----------------------------------------------------------------------------------------- one item


def _measure(fmt: str, path: str, timeout_s: float) -> Result:
    warnings.filterwarnings("ignore")
    from music21 import converter

    from clamp.abc.convert import ConversionError, to_abc

    name = path.split("/corpus/", 1)[-1] if "/corpus/" in path else Path(path).name
    res = Result(fmt, name, "ok")
    t0 = time.perf_counter()
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    stage = "reference_failed"
    try:
        data = Path(path).read_bytes()
        if fmt == "midi":
            import symusic

            midi = symusic.Score.from_midi(data)
            ref = [(n.pitch, 0.0) for t in midi.tracks if not t.is_drum for n in t.notes]
        else:
            ref = score_notes(converter.parse(path))
        stage = "conversion_failed"
        abc = to_abc(fmt, data, timeout_s)
        stage = "abc_parse_failed"
        rt = score_notes(converter.parse(abc, format="abc"))
        if fmt == "midi":
            rt = [(p, 0.0) for p, _ in rt]
        res.n_ref, res.n_rt = len(ref), len(rt)
        for key, value in compare(ref, rt, durations=fmt != "midi").items():
            setattr(res, key, value)
        if not ref:
            res.status, res.detail = "reference_failed", "no notes in the original"
    except _Timeout:
        res.status, res.detail = "timeout", f"stage {stage.removesuffix('_failed')}"
    except ConversionError as exc:
        res.status, res.detail = "conversion_failed", str(exc)[:120]
    except Exception as exc:  # music21 raises many exception types on odd input
        res.status, res.detail = stage, f"{type(exc).__name__}: {str(exc)[:100]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    res.seconds = time.perf_counter() - t0
    return res


# ----------------------------------------------------------------------------------------- sampling


def score_size(path: Path) -> int:
    """Bytes of the score as parsed: the MusicXML inside an .mxl archive, else the file."""
    if path.suffix.lower() != ".mxl":
        return path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            return sum(
                i.file_size
                for i in zf.infolist()
                if not i.filename.startswith("META") and i.filename.lower().endswith((".xml", ".musicxml"))
            )
    except zipfile.BadZipFile:
        return path.stat().st_size


def sample_corpus(limit: int, seed: int, max_kb: int) -> tuple[list[tuple[str, str]], dict[str, int]]:
    from music21 import corpus

    by_fmt: dict[str, list[str]] = {f: [] for f in SCORE_FORMATS}
    too_big: dict[str, int] = dict.fromkeys(SCORE_FORMATS, 0)
    for p in sorted(corpus.getPaths(), key=str):
        fmt = FORMAT_BY_SUFFIX.get(p.suffix.lower())
        if fmt is None:
            continue
        if score_size(p) > max_kb * 1024:
            too_big[fmt] += 1
            continue
        by_fmt[fmt].append(str(p))
    rng = random.Random(seed)
    items = [(fmt, p) for fmt in SCORE_FORMATS for p in rng.sample(by_fmt[fmt], min(limit, len(by_fmt[fmt])))]
    return items, too_big


def sample_vgmidi(benchmarks_dir: Path | None, limit: int, seed: int) -> list[tuple[str, str]]:
    if benchmarks_dir is None:
        return []
    csv_path = benchmarks_dir / "vgmidi" / "vgmidi_labelled.csv"
    if not csv_path.is_file():
        return []
    with csv_path.open(newline="", encoding="utf-8") as fh:
        paths = sorted({str(csv_path.parent / row["midi"]) for row in csv.DictReader(fh)})
    paths = [p for p in paths if Path(p).is_file()]
    return [("midi", p) for p in random.Random(seed).sample(paths, min(limit, len(paths)))]


# ----------------------------------------------------------------------------------------- report


def _fmt(x: float) -> str:
    return "   -  " if x != x else f"{x:6.3f}"


def summarize(results: list[Result]) -> str:
    header = (
        f"{'format':<9} {'n':>4} {'fail':>4} {'recall':>7} {'median':>7} {'prec':>7} {'pitch':>7} {'pc+dur':>7}"
        f" {'perfect':>7} {'s/item':>7}"
    )
    lines = [header, "-" * len(header)]
    groups = [(f, [r for r in results if r.fmt == f]) for f in (*SCORE_FORMATS, "midi")]
    scores = [r for r in results if r.fmt != "midi"]
    groups.append(("scores", scores))
    for fmt, rs in groups:
        if not rs:
            continue
        ok = [r for r in rs if r.status == "ok"]
        fails = len(rs) - len(ok)

        def mean(attr: str, ok=ok) -> float:
            vals = [getattr(r, attr) for r in ok if getattr(r, attr) == getattr(r, attr)]
            return statistics.fmean(vals) if vals else float("nan")

        med = statistics.median([r.recall for r in ok]) if ok else float("nan")
        perfect = sum(1 for r in ok if r.recall >= 0.9999)
        lines.append(
            f"{fmt:<9} {len(rs):>4} {fails:>4} {_fmt(mean('recall')):>7} {_fmt(med):>7} {_fmt(mean('precision')):>7}"
            f" {_fmt(mean('pitch_recall')):>7} {_fmt(mean('pc_dur_recall')):>7} {perfect:>7}"
            f" {statistics.fmean(r.seconds for r in rs):7.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Round-trip fidelity of conversion to ABC (original -> ABC -> music21) on music21 "
        "corpus scores (MusicXML, Humdrum) and VGMIDI MIDI files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--limit", type=int, default=60, help="items sampled per format (mxl, musicxml, humdrum, midi)"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument(
        "--max-kb",
        type=int,
        default=600,
        help="skip corpus scores whose (uncompressed) file is larger than this: slow to parse",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per item before it counts as a timeout"
    )
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--no-midi", action="store_true", help="skip the VGMIDI part")
    parser.add_argument(
        "--benchmarks-dir", type=Path, default=None, help="default: clamp.config.default_benchmarks_dir()"
    )
    parser.add_argument(
        "--worst", type=int, default=8, help="list this many lowest-fidelity scores and all failures"
    )
    args = parser.parse_args(argv)

    from clamp.config import default_benchmarks_dir

    items, too_big = sample_corpus(args.limit, args.seed, args.max_kb)
    bdir = args.benchmarks_dir or default_benchmarks_dir()
    midi_items = [] if args.no_midi else sample_vgmidi(bdir, args.limit, args.seed)
    if not args.no_midi and not midi_items:
        print(f"note: VGMIDI not found under {bdir}; MIDI part skipped", file=sys.stderr)
    items += midi_items

    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(
            pool.map(_measure, [f for f, _ in items], [p for _, p in items], [args.timeout] * len(items))
        )
    elapsed = time.perf_counter() - t0

    print(
        f"conversion fidelity: seed={args.seed} limit={args.limit}/format, corpus scores > {args.max_kb} KB "
        f"skipped ({', '.join(f'{k} {v}' for k, v in too_big.items())}), {elapsed:.0f}s with {args.jobs} jobs"
    )
    print(summarize(results))
    print("recall = share of reference notes (pitch, duration) found in the round trip; MIDI: pitch only.")

    failures = [r for r in results if r.status != "ok"]
    worst = sorted((r for r in results if r.status == "ok"), key=lambda r: r.recall)[: args.worst]
    if worst:
        print("\nlowest fidelity:")
        for r in worst:
            print(
                f"  {r.fmt:<9} {r.name[:60]:<60} recall {r.recall:.3f} pitch {r.pitch_recall:.3f}"
                f" pc+dur {_fmt(r.pc_dur_recall).strip()} ({r.n_ref} -> {r.n_rt} notes)"
            )
    if failures:
        print("\nfailures:")
        for r in failures:
            print(f"  {r.fmt:<9} {r.name[:60]:<60} {r.status}: {r.detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
