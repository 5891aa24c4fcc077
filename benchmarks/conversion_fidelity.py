"""Fidelity of conversion to ABC, measured by rendering both sides to MIDI.

For a seeded sample of the music21 corpus scores in MusicXML (``.mxl``, ``.xml``) and Humdrum
(``.krn``), stratified by corpus collection (bach, beethoven, palestrina, trecento ...), and of
MIDI files from the benchmarks folder (VGMIDI, Pianist8), this script

1. converts the source bytes to ABC with ``clamp.abc.convert.to_abc`` (the pipeline's code),
2. measures the agreement of the notes with ``clamp.diagnostics.conversion.measure``: the source rendered
   to MIDI by music21 (MIDI input: the file itself) against the ABC rendered by abcMIDI's
   abc2midi, note events (pitch, onset, duration) in quarter notes, so tempo does not matter;
   precision, recall and F1 at three levels (``pod`` pitch+onset+duration, ``po``, ``p``),
   over the whole score and part by part; repeats removed on both sides (and, for scores that
   have repeats, also expanded on both sides);
3. classifies every lost note (kind x cause, see ``clamp.diagnostics.conversion.FAILURE_KINDS`` and
   ``FAILURE_CAUSES``) and lists examples;
4. beside it, the old figure: the share of notes found again when music21's ABC reader parses
   the ABC back (``recall`` of the previous version of this script), which mostly measures
   music21's ABC reader, not the conversion.

``--humdrum-routes N`` instead compares, on N Humdrum files, the routes from Humdrum to
MusicXML (then ABC by xml2abc): music21's exporter as the pipeline called it before (``makeNotation``
on), with ``makeNotation = False``, with ``makeNotation = False`` after `light_notation` (the pipeline's
route now), and,
when installed, verovio (which reads Humdrum natively but writes no MusicXML or ABC: its MEI is
read by music21 and exported; its own MIDI is checked against music21's reading).

Usage: ``python benchmarks/conversion_fidelity.py --per-collection 6 --midi 12 --seed 0``.
"""

from __future__ import annotations

import argparse
import difflib
import random
import signal
import statistics
import sys
import time
import warnings
import zipfile
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

FORMAT_BY_SUFFIX = {".mxl": "mxl", ".xml": "musicxml", ".musicxml": "musicxml", ".krn": "humdrum"}
SCORE_FORMATS = ("mxl", "musicxml", "humdrum")
GRID = 48  # old figure: durations rounded to 1/48 of a quarter note


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


def _alarm(seconds: float) -> None:
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)


# ----------------------------------------------------------------------------------------- the old figure


def old_notes(score) -> list[tuple[int, float]]:
    """(midi pitch, quarterLength on the 1/48 grid) of every pitched, non-grace note (the old script)."""
    from music21 import chord, note

    out: list[tuple[int, float]] = []
    for n in score.stripTies().flatten().notes:
        if n.duration.isGrace:
            continue
        if isinstance(n, chord.Chord):
            pitches = n.pitches
        elif isinstance(n, note.Note):
            pitches = (n.pitch,)
        else:
            continue
        ql = round(float(n.quarterLength) * GRID) / GRID
        out.extend((p.midi, ql) for p in pitches)
    return out


def old_recall(ref: list[tuple[int, float]], abc: str) -> float:
    """Share of (pitch, duration) pairs found again when music21 parses the ABC back."""
    from music21 import converter

    got = Counter(old_notes(converter.parse(abc, format="abc")))
    want = Counter(ref)
    return sum((want & got).values()) / sum(want.values()) if want else float("nan")


# ----------------------------------------------------------------------------------------- one item


@dataclass
class Result:
    fmt: str
    collection: str
    name: str
    status: str = "ok"  # or: conversion_failed, measure_failed, timeout
    detail: str = ""
    prf: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # level -> (matched, n_ref, n_out)
    per_track: tuple[int, int, int] = (0, 0, 0)
    expanded: tuple[int, int, int] | None = None
    expand_error: str = ""
    octave_accidentals: tuple[int, int, int] | None = None
    global_lengths: tuple[int, int, int] | None = None
    lost: dict[str, int] = field(default_factory=dict)  # failure label -> lost notes
    examples: dict[str, list[str]] = field(default_factory=dict)
    abc2midi_errors: list[str] = field(default_factory=list)
    grace: tuple[int, int] = (0, 0)  # source, ABC
    hidden: int = 0
    old_recall: float = float("nan")
    old_detail: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    def f1(self, level: str = "pod") -> float:
        return _f1(self.prf.get(level))


