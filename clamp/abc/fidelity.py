"""Conversion fidelity: do a score's notes survive conversion to ABC?

The notes of the source and the notes of the ABC made from it are compared as note events
(pitch, onset, duration), with time in quarter notes, so that tempo (``Q:``, metronome marks,
tempo changes) does not matter:

- the ABC is rendered to MIDI by abcMIDI's ``abc2midi`` (shipped in the symusic wheel beside
  ``midi2abc``) and read with symusic in quarter notes (ticks / ticks per quarter). It is first
  made *playable as written* by `playable_abc`: decorations (trills and mordents, which
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

`classify` explains each lost note (`FAILURE_KINDS` x `FAILURE_CAUSES`); `measure` does it all
for one conversion. The figures measure the conversion *and* the two readers (music21 for the
source, abc2midi for the ABC): where they disagree the loss is counted all the same.
"""

from __future__ import annotations

import bisect
import copy
import re
import subprocess
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

TOLERANCE_Q = 1 / 48  # onset and duration tolerance, quarter notes (10 ticks at 480 per quarter)
MIDI_TOLERANCE_Q = 1 / 8  # for MIDI input: midi2abc quantizes onsets and durations
GRID = 48  # exact-match grid for the first, fast matching pass: 1/48 quarter
LEVELS = ("pod", "po", "p")
ABC2MIDI_ARGS = ("-NFER", "-NGRA", "-NGUI", "-silent")
DEFAULT_TIMEOUT_S = 60.0


class FidelityError(Exception):
    """The fidelity of one score could not be measured; the message is the one-line reason."""


# ----------------------------------------------------------------------------------------- notes


@dataclass(frozen=True)
class NoteEvent:
    pitch: int
    onset: float  # quarter notes from the start
    duration: float  # quarter notes
    track: int  # index into the score's non-empty, non-drum tracks


@dataclass
class MidiNotes:
    notes: list[NoteEvent]
    track_names: list[str]
    drum_notes: int = 0


def midi_notes(data: bytes) -> MidiNotes:
    """The note events of a MIDI file, in quarter notes; drum tracks and empty tracks left out."""
    import symusic

    try:
        score = symusic.Score.from_midi(data, ttype="quarter")
    except Exception as exc:
        raise FidelityError(f"unreadable MIDI: {str(exc)[:120]}") from None
    notes: list[NoteEvent] = []
    names: list[str] = []
    drums = 0
    for track in score.tracks:
        if track.is_drum:
            drums += len(track.notes)
            continue
        kept = [n for n in track.notes if n.duration > 1e-6]
        if not kept:
            continue
        index = len(names)
        names.append(track.name)
        notes.extend(NoteEvent(int(n.pitch), float(n.time), float(n.duration), index) for n in kept)
    return MidiNotes(notes, names, drums)


# ----------------------------------------------------------------------------------------- ABC -> MIDI


def abc2midi_binary() -> Path:
    from clamp.abc.convert import ConversionError, symusic_binary

    try:
        return symusic_binary("abc2midi")
    except ConversionError as exc:
        raise FidelityError(str(exc)) from None


_FIELD_LINE = re.compile(r"^(?:[A-Za-z+]:|%)")
# Things in a music line, in order of precedence: quoted strings (chord symbols, annotations),
# inline fields [K:...], !decorations! and +decorations+, bar lines with their repeat colons and
# ending numbers, a volta bracket [1 (a digit after '[' cannot start a chord), and one-character
# decorations. Everything else is kept.
_MUSIC_TOKEN = re.compile(
    r'(?P<string>"[^"]*")'
    r"|(?P<field>\[[A-Za-z]:[^\]]*\])"
    r"|(?P<deco>![^!\n]*!|\+[^+\n\s]*\+)"
    r"|(?P<bar>:*\[?\|[\]|]*:*(?:\[?\d+(?:[,-]\d+)*)?|::+)"
    r"|(?P<volta>\[\d+(?:[,-]\d+)*)"
    r"|(?P<short>[.~HLMOPSTuvJR])"
)


def _bar_without_repeats(token: str) -> str:
    core = re.sub(r"\[?\d+(?:[,-]\d+)*$", "", token).replace(":", "").replace("[|", "|")
    return core or "|"  # '::' -> a plain bar


