"""Conversion fidelity: do a score's notes survive conversion to ABC?

The notes of the source and the notes of the ABC made from it are compared as note events
(pitch, onset, duration), with time in quarter notes, so that tempo (``Q:``, metronome marks,
tempo changes) does not matter:

- the ABC is rendered to MIDI by abcMIDI's ``abc2midi`` (shipped in the symusic wheel beside
  ``midi2abc``) and read with symusic in quarter notes (ticks / ticks per quarter). It is first
  made *playable as written* by `clamp.abc.render.playable_abc`: decorations (trills and mordents, which
  abc2midi plays as ornament notes; staccato, which it plays half length) and chord symbols
  (which it plays as accompaniment) are removed, fermatas and grace notes are ignored
  (``-NFER -NGRA``), chord notes start together (``%%MIDI chordattack 0``), and by default
  repeat signs and volta numbers are removed, so that abc2midi, which always expands repeats,
  plays the bars once in notated order;
- a MusicXML or Humdrum source is parsed by music21 and its note events read from the score
  (`prepare_score`, `prepared_notes`): at sounding pitch, ties joined, without grace notes,
  chord symbols and hidden notes, repeat marks removed (or, with ``expand_repeats``, expanded
  by music21 on this side and by abc2midi on the other). These are the events music21's MIDI
  export would write, without that export's artefacts (see `prepared_notes`);
- a MIDI source is read with symusic as it is.

Drum tracks and zero-length notes are left out on both sides. Notes are matched one to one at
three levels, each a multiset match within `TOLERANCE_Q` quarter notes on onset and duration
(`MIDI_TOLERANCE_Q` for MIDI input, which midi2abc quantizes):

- ``pod``: pitch, onset and duration;
- ``po``: pitch and onset;
- ``p``: pitch only (the multisets of pitches, time ignored).

Precision, recall and F1 are given at each level over the whole score (all parts pooled), and
``pod`` part by part: each ABC voice goes to the source part it shares most (pitch, onset)
matches with, or, failing that, (pitch, duration) pairs (xml2abc writes a voice per staff and
per notated voice, so several voices may go to one part), and each part is compared with the
union of its voices.

`clamp.diagnostics.conversion.classify` explains each lost note and `measure` does it all
for one conversion. The figures measure the conversion *and* the two readers (music21 for the
source, abc2midi for the ABC): where they disagree the loss is counted all the same.
"""

from __future__ import annotations

import bisect
import copy
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from clamp.abc.render import DEFAULT_TIMEOUT_S, MidiNotes, NoteEvent, RenderError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "FidelityError",
    "compare",
    "match_notes",
    "prepare_score",
    "prepared_notes",
    "source_score",
]

TOLERANCE_Q = 1 / 48  # onset and duration tolerance, quarter notes (10 ticks at 480 per quarter)
MIDI_TOLERANCE_Q = 1 / 8  # for MIDI input: midi2abc quantizes onsets and durations
GRID = 48  # exact-match grid for the first, fast matching pass: 1/48 quarter
LEVELS = ("pod", "po", "p")


# a score whose fidelity cannot be measured: the same class as rendering's errors, one-line reasons
FidelityError = RenderError

# ----------------------------------------------------------------------------------------- source -> MIDI


_XML_DIRECTION_OFFSET = re.compile(rb"<offset\b[^>]*>[^<]*</offset>")


def source_score(fmt: str, data: bytes):
    """The music21 score of a MusicXML (``musicxml``/``mxl``) or Humdrum (``humdrum``) source.

    MusicXML ``<offset>`` elements are removed first: they only move a direction (a dynamic, a
    tempo, a text) off its note, but music21 lengthens a measure whose last direction is moved
    past the barline, which shifts every later bar of the part.
    """
    from music21 import converter, stream

    from clamp.abc.converters import as_utf8_xml, unzip_mxl

    try:
        if fmt in ("musicxml", "mxl"):
            xml = as_utf8_xml(unzip_mxl(data) if fmt == "mxl" else data)
            xml = _XML_DIRECTION_OFFSET.sub(b"", xml)
            score = converter.parseData(xml, format="musicxml")
        elif fmt == "humdrum":
            score = converter.parseData(data.decode("utf-8", errors="replace"), format="humdrum")
        else:
            raise FidelityError(f"no music21 source reader for format {fmt!r}")
    except FidelityError:
        raise
    except Exception as exc:  # music21 raises many types on bad input
        raise FidelityError(f"music21 cannot parse the source: {type(exc).__name__}: {str(exc)[:100]}") from None
    if isinstance(score, stream.Opus):
        raise FidelityError("the source holds more than one score")
    return score