def _f1(t: tuple[int, int, int] | None) -> float:
    if not t or t[1] + t[2] == 0:
        return float("nan")
    return 2 * t[0] / (t[1] + t[2])


def _t(prf) -> tuple[int, int, int]:
    return (prf.matched, prf.n_ref, prf.n_out)


def _measure(fmt: str, path: str, collection: str, timeout_s: float, old: bool, n_examples: int) -> Result:
    warnings.filterwarnings("ignore")
    from clamp.abc.convert import ConversionError, to_abc
    from clamp.diagnostics import conversion as F

    name = path.split("/corpus/", 1)[-1] if "/corpus/" in path else "/".join(Path(path).parts[-2:])
    res = Result(fmt, collection, name)
    data = Path(path).read_bytes()
    stage = "conversion"
    try:
        _alarm(timeout_s)
        t0 = time.perf_counter()
        abc = to_abc(fmt, data, timeout_s)
        res.seconds["convert"] = time.perf_counter() - t0
        stage = "measure"
        t0 = time.perf_counter()
        score = F.source_score(fmt, data) if fmt != "midi" else None
        m = F.measure(fmt, data, abc, score=score, timeout_s=timeout_s)
        res.seconds["measure"] = time.perf_counter() - t0
    except _Timeout:
        res.status, res.detail = "timeout", f"in {stage} after {timeout_s:.0f}s"
        return res
    except ConversionError as exc:
        res.status, res.detail = "conversion_failed", str(exc)[:140]
        return res
    except Exception as exc:
        res.status, res.detail = f"{stage}_failed", f"{type(exc).__name__}: {str(exc)[:120]}"
        return res
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)

    fid = m.fidelity
    res.prf = {lv: _t(p) for lv, p in fid.levels.items()}
    res.per_track = _t(fid.per_track)
    res.expanded = _t(m.expanded.levels["pod"]) if m.expanded is not None else None
    res.expand_error = m.expand_error
    res.octave_accidentals = _t(m.octave_accidentals) if m.octave_accidentals is not None else None
    res.global_lengths = _t(m.global_unit_lengths) if m.global_unit_lengths is not None else None
    res.lost = dict(m.lost_by_class)
    for f in m.failures:
        ex = res.examples.setdefault(f.label, [])
        if len(ex) < n_examples and not any(e.split(":")[0] == f.describe().split(":")[0] for e in ex):
            ex.append(f.describe())
    res.abc2midi_errors = sorted(set(m.abc2midi_errors))[:5]
    res.grace, res.hidden = (m.grace_source, m.grace_abc), m.hidden_source

    if old and fmt != "midi":
        try:
            _alarm(timeout_s)
            t0 = time.perf_counter()
            res.old_recall = old_recall(old_notes(score), abc)
            res.seconds["old"] = time.perf_counter() - t0
        except _Timeout:
            res.old_detail = "timeout"
        except Exception as exc:
            res.old_detail = f"{type(exc).__name__}: {str(exc)[:80]}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
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


def collection_of(path: Path) -> str:
    parts = path.parts
    return parts[parts.index("corpus") + 1] if "corpus" in parts else path.parent.name


def sample_corpus(per_group: int, seed: int, max_kb: int) -> tuple[list[tuple[str, str, str]], int]:
    """Up to `per_group` scores of each (collection, format) of the music21 corpus."""
    from music21 import corpus

    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    too_big = 0
    for p in sorted(corpus.getPaths(), key=str):
        fmt = FORMAT_BY_SUFFIX.get(p.suffix.lower())
        if fmt is None:
            continue
        if score_size(p) > max_kb * 1024:
            too_big += 1
            continue
        groups[(collection_of(p), fmt)].append(str(p))
    rng = random.Random(seed)
    items = []
    for (coll, fmt), paths in sorted(groups.items()):
        items += [(fmt, p, coll) for p in rng.sample(paths, min(per_group, len(paths)))]
    return items, too_big