_V_LINE = re.compile(r"^V:\s*(\S+)(.*)$")
_L_LINE = re.compile(r"^L:\s*\S+")


def has_voice_unit_lengths(abc: str) -> bool:
    """Whether the tune header gives some voice its own ``L:`` (a line right after its ``V:``)."""
    return _voice_unit_lengths(abc.split("\n")) is not None


def _voice_unit_lengths(lines: list[str]) -> tuple[str | None, dict[str, str], int] | None:
    """(the global L: line, voice id -> its own L: line, index of the first music line), when the
    header has per-voice L: lines; else None."""
    first_music = next(
        (i for i, ln in enumerate(lines) if ln.strip() and not _FIELD_LINE.match(ln)), len(lines)
    )
    global_l, own, voice = None, {}, None
    for ln in lines[:first_music]:
        if m := _V_LINE.match(ln):
            voice = m.group(1)
        elif _L_LINE.match(ln):
            if voice is None:
                global_l = ln.strip()
            else:
                own[voice] = ln.strip()
    return (global_l, own, first_music) if own else None


def _scope_unit_lengths(lines: list[str]) -> list[str]:
    """Make every voice's unit length explicit where the voice starts.

    xml2abc gives a voice its own unit length with an ``L:`` line right after the voice's ``V:``
    definition in the tune header, meaning that voice only (as abcm2ps reads it); abc2midi does
    not scope it so, and a voice defined after it in the header can take it over (music21 reads
    it as the tune's). Here each ``V:`` line is followed by that voice's own ``L:`` or, when it
    has none, the tune's.
    """
    found = _voice_unit_lengths(lines)
    if found is None:
        return lines
    global_l, own, _ = found
    out = []
    for ln in lines:
        if _L_LINE.match(ln) and global_l is not None and ln.strip() != global_l:
            continue  # a voice's own L: in the header: it is repeated after that voice's V: lines
        out.append(ln)
        if m := _V_LINE.match(ln):
            length = own.get(m.group(1), global_l)
            if length:
                out.append(length)
    return out


def playable_abc(
    abc: str, *, keep_repeats: bool = False, accidentals: str | None = None, voice_lengths: bool = True
) -> str:
    """A copy of the ABC that abc2midi plays as written: see the module docstring.

    Removes chord symbols and annotations, decorations (``!..!``, ``+..+`` and the one-character
    ones ``.~HLMOPSTuvJR``) and, unless `keep_repeats`, repeat colons and volta numbers from bar
    lines. Field lines, comments and inline fields are kept. After the ``X:`` line it adds
    ``%%MIDI chordattack 0`` (abc2midi otherwise starts each further note of a chord 10 ticks
    late) and, when `accidentals` is given, ``%%propagate-accidentals <accidentals>``
    (``pitch``, abc2midi's default: an accidental holds for the rest of the bar in every octave;
    ``octave``: in its own octave only, which is what xml2abc assumes). With `voice_lengths`,
    a voice's own ``L:`` in the header applies to that voice only (`_scope_unit_lengths`).
    """

    def music(line: str) -> str:
        def sub(m: re.Match[str]) -> str:
            kind = m.lastgroup
            if kind == "field":
                return m.group(0)
            if kind == "bar":
                return m.group(0) if keep_repeats else _bar_without_repeats(m.group(0))
            if kind == "volta":
                return m.group(0) if keep_repeats else ""
            return ""  # strings, decorations

        code, sep, comment = line.partition("%")
        return _MUSIC_TOKEN.sub(sub, code) + sep + comment

    lines = abc.split("\n")
    if voice_lengths:
        lines = _scope_unit_lengths(lines)
    out = []
    for line in lines:
        out.append(line if _FIELD_LINE.match(line) or not line.strip() else music(line))
        if line.startswith("X:"):
            out.append("%%MIDI chordattack 0")
            if accidentals:
                out.append(f"%%propagate-accidentals {accidentals}")
    return "\n".join(out)


_X_FIELD = re.compile(r"^X:\s*(\d+)", re.MULTILINE)