def _is_hidden(n) -> bool:
    return bool(n.hasStyleInformation and n.style.hideObjectOnPrint)


def _remove_unrendered(score) -> None:
    """Remove, in place, what the ABC side does not play as notes: grace notes (no notated
    duration; abc2midi runs with -NGRA), chord symbols (music21 holds them as chords; in ABC
    they are quoted text, which abc2midi -NGUI ignores) and hidden notes (MusicXML
    ``print-object="no"``, a playback layer that xml2abc writes as invisible rests)."""
    from music21 import harmony

    drop = [n for n in score.recurse().notes if n.duration.isGrace or isinstance(n, harmony.Harmony) or _is_hidden(n)]
    for n in drop:
        n.activeSite.remove(n)


def count_hidden_notes(score) -> int:
    """Notes of the source not printed (MusicXML ``print-object="no"``): left out of the comparison."""
    from music21 import harmony

    return sum(len(n.pitches) for n in score.recurse().notes if _is_hidden(n) and not isinstance(n, harmony.Harmony))


def _remove_repeats(score) -> None:
    """Remove repeat barlines, volta brackets and D.C./segno marks in place."""
    from music21 import bar, repeat, spanner

    for m in list(score.recurse().getElementsByClass("Measure")):
        if isinstance(m.leftBarline, bar.Repeat):
            m.leftBarline = None
        if isinstance(m.rightBarline, bar.Repeat):
            m.rightBarline = bar.Barline("final" if m.rightBarline.type == "final" else "regular")
    for el in list(score.recurse().getElementsByClass((spanner.RepeatBracket, repeat.RepeatExpression))):
        if el.activeSite is not None:
            el.activeSite.remove(el)


def prepare_score(score, *, expand_repeats: bool = False):
    """A copy of a music21 score as it is rendered: at sounding pitch, without grace notes,
    chord symbols and hidden notes, and with its repeats expanded (music21's
    `Score.expandRepeats`, which also follows the D.C. and segno marks it recognises) or
    removed (the bars once, in notated order)."""
    score = score.expandRepeats() if expand_repeats else copy.deepcopy(score)
    # a parsed score says atSoundingPitch 'unknown' even when some of its parts are written for
    # transposing instruments; toSoundingPitch transposes those parts
    score.toSoundingPitch(inPlace=True)
    _remove_unrendered(score)
    if not expand_repeats:
        _remove_repeats(score)
    return score


def score_parts(score) -> list:
    return list(score.parts) if score.hasPartLikeStreams() else [score]


def prepared_notes(prepared) -> MidiNotes:
    """The note events of a score from `prepare_score`, one track per part, ties joined.

    These are the events music21's MIDI export would write, read straight from the score:
    that export (`music21ObjectToMidiFile`) transposes only scores marked as not at sounding
    pitch (a parsed score says 'unknown'), writes grace notes as zero-length notes that break
    the pairing of same-pitch note-on and note-off events, expands repeats, plays chord
    symbols, and joins ties voice by voice with `stripTies`, which misses chains that cross
    voices and splits some start-continue-stop chains. Here a tie (start or continue) joins
    the next note of the same pitch in the same part that starts where the tied note ends,
    whatever its voice, and whether or not that note is marked as the tie's end.
    """

    notes: list[NoteEvent] = []
    names: list[str] = []
    for pi, part in enumerate(score_parts(prepared)):
        names.append(part.partName or part.id or f"part {pi + 1}")
        open_ties: dict[int, int] = {}  # pitch -> index in notes of the chain being extended
        for n in part.flatten().notes:
            length = float(n.quarterLength)
            if length <= 0:
                continue
            onset = float(n.offset)
            for sub in n.notes if n.isChord else [n]:
                if not hasattr(sub, "pitch"):  # unpitched percussion
                    continue
                pitch = sub.pitch.midi
                tie = sub.tie if sub.tie is not None else (n.tie if n.isChord else None)
                kind = tie.type if tie is not None else None
                k = open_ties.get(pitch)
                if k is not None and _near(notes[k].onset + notes[k].duration, onset, 1e-6):
                    # the tie of the previous note reaches this one (its own tie type may be
                    # missing: a tie is drawn from its start)
                    old = notes[k]
                    notes[k] = NoteEvent(pitch, old.onset, onset + length - old.onset, pi)
                    if kind not in ("start", "continue"):
                        del open_ties[pitch]
                    continue
                notes.append(NoteEvent(pitch, onset, length, pi))
                if kind in ("start", "continue"):
                    open_ties[pitch] = len(notes) - 1
                else:
                    open_ties.pop(pitch, None)
    return MidiNotes(notes, names)