def sample_midi(benchmarks_dir: Path | None, limit: int, seed: int) -> list[tuple[str, str, str]]:
    """Up to `limit` MIDI files from each of VGMIDI and Pianist8."""
    if benchmarks_dir is None or limit <= 0:
        return []
    items = []
    for coll, pattern in (("vgmidi", "vgmidi/labelled/phrases/*.mid"), ("pianist8", "pianist8/midi/*/*.mid")):
        paths = sorted(str(p) for p in benchmarks_dir.glob(pattern))
        items += [("midi", p, coll) for p in random.Random(seed).sample(paths, min(limit, len(paths)))]
    return items


# ----------------------------------------------------------------------------------------- report


def _fmt(x: float, width: int = 6) -> str:
    return f"{'-':>{width}}" if x != x else f"{x:{width}.3f}"


def _sum(ts) -> tuple[int, int, int]:
    ts = [t for t in ts if t]
    return tuple(sum(t[k] for t in ts) for k in range(3)) if ts else (0, 0, 0)


def _mean(xs) -> float:
    xs = [x for x in xs if x == x]
    return statistics.fmean(xs) if xs else float("nan")


def table(results: list[Result], key) -> str:
    header = (
        f"{'group':<26} {'n':>3} {'fail':>4} {'pod F1':>7} {'median':>6} {'micro':>6} {'po F1':>6} {'p F1':>6}"
        f" {'track':>6} {'perfect':>7} {'rep':>6} {'oct':>6} {'old':>6} {'s/item':>6}"
    )
    lines = [header, "-" * len(header)]
    groups: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        groups[key(r)].append(r)
    for g in sorted(groups):
        rs = groups[g]
        ok = [r for r in rs if r.status == "ok"]
        pods = [r.f1() for r in ok]
        reps = [r for r in ok if r.expanded]
        lines.append(
            f"{g:<26} {len(rs):>3} {len(rs) - len(ok):>4} {_fmt(_mean(pods), 7)}"
            f" {_fmt(statistics.median([x for x in pods if x == x]) if pods else float('nan'))}"
            f" {_fmt(_f1(_sum(r.prf.get('pod') for r in ok)))}"
            f" {_fmt(_mean(r.f1('po') for r in ok))} {_fmt(_mean(r.f1('p') for r in ok))}"
            f" {_fmt(_mean(_f1(r.per_track) for r in ok))} {sum(1 for x in pods if x >= 0.9999):>7}"
            f" {_fmt(_mean(_f1(r.expanded) for r in reps))} {_fmt(_mean(_f1(r.octave_accidentals) for r in ok))}"
            f" {_fmt(_mean(r.old_recall for r in ok))}"
            f" {_mean(sum(r.seconds.values()) for r in rs):6.2f}"
        )
    return "\n".join(lines)


def failure_table(results: list[Result], n_examples: int) -> str:
    lost: Counter = Counter()
    scores: Counter = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    for r in results:
        for label, n in r.lost.items():
            lost[label] += n
            scores[label] += 1
            for e in r.examples.get(label, [])[:1]:
                examples[label].append(f"{r.name}: {e}")
    total = sum(lost.values())
    if not total:
        return "no lost notes"
    lines = [f"{'class (kind: cause)':<36} {'lost':>7} {'share':>6} {'scores':>6}"]
    for label, n in lost.most_common():
        lines.append(f"{label:<36} {n:>7} {n / total:6.1%} {scores[label]:>6}")
        for e in sorted(examples[label], key=len)[:n_examples]:
            lines.append(f"    e.g. {e[:170]}")
    lines.append(f"{'total':<36} {total:>7}")
    return "\n".join(lines)