def abc_to_midi(
    abc: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    *,
    keep_repeats: bool = False,
    accidentals: str | None = None,
    voice_lengths: bool = True,
    playable: bool = True,
    errors: list[str] | None = None,
) -> bytes:
    """Render a one-tune ABC text to MIDI with abc2midi (after `playable_abc` unless not
    `playable`). abc2midi's error messages (notes it could not read) go to `errors`."""
    if len(_X_FIELD.findall(abc)) > 1:
        raise FidelityError("the ABC holds more than one tune")
    text = (
        playable_abc(abc, keep_repeats=keep_repeats, accidentals=accidentals, voice_lengths=voice_lengths)
        if playable
        else abc
    )
    with tempfile.TemporaryDirectory(prefix="clamp-abc2midi-") as tmp:
        src, out = Path(tmp) / "tune.abc", Path(tmp) / "tune.mid"
        src.write_text(text, encoding="latin-1", errors="replace")
        try:
            proc = subprocess.run(
                [str(abc2midi_binary()), str(src), *ABC2MIDI_ARGS, "-o", str(out)],
                capture_output=True,
                timeout=timeout_s,
                cwd=tmp,
            )
        except subprocess.TimeoutExpired:
            raise FidelityError(f"abc2midi timed out after {timeout_s:.0f}s") from None
        log = (proc.stdout + proc.stderr).decode("latin-1").splitlines()
        if errors is not None:
            errors.extend(ln.strip() for ln in log if ln.startswith("Error"))
        if not out.is_file():
            raise FidelityError(f"abc2midi wrote no MIDI ({(log[-1].strip() if log else 'no output')[:120]})")
        return out.read_bytes()


# ----------------------------------------------------------------------------------------- source -> MIDI


_XML_DIRECTION_OFFSET = re.compile(rb"<offset\b[^>]*>[^<]*</offset>")


def source_score(fmt: str, data: bytes):
    """The music21 score of a MusicXML (``musicxml``/``mxl``) or Humdrum (``humdrum``) source.

    MusicXML ``<offset>`` elements are removed first: they only move a direction (a dynamic, a
    tempo, a text) off its note, but music21 lengthens a measure whose last direction is moved
    past the barline, which shifts every later bar of the part.
    """
    from music21 import converter, stream

    from clamp.abc.convert import as_utf8_xml, unzip_mxl

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
        raise FidelityError(
            f"music21 cannot parse the source: {type(exc).__name__}: {str(exc)[:100]}"
        ) from None
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

    drop = [
        n
        for n in score.recurse().notes
        if n.duration.isGrace or isinstance(n, harmony.Harmony) or _is_hidden(n)
    ]
    for n in drop:
        n.activeSite.remove(n)


def count_hidden_notes(score) -> int:
    """Notes of the source not printed (MusicXML ``print-object="no"``): left out of the comparison."""
    from music21 import harmony

    return sum(
        len(n.pitches) for n in score.recurse().notes if _is_hidden(n) and not isinstance(n, harmony.Harmony)
    )


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


def _parts(score) -> list:
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
    for pi, part in enumerate(_parts(prepared)):
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
        for _ in score.recurse().getElementsByClass(
            (bar.Repeat, spanner.RepeatBracket, repeat.RepeatExpressionCommand)
        )
    )


# ----------------------------------------------------------------------------------------- matching


def _near(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol + 1e-9


def _match_timed(
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


def _match_pitch(
    ref: list[NoteEvent], out: list[NoteEvent], ri: list[int], oi: list[int]
) -> list[tuple[int, int]]:
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
        return _match_timed(ref, out, ri, oi, level == "pod", tol)
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
    for pi, part in enumerate(_parts(prepared)):
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
            current_clef = (
                m.clef or next(iter(m.recurse().getElementsByClass(clef.Clef)), None) or current_clef
            )
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
            where = (
                f"{self.source.part_name}, bar {self.bar if self.bar is not None else self.source.bar.number}"
            )
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
            found = _match_timed(moved, out, tr, to, True, tol)
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

    take("duration", _match_timed(ref, out, ri, oi, False, tol))
    pc_r = [NoteEvent(n.pitch % 12, n.onset, n.duration, n.track) for n in ref]
    pc_o = [NoteEvent(n.pitch % 12, n.onset, n.duration, n.track) for n in out]
    take("octave", _match_timed(pc_r, pc_o, ri, oi, True, tol))
    flat_r = [NoteEvent(0, n.onset, n.duration, n.track) for n in ref]
    flat_o = [NoteEvent(0, n.onset, n.duration, n.track) for n in out]
    take("pitch", _match_timed(flat_r, flat_o, ri, oi, True, tol))
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
