"""One conversion measured and explained: `measure` renders the ABC, reads the source, compares
their notes (`clamp.diagnostics.fidelity`) and `classify` gives each lost note a kind and a cause
(`FAILURE_KINDS` x `FAILURE_CAUSES`). `benchmarks/conversion_fidelity.py` runs it over samples.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from clamp.abc.render import _FIELD_LINE, NoteEvent, abc_to_midi, has_voice_unit_lengths, midi_notes
from clamp.diagnostics.fidelity import (
    DEFAULT_TIMEOUT_S,
    GRID,
    MIDI_TOLERANCE_Q,
    PRF,
    TOLERANCE_Q,
    Fidelity,
    compare,
    count_hidden_notes,
    has_repeats,
    match_timed,
    prepare_score,
    prepared_notes,
    reference_notes,
    score_parts,
    source_score,
)

# ----------------------------------------------------------------------------------------- failure classes


@dataclass(frozen=True)
class BarInfo:
    """One measure of one part of the source."""

    number: int | None
    start: float
    end: float
    irregular: bool = False  # its length differs from its time signature's (pickups included)
    tuplet: bool = False
    voices: int = 1
    octave_clef: bool = False  # treble-8 and the like


@dataclass(frozen=True)
class SourceNote:
    """What the source score says about one note: where it is and what notation it carries."""

    part: int
    part_name: str
    bar: BarInfo
    tuplet: bool = False
    tied: bool = False  # in a tie chain (the MIDI note of a chain head is the whole chain)
    in_chord: bool = False
    transposing: bool = False  # the part is written for a transposing instrument
    ottava: bool = False  # under an 8va/8vb line


@dataclass
class SourceIndex:
    """The source's notes by (pitch, onset on the 1/48 grid), and each part's bars."""

    notes: dict[tuple[int, int], list[SourceNote]]
    bars: list[list[BarInfo]]

    def find(self, n: NoteEvent) -> SourceNote | None:
        found = self.notes.get((n.pitch, round(n.onset * GRID)), [])
        return next((s for s in found if s.part == n.track), found[0] if found else None)

    def bars_between(self, part: int, start: float, end: float) -> list[BarInfo]:
        return [b for b in self.bars[part] if b.end > start + 1e-9 and b.start <= end + 1e-9]


def source_index(prepared) -> SourceIndex:
    """Index a score made by `prepare_score` (sounding pitch, no grace notes) for `classify`."""
    from music21 import clef, spanner

    notes: dict[tuple[int, int], list[SourceNote]] = defaultdict(list)
    all_bars: list[list[BarInfo]] = []
    for pi, part in enumerate(score_parts(prepared)):
        name = part.partName or part.id or f"part {pi + 1}"
        transposing = any(
            i.transposition is not None and i.transposition.semitones != 0
            for i in part.getInstruments(returnDefault=False, recurse=True)
        )
        ottava_spans = []
        for sp in part.spannerBundle.getByClass(spanner.Ottava):
            els = sp.getSpannedElements()
            if els:
                end = els[-1].getOffsetInHierarchy(part) + els[-1].quarterLength
                ottava_spans.append((els[0].getOffsetInHierarchy(part), end))
        bars: list[BarInfo] = []
        current_clef = None
        for m in part.getElementsByClass("Measure"):
            current_clef = m.clef or next(iter(m.recurse().getElementsByClass(clef.Clef)), None) or current_clef
            try:
                irregular = abs(m.duration.quarterLength - m.barDuration.quarterLength) > 1e-6
            except Exception:  # no time signature in context
                irregular = False
            m_notes = list(m.recurse().notes)
            m_off = float(m.getOffsetInHierarchy(part))
            info = BarInfo(
                number=m.number,
                start=m_off,
                end=m_off + float(m.duration.quarterLength),
                irregular=irregular,
                tuplet=any(n.duration.tuplets for n in m_notes),
                voices=max(1, len(m.voices)),
                octave_clef=bool(current_clef is not None and getattr(current_clef, "octaveChange", 0)),
            )
            bars.append(info)
            for n in m_notes:
                onset = m_off + float(n.getOffsetInHierarchy(m))
                for sub in n.notes if n.isChord else [n]:
                    if not hasattr(sub, "pitch"):
                        continue
                    # a tie continuation is indexed too: its MIDI note stands alone when the
                    # tie does not join (another pitch), and `find` prefers chain heads
                    notes[(sub.pitch.midi, round(onset * GRID))].append(
                        SourceNote(
                            part=pi,
                            part_name=name,
                            bar=info,
                            tuplet=bool(n.duration.tuplets),
                            tied=sub.tie is not None,
                            in_chord=n.isChord,
                            transposing=transposing,
                            ottava=any(a <= onset < b for a, b in ottava_spans),
                        )
                    )
        all_bars.append(bars)
    return SourceIndex(dict(notes), all_bars)


# What went wrong with a lost note (the kind); `FAILURE_CAUSES` names the notation involved.
FAILURE_KINDS = {
    "shift": "right pitch and duration, onset shifted: an earlier bar of the voice has another length",
    "duration": "right pitch and onset, another duration",
    "octave": "right onset and duration, pitch off by whole octaves",
    "pitch": "right onset and duration, another pitch",
    "missing": "no counterpart in the ABC",
}
FAILURE_CAUSES = {
    "octave clef": "the note is under an octave clef (treble-8 ...)",
    "8va line": "the note is under an 8va/8vb line",
    "transposing instrument": "the part is written for a transposing instrument",
    "accidental": "the pitch is one or two semitones off",
    "tie": "the note is tied (a tie chain in the source)",
    "tuplet": "the note (or, for a shift, a bar before it) is in a tuplet",
    "irregular bar": "a bar before a shifted note is shorter or longer than its time signature (pickup, cadenza)",
    "voices": "the bar has several notated voices",
    "chord": "the note is part of a chord",
    "other": "none of the above, or the source note was not found",
}


@dataclass
class Failure:
    kind: str
    cause: str
    ref: NoteEvent
    out: NoteEvent | None
    source: SourceNote | None
    bar: int | None = None  # where it happened: for a shift, the bar where the shift starts

    @property
    def label(self) -> str:
        return f"{self.kind}: {self.cause}"

    def describe(self) -> str:
        if self.source is not None:
            where = f"{self.source.part_name}, bar {self.bar if self.bar is not None else self.source.bar.number}"
        else:
            where = f"track {self.ref.track + 1}, beat {self.ref.onset:g}"
        got = (
            f"ABC {self.out.pitch} at {self.out.onset:.3f} for {self.out.duration:.3f}"
            if self.out is not None
            else "nothing in the ABC"
        )
        return f"{where}: source {self.ref.pitch} at {self.ref.onset:g} for {self.ref.duration:g}, {got}"


def _note_cause(kind: str, src: SourceNote | None, ref: NoteEvent, out: NoteEvent | None) -> str:
    if src is None:
        return "other"
    if kind == "octave":
        if src.bar.octave_clef:
            return "octave clef"
        if src.ottava:
            return "8va line"
    if kind in ("octave", "pitch"):
        if src.transposing:
            return "transposing instrument"
        if kind == "pitch" and out is not None and abs(out.pitch - ref.pitch) <= 2:
            return "accidental"
    if src.tied:
        return "tie"
    if src.tuplet:
        return "tuplet"
    if src.bar.voices > 1:
        return "voices"
    if src.in_chord:
        return "chord"
    return "other"


def _bars_cause(bars: list[BarInfo]) -> tuple[str, int | None]:
    """The cause of a shift that started within these bars, and the bar blamed."""
    for attr, cause in (("irregular", "irregular bar"), ("tuplet", "tuplet")):
        for b in bars:
            if getattr(b, attr):
                return cause, b.number
    for b in bars:
        if b.voices > 1:
            return "voices", b.number
    return "other", bars[-1].number if bars else None


def _shift_groups(
    fidelity: Fidelity, ri: list[int], oi: list[int], min_support: int = 3
) -> list[list[tuple[int, int]]]:
    """Groups of leftover note pairs, within one aligned part, with the same pitch and duration
    and onsets that differ by one constant shift (the most common first):
    a voice that runs early or late after a bar of the wrong length. A group needs
    `min_support` notes."""
    ref, out, tol = fidelity.ref, fidelity.out, fidelity.tolerance
    groups: list[list[tuple[int, int]]] = []
    left_r, left_o = set(ri), set(oi)
    for track in fidelity.tracks:
        tr = [i for i in ri if ref[i].track == track.ref_track]
        to = [j for j in oi if out[j].track in track.out_tracks]
        for _ in range(8):
            tr = [i for i in tr if i in left_r]
            to = [j for j in to if j in left_o]
            if len(tr) < min_support or len(to) < min_support:
                break
            by_key: dict[tuple[int, int], list[int]] = defaultdict(list)
            for j in to:
                by_key[(out[j].pitch, round(out[j].duration * GRID))].append(j)
            votes: Counter = Counter()
            for i in tr:
                for j in by_key.get((ref[i].pitch, round(ref[i].duration * GRID)), ()):
                    d = round((out[j].onset - ref[i].onset) * GRID)
                    if d:
                        votes[d] += 1
            if not votes:
                break
            shift, support = votes.most_common(1)[0]
            if support < min_support:
                break
            moved = [NoteEvent(n.pitch, n.onset + shift / GRID, n.duration, n.track) for n in ref]
            found = match_timed(moved, out, tr, to, True, tol)
            if len(found) < min_support:
                break
            groups.append(found)
            left_r -= {i for i, _ in found}
            left_o -= {j for _, j in found}
    return groups


def classify(fidelity: Fidelity, index: SourceIndex | None = None) -> list[Failure]:
    """One `Failure` per source note lost at the ``pod`` level, with its kind and cause.

    Kinds (`FAILURE_KINDS`), tried in this order on the notes still unexplained: ``shift``
    (same pitch and duration, within one aligned part, onset off by a shift shared by at least 3
    notes), ``duration`` (same pitch and onset), ``octave`` and ``pitch`` (same onset and
    duration), ``missing`` (the rest). The cause (`FAILURE_CAUSES`) comes from the source's
    notation (`source_index`): for a shift, from the bars between the voice's last matched note
    and the first shifted one; otherwise from the note itself. Without an index (MIDI input)
    every cause is "other".
    """
    ref, out, tol = fidelity.ref, fidelity.out, fidelity.tolerance
    ri, oi = fidelity.unmatched_ref(), fidelity.unmatched_out()
    failures: list[Failure] = []

    def src_of(n: NoteEvent) -> SourceNote | None:
        return index.find(n) if index is not None else None

    def drop(pairs: list[tuple[int, int]]) -> None:
        nonlocal ri, oi
        done_r, done_o = {i for i, _ in pairs}, {j for _, j in pairs}
        ri = [i for i in ri if i not in done_r]
        oi = [j for j in oi if j not in done_o]

    matched_onsets: dict[int, list[float]] = defaultdict(list)
    for i, _ in fidelity.pairs:
        matched_onsets[ref[i].track].append(ref[i].onset)
    for lst in matched_onsets.values():
        lst.sort()
    for group in _shift_groups(fidelity, ri, oi):
        first = min((ref[i] for i, _ in group), key=lambda n: n.onset)
        src = src_of(first)
        cause, bar = "other", None
        if src is not None and index is not None:
            before = matched_onsets.get(first.track, [])
            k = bisect.bisect_left(before, first.onset)
            since = before[k - 1] if k else 0.0
            cause, bar = _bars_cause(index.bars_between(src.part, since, first.onset))
        failures.extend(Failure("shift", cause, ref[i], out[j], src_of(ref[i]), bar) for i, j in group)
        drop(group)

    def take(kind: str, pairs: list[tuple[int, int]]) -> None:
        for i, j in pairs:
            src = src_of(ref[i])
            failures.append(Failure(kind, _note_cause(kind, src, ref[i], out[j]), ref[i], out[j], src))
        drop(pairs)

    take("duration", match_timed(ref, out, ri, oi, False, tol))
    pc_r = [NoteEvent(n.pitch % 12, n.onset, n.duration, n.track) for n in ref]
    pc_o = [NoteEvent(n.pitch % 12, n.onset, n.duration, n.track) for n in out]
    take("octave", match_timed(pc_r, pc_o, ri, oi, True, tol))
    flat_r = [NoteEvent(0, n.onset, n.duration, n.track) for n in ref]
    flat_o = [NoteEvent(0, n.onset, n.duration, n.track) for n in out]
    take("pitch", match_timed(flat_r, flat_o, ri, oi, True, tol))
    for i in ri:
        src = src_of(ref[i])
        failures.append(Failure("missing", _note_cause("missing", src, ref[i], None), ref[i], None, src))
    return failures


# ----------------------------------------------------------------------------------------- one score


_GRACE_GROUP = re.compile(r"\{([^}]*)\}")


def count_abc_grace_notes(abc: str) -> int:
    """Notes inside ``{...}`` grace groups of the ABC's music lines."""
    body = "\n".join(ln for ln in abc.split("\n") if not _FIELD_LINE.match(ln))
    body = re.sub(r'"[^"]*"|![^!\n]*!', "", body)
    return sum(len(re.findall(r"[A-Ga-g]", g)) for g in _GRACE_GROUP.findall(body))