def print_report(results: list[Result], args, elapsed: float, too_big: int) -> None:
    from clamp.diagnostics.conversion import FAILURE_KINDS

    print(
        f"conversion fidelity (abc2midi): seed={args.seed}, {args.per_collection} per collection and format,"
        f" {args.midi} per MIDI set, scores > {args.max_kb} KB skipped ({too_big}), {elapsed:.0f}s"
        f" with {args.jobs} job(s)"
    )
    scores = [r for r in results if r.fmt != "midi"]
    print("\nper input format")
    print(table(results, lambda r: r.fmt if r.fmt != "midi" else f"midi/{r.collection}"))
    print(table(scores, lambda r: "all scores").split("\n", 2)[2])
    print("\nper collection (scores)")
    print(table(scores, lambda r: f"{r.collection}/{r.fmt}"))
    print(
        "\npod F1: mean over scores of the pitch+onset+duration F1 (repeats removed on both sides);"
        " median; micro: notes pooled;\npo/p: pitch+onset, pitch only; track: pod F1 part by part;"
        " perfect: scores at F1 1; rep: pod F1 with repeats expanded on\nboth sides (scores with"
        " repeats); oct: pod F1 if accidentals held in their own octave only;\n"
        "old: music21 ABC round-trip recall (the previous"
        " figure).\nMIDI rows: tolerance 1/8 quarter, no causes."
    )
    for title, rs in (
        ("\nlost notes by class (scores)", scores),
        ("\nlost notes by class (MIDI)", [r for r in results if r.fmt == "midi"]),
    ):
        if rs:
            print(title)
            print(failure_table(rs, args.examples))
    print("\nkinds: " + "; ".join(f"{k}: {v}" for k, v in FAILURE_KINDS.items()))

    grace_src = sum(r.grace[0] for r in scores)
    grace_abc = sum(r.grace[1] for r in scores)
    hidden = sum(r.hidden for r in scores)
    print(
        f"\ngrace notes (left out of the F1): {grace_src} in the sources, {grace_abc} in the ABC;"
        f" hidden source notes left out: {hidden} in {sum(1 for r in scores if r.hidden)} scores"
    )
    errs = Counter(e.split(":", 1)[-1].strip()[:60] for r in results for e in r.abc2midi_errors)
    if errs:
        print("abc2midi errors (scores with each): " + "; ".join(f"{e} ({n})" for e, n in errs.most_common(6)))
    glob = [r for r in scores if r.global_lengths]
    if glob:
        print(
            f"per-voice L: in the header: {len(glob)} scores; pod F1 {_fmt(_mean(r.f1() for r in glob)).strip()}"
            f" read as xml2abc means it (voice by voice), {_fmt(_mean(_f1(r.global_lengths) for r in glob)).strip()}"
            " read as abc2midi does (from there on, for later voices too)"
        )
    exp_err = [r for r in scores if r.expand_error]
    if exp_err:
        print(f"repeats not expandable by music21: {len(exp_err)} ({', '.join(r.name for r in exp_err[:4])})")

    worst = sorted((r for r in results if r.status == "ok" and r.f1() == r.f1()), key=lambda r: r.f1())
    worst = worst[: args.worst]
    if worst:
        print("\nlowest agreement:")
        for r in worst:
            top = ", ".join(f"{k} {v}" for k, v in Counter(r.lost).most_common(2))
            print(f"  {r.name[:58]:<58} pod {_fmt(r.f1()).strip()} p {_fmt(r.f1('p')).strip()} ({top})")
    failures = [r for r in results if r.status != "ok"]
    if failures:
        print("\nfailures:")
        for r in failures:
            print(f"  {r.name[:58]:<58} {r.status}: {r.detail}")


# ----------------------------------------------------------------------------------------- Humdrum routes


ROUTES = ("full makeNotation", "makeNotation=False", "light notation", "verovio MEI")