def reference_notes(score, *, expand_repeats: bool = False) -> MidiNotes:
    """The note events of a music21 score as rendered: `prepare_score`, then `prepared_notes`."""
    return prepared_notes(prepare_score(score, expand_repeats=expand_repeats))


def has_repeats(score) -> bool:
    from music21 import bar, repeat, spanner

    return any(
        True
        for _ in score.recurse().getElementsByClass((bar.Repeat, spanner.RepeatBracket, repeat.RepeatExpressionCommand))
    )


# ----------------------------------------------------------------------------------------- matching


def _near(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol + 1e-9


def match_timed(
    ref: list[NoteEvent], out: list[NoteEvent], ri: list[int], oi: list[int], durations: bool, tol: float
) -> list[tuple[int, int]]:
    """One-to-one matches between ref[ri] and out[oi] on pitch and onset (and duration)."""
    pairs: list[tuple[int, int]] = []

    def key(n: NoteEvent) -> tuple:
        q = (n.pitch, round(n.onset * GRID))
        return (*q, round(n.duration * GRID)) if durations else q

    # pass 1: exact on the grid
    buckets: dict[tuple, list[int]] = defaultdict(list)
    for j in oi:
        buckets[key(out[j])].append(j)
    rest_r: list[int] = []
    for i in ri:
        b = buckets.get(key(ref[i]))
        if b:
            pairs.append((i, b.pop(0)))
        else:
            rest_r.append(i)
    rest_o = [j for b in buckets.values() for j in b]
    if not rest_r or not rest_o:
        return pairs
    # pass 2: within the tolerance (catches values rounded to either side of a grid line)
    by_pitch: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for j in rest_o:
        by_pitch[out[j].pitch].append((out[j].onset, j))
    for lst in by_pitch.values():
        lst.sort()
    used: set[int] = set()
    for i in sorted(rest_r, key=lambda i: ref[i].onset):
        n = ref[i]
        lst = by_pitch.get(n.pitch)
        if not lst:
            continue
        k = bisect.bisect_left(lst, (n.onset - tol - 1e-9, -1))
        while k < len(lst) and lst[k][0] <= n.onset + tol + 1e-9:
            j = lst[k][1]
            if j not in used and (not durations or _near(out[j].duration, n.duration, tol)):
                used.add(j)
                pairs.append((i, j))
                break
            k += 1
    return pairs


def _match_pitch(ref: list[NoteEvent], out: list[NoteEvent], ri: list[int], oi: list[int]) -> list[tuple[int, int]]:
    buckets: dict[int, list[int]] = defaultdict(list)
    for j in sorted(oi, key=lambda j: out[j].onset):
        buckets[out[j].pitch].append(j)
    pairs = []
    for i in sorted(ri, key=lambda i: ref[i].onset):
        b = buckets.get(ref[i].pitch)
        if b:
            pairs.append((i, b.pop(0)))
    return pairs


def match_notes(
    ref: list[NoteEvent],
    out: list[NoteEvent],
    level: str,
    tol: float = TOLERANCE_Q,
    ri: list[int] | None = None,
    oi: list[int] | None = None,
) -> list[tuple[int, int]]:
    """One-to-one (ref index, out index) matches at a level: ``pod``, ``po`` or ``p``."""
    ri = list(range(len(ref))) if ri is None else ri
    oi = list(range(len(out))) if oi is None else oi
    if level == "p":
        return _match_pitch(ref, out, ri, oi)
    if level in ("pod", "po"):
        return match_timed(ref, out, ri, oi, level == "pod", tol)
    raise ValueError(f"unknown level {level!r}")


@dataclass
class PRF:
    matched: int
    n_ref: int
    n_out: int

    @property
    def precision(self) -> float:
        return self.matched / self.n_out if self.n_out else float("nan")

    @property
    def recall(self) -> float:
        return self.matched / self.n_ref if self.n_ref else float("nan")

    @property
    def f1(self) -> float:
        total = self.n_ref + self.n_out
        return 2 * self.matched / total if total else float("nan")

    def __add__(self, other: PRF) -> PRF:
        return PRF(self.matched + other.matched, self.n_ref + other.n_ref, self.n_out + other.n_out)


@dataclass
class TrackFidelity:
    ref_track: int
    name: str
    out_tracks: list[int]
    pod: PRF


@dataclass
class Fidelity:
    """The agreement of a source and its conversion; see the module docstring."""

    levels: dict[str, PRF]
    tracks: list[TrackFidelity]
    ref: list[NoteEvent]
    out: list[NoteEvent]
    pairs: list[tuple[int, int]]  # the pod matches (ref index, out index)
    unassigned_out_tracks: list[int] = field(default_factory=list)
    tolerance: float = TOLERANCE_Q

    @property
    def per_track(self) -> PRF:
        """The pod agreement summed over the aligned tracks (a note in the wrong voice counts as lost)."""
        total = PRF(0, 0, 0)
        for t in self.tracks:
            total = total + t.pod
        unassigned = sum(1 for n in self.out if n.track in self.unassigned_out_tracks)
        return total + PRF(0, 0, unassigned)

    def unmatched_ref(self) -> list[int]:
        done = {i for i, _ in self.pairs}
        return [i for i in range(len(self.ref)) if i not in done]

    def unmatched_out(self) -> list[int]:
        done = {j for _, j in self.pairs}
        return [j for j in range(len(self.out)) if j not in done]


def compare(ref: MidiNotes, out: MidiNotes, tol: float = TOLERANCE_Q) -> Fidelity:
    """Compare the note events of a source (`ref`) and of its conversion (`out`)."""
    r, o = ref.notes, out.notes
    levels = {lv: PRF(len(match_notes(r, o, lv, tol)), len(r), len(o)) for lv in ("po", "p")}
    pairs = match_notes(r, o, "pod", tol)
    levels = {"pod": PRF(len(pairs), len(r), len(o)), **levels}

    # align tracks: each output track goes to the source track it shares most (pitch, onset)
    # matches with, ties broken by shared (pitch, duration) pairs, time ignored, so that a voice
    # shifted in time still finds its part
    ref_by_track: dict[int, list[int]] = defaultdict(list)
    out_by_track: dict[int, list[int]] = defaultdict(list)
    for i, n in enumerate(r):
        ref_by_track[n.track].append(i)
    for j, n in enumerate(o):
        out_by_track[n.track].append(j)

    def pd(notes: list[NoteEvent], idx: list[int]) -> Counter:
        return Counter((notes[k].pitch, round(notes[k].duration * GRID)) for k in idx)

    ref_pd = {t: pd(r, ri) for t, ri in ref_by_track.items()}
    assign: dict[int, list[int]] = defaultdict(list)
    unassigned: list[int] = []
    for t_out, oi in sorted(out_by_track.items()):
        got = pd(o, oi)
        scores = {
            t_ref: (len(match_notes(r, o, "po", tol, ri, oi)), sum((ref_pd[t_ref] & got).values()))
            for t_ref, ri in ref_by_track.items()
        }
        # on a tie (a part doubled in unison) prefer the part with fewer voices so far
        best = max(scores, key=lambda t: (scores[t], -len(assign[t]), -t), default=None)
        if best is None or scores[best][1] == 0:
            unassigned.append(t_out)
        else:
            assign[best].append(t_out)
    tracks = []
    for t_ref, ri in sorted(ref_by_track.items()):
        oi = [j for t in assign.get(t_ref, []) for j in out_by_track[t]]
        tracks.append(
            TrackFidelity(
                t_ref,
                ref.track_names[t_ref],
                assign.get(t_ref, []),
                PRF(len(match_notes(r, o, "pod", tol, ri, oi)), len(ri), len(oi)),
            )
        )
    return Fidelity(levels, tracks, r, o, pairs, unassigned, tol)