def count_source_grace_notes(score) -> int:
    return sum(len(n.pitches) for n in score.recurse().notes if n.duration.isGrace)


@dataclass
class Measurement:
    """The fidelity of one conversion: notated order, failures, repeats and grace notes."""

    fidelity: Fidelity  # repeats removed on both sides: the bars once, in notated order
    failures: list[Failure]
    abc2midi_errors: list[str] = field(default_factory=list)
    expanded: Fidelity | None = None  # repeats expanded on both sides, when the source has any
    expand_error: str = ""  # why the expanded comparison could not be made
    octave_accidentals: PRF | None = None  # pod agreement if accidentals held in their octave only
    global_unit_lengths: PRF | None = None  # pod agreement if a voice's L: in the header were global
    grace_source: int = 0
    grace_abc: int = 0
    hidden_source: int = 0  # hidden notes of the source, left out

    @property
    def lost_by_class(self) -> Counter:
        return Counter(f.label for f in self.failures)


def measure(
    fmt: str,
    data: bytes,
    abc: str,
    *,
    score=None,
    repeats: bool = True,
    tol: float | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Measurement:
    """Measure how faithfully `abc` (converted from `data`, a `fmt` file) renders its notes.

    For ``musicxml``, ``mxl`` and ``humdrum`` the source is read by music21 (or `score`, the
    source already parsed by `source_score`); with `repeats`, a source that has repeat marks is
    also compared with its repeats expanded on both sides (music21's `expandRepeats` against
    abc2midi's expansion). For ``midi`` the source notes are the file's own, the tolerance is
    `MIDI_TOLERANCE_Q` (midi2abc quantizes) and failures carry no cause.
    """
    errors: list[str] = []
    out = midi_notes(abc_to_midi(abc, timeout_s, errors=errors))
    if fmt == "midi":
        fid = compare(midi_notes(data), out, MIDI_TOLERANCE_Q if tol is None else tol)
        return Measurement(fid, classify(fid), errors)
    tol = TOLERANCE_Q if tol is None else tol
    score = source_score(fmt, data) if score is None else score
    prepared = prepare_score(score)
    ref = prepared_notes(prepared)
    fid = compare(ref, out, tol)
    result = Measurement(
        fid,
        classify(fid, source_index(prepared) if fid.unmatched_ref() else None),
        errors,
        grace_source=count_source_grace_notes(score),
        grace_abc=count_abc_grace_notes(abc),
        hidden_source=count_hidden_notes(score),
    )
    octave = midi_notes(abc_to_midi(abc, timeout_s, accidentals="octave"))
    result.octave_accidentals = compare(ref, octave, tol).levels["pod"]
    if has_voice_unit_lengths(abc):
        unscoped = midi_notes(abc_to_midi(abc, timeout_s, voice_lengths=False))
        result.global_unit_lengths = compare(ref, unscoped, tol).levels["pod"]
    if repeats and has_repeats(score):
        try:
            expanded_ref = reference_notes(score, expand_repeats=True)
        except Exception as exc:  # music21's ExpanderException and friends on odd repeat marks
            result.expand_error = f"music21 cannot expand the repeats: {type(exc).__name__}: {str(exc)[:80]}"
            return result
        expanded_out = midi_notes(abc_to_midi(abc, timeout_s, keep_repeats=True))
        result.expanded = compare(expanded_ref, expanded_out, tol)
    return result