def _route(route: str, text: str, timeout_s: float) -> tuple[str, dict[str, float], object]:
    """(ABC, seconds by stage, the music21 score exported) by one route from Humdrum text."""
    from music21 import converter
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    from clamp.abc.converters import musicxml_to_abc

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    if route == "verovio MEI":  # makeNotation off: verovio's MEI has its own accidentals and beams
        import verovio

        tk = verovio.toolkit()
        tk.setOptions({"inputFrom": "humdrum"})
        tk.loadData(text)
        mei = tk.getMEI()
        seconds["read"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        score = converter.parseData(mei, format="mei")
        seconds["read"] += time.perf_counter() - t0
    else:
        score = converter.parseData(text, format="humdrum")
        seconds["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if route == "light notation":
        from clamp.abc.converters import light_notation

        light_notation(score)
    g = GeneralObjectExporter(score)
    if route != "full makeNotation":
        g.makeNotation = False
    xml = g.parse()
    seconds["export"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    abc = musicxml_to_abc(xml, timeout_s, failure="unparseable_humdrum")
    seconds["xml2abc"] = time.perf_counter() - t0
    return abc, seconds, score


def _humdrum_routes(path: str, timeout_s: float) -> dict:
    warnings.filterwarnings("ignore")
    from music21 import converter

    from clamp.diagnostics import conversion as F

    text = Path(path).read_bytes().decode("utf-8", errors="replace")
    out: dict = {"name": path.split("/corpus/", 1)[-1], "routes": {}}
    try:
        _alarm(timeout_s * 4)
        # the reference: music21's reading of the Humdrum, as in the main benchmark
        score = converter.parseData(text, format="humdrum")
        ref = F.reference_notes(score)
        for route in ROUTES:
            try:
                abc, seconds, _ = _route(route, text, timeout_s)
                fid = F.compare(ref, F.midi_notes(F.abc_to_midi(abc, timeout_s)))
                out["routes"][route] = {"s": seconds, "pod": _t(fid.levels["pod"]), "abc": abc}
            except ImportError:
                out["routes"][route] = {"error": "not installed"}
            except Exception as exc:
                out["routes"][route] = {"error": f"{type(exc).__name__}: {str(exc)[:100]}"}
        try:
            import base64

            import verovio

            tk = verovio.toolkit()
            tk.setOptions({"inputFrom": "humdrum"})
            tk.loadData(text)
            # verovio's MIDI is its own reading of the Humdrum, repeats as it plays them
            vref = F.midi_notes(base64.b64decode(tk.renderToMIDI()))
            agree = F.compare(F.reference_notes(score, expand_repeats=True), vref).levels
            out["verovio"] = {"pod": _t(agree["pod"]), "p": _t(agree["p"])}
        except ImportError:
            out["verovio"] = None
        except Exception as exc:
            out["verovio"] = {"error": f"{type(exc).__name__}: {str(exc)[:100]}"}
    except _Timeout:
        out["error"] = "timeout"
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {str(exc)[:100]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return out


def humdrum_routes(args) -> int:
    from music21 import corpus

    paths = sorted(str(p) for p in corpus.getPaths() if p.suffix.lower() == ".krn")
    others = [p for p in paths if "/palestrina/" not in p]
    pal = [p for p in paths if "/palestrina/" in p]
    n_pal = max(0, min(len(pal), args.humdrum_routes - len(others)))
    chosen = others + random.Random(args.seed).sample(pal, n_pal)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(_humdrum_routes, chosen, [args.timeout] * len(chosen)))
    print(
        f"Humdrum -> MusicXML -> ABC routes: {len(rows)} files ({len(others)} outside palestrina,"
        f" {n_pal} palestrina), {time.perf_counter() - t0:.0f}s with {args.jobs} job(s)"
    )
    header = (
        f"{'route':<20} {'n':>3} {'fail':>4} {'read s':>7} {'export s':>8} {'median':>7} {'xml2abc s':>9}"
        f" {'total s':>7} {'pod F1':>7} {'micro':>6} {'perfect':>7}"
    )
    print(header)
    print("-" * len(header))
    ok_rows = [r for r in rows if "error" not in r]
    for route in ROUTES:
        rs = [r["routes"].get(route, {}) for r in ok_rows]
        good = [x for x in rs if x and "error" not in x]
        if not good:
            reason = next((x.get("error") for x in rs if x), "no data")
            print(f"{route:<20} {len(rs):>3} {len(rs):>4}  ({reason})")
            continue
        f1s = [_f1(x["pod"]) for x in good]
        print(
            f"{route:<20} {len(rs):>3} {len(rs) - len(good):>4} {_mean(x['s']['read'] for x in good):7.3f}"
            f" {_mean(x['s']['export'] for x in good):8.3f} {statistics.median(x['s']['export'] for x in good):7.3f}"
            f" {_mean(x['s']['xml2abc'] for x in good):9.3f} {_mean(sum(x['s'].values()) for x in good):7.3f}"
            f" {_fmt(_mean(f1s), 7)} {_fmt(_f1(_sum(x['pod'] for x in good)))} {sum(1 for f in f1s if f >= 0.9999):>7}"
        )
    print(
        "read: Humdrum to a music21 score (verovio: Humdrum -> MEI, then music21's MEI reader); export:"
        " music21 score -> MusicXML;\npod F1 against music21's reading of the Humdrum (the main benchmark's"
        " reference)."
    )
    for route in ROUTES[1:]:
        same = diff = shown = 0
        changed = []
        for r in ok_rows:
            a, b = r["routes"].get("full makeNotation", {}), r["routes"].get(route, {})
            if "abc" not in a or "abc" not in b:
                continue
            if a["abc"] == b["abc"]:
                same += 1
                continue
            diff += 1
            if abs(_f1(a["pod"]) - _f1(b["pod"])) > 1e-9:
                changed.append(f"{r['name']} {_fmt(_f1(a['pod'])).strip()} -> {_fmt(_f1(b['pod'])).strip()}")
            if shown < args.diffs:
                shown += 1
                d = list(
                    difflib.unified_diff(
                        a["abc"].splitlines(), b["abc"].splitlines(), "full makeNotation", route, n=0, lineterm=""
                    )
                )
                print(
                    f"\n  {route} vs full makeNotation, {r['name']}: {len(d)} diff lines, the first {args.diff_lines}:"
                )
                for ln in d[: args.diff_lines]:
                    print("    " + ln[:150])
        print(
            f"\n{route}: ABC identical to the full makeNotation route's (the one before light notation) "
            f"for {same} files, different for {diff}"
        )
        for c in changed:
            print(f"  pod F1 changed: {c}")
    ver = [r.get("verovio") for r in ok_rows]
    if any(v is None for v in ver):
        print("verovio: not installed")
    else:
        good = [v for v in ver if v and "error" not in v]
        print(
            f"\nverovio's own MIDI of the Humdrum against music21's reading (repeats expanded on both sides),"
            f" {len(good)}/{len(ver)} files: pod F1 {_fmt(_mean(_f1(v['pod']) for v in good)).strip()},"
            f" p F1 {_fmt(_mean(_f1(v['p']) for v in good)).strip()}, perfect"
            f" {sum(1 for v in good if _f1(v['pod']) >= 0.9999)}"
        )
        for r, v in zip(ok_rows, ver, strict=True):
            if v and "error" not in v and _f1(v["pod"]) < 0.9999:
                print(f"  {r['name']}: pod F1 {_fmt(_f1(v['pod'])).strip()}")
    for r in rows:
        if "error" in r:
            print(f"  failed: {r['name']}: {r['error']}")
    return 0


# ----------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Fidelity of conversion to ABC: source and ABC both rendered to MIDI (music21, abc2midi)"
        " and their notes compared, on music21 corpus scores (MusicXML, Humdrum) and benchmark MIDI files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--per-collection", type=int, default=6, help="scores sampled per corpus collection and format")
    parser.add_argument("--midi", type=int, default=10, help="MIDI files sampled from each of VGMIDI and Pianist8")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument(
        "--max-kb",
        type=int,
        default=700,
        help="skip corpus scores whose (uncompressed) file is larger than this",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per item and stage")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--no-old", action="store_true", help="skip the old music21 round-trip figure")
    parser.add_argument(
        "--benchmarks-dir", type=Path, default=None, help="default: clamp.config.default_benchmarks_dir()"
    )
    parser.add_argument("--examples", type=int, default=3, help="examples listed per failure class")
    parser.add_argument("--worst", type=int, default=10, help="list this many lowest-agreement items")
    parser.add_argument(
        "--humdrum-routes",
        type=int,
        default=0,
        help="instead: compare the Humdrum -> MusicXML routes on N files",
    )
    parser.add_argument("--diffs", type=int, default=3, help="with --humdrum-routes: ABC diffs shown")
    parser.add_argument("--diff-lines", type=int, default=12, help="with --humdrum-routes: lines per diff")
    args = parser.parse_args(argv)

    if args.humdrum_routes:
        return humdrum_routes(args)

    from clamp.config import default_benchmarks_dir

    items, too_big = sample_corpus(args.per_collection, args.seed, args.max_kb)
    bdir = args.benchmarks_dir or default_benchmarks_dir()
    midi_items = sample_midi(bdir, args.midi, args.seed)
    if args.midi and not midi_items:
        print(f"note: no MIDI benchmarks under {bdir}; MIDI part skipped", file=sys.stderr)
    items += midi_items

    t0 = time.perf_counter()
    n = len(items)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(
            pool.map(
                _measure,
                [f for f, _, _ in items],
                [p for _, p, _ in items],
                [c for _, _, c in items],
                [args.timeout] * n,
                [not args.no_old] * n,
                [args.examples] * n,
            )
        )
    print_report(results, args, time.perf_counter() - t0, too_big)
    return 0


if __name__ == "__main__":
    sys.exit(main())
