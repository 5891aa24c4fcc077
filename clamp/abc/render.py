"""ABC rendered to MIDI by abcMIDI's ``abc2midi`` (shipped in the symusic wheel beside
``midi2abc``), and the note events of a MIDI file in quarter notes.

`abc_to_midi` first makes the ABC *playable as written* (`playable_abc`): decorations (trills
and mordents, which abc2midi plays as ornament notes; staccato, which it plays half length) and
chord symbols (which it plays as accompaniment) are removed, fermatas and grace notes are
ignored (``-NFER -NGRA``), chord notes start together (``%%MIDI chordattack 0``), and by default
repeat signs and volta numbers are removed, so that abc2midi, which always expands repeats,
plays the bars once in notated order. The MIDI route of the evaluation controls, the notation
tests' oracle and the conversion-fidelity measurement (`clamp.diagnostics`) all render here.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ABC2MIDI_ARGS = ("-NFER", "-NGRA", "-NGUI", "-silent")
DEFAULT_TIMEOUT_S = 60.0


class RenderError(Exception):
    """A score could not be rendered or read; the message is the one-line reason."""


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
        raise RenderError(f"unreadable MIDI: {str(exc)[:120]}") from None
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
    from clamp.abc.converters import ConversionError, symusic_binary

    try:
        return symusic_binary("abc2midi")
    except ConversionError as exc:
        raise RenderError(str(exc)) from None


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
    first_music = next((i for i, ln in enumerate(lines) if ln.strip() and not _FIELD_LINE.match(ln)), len(lines))
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
        raise RenderError("the ABC holds more than one tune")
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
            raise RenderError(f"abc2midi timed out after {timeout_s:.0f}s") from None
        log = (proc.stdout + proc.stderr).decode("latin-1").splitlines()
        if errors is not None:
            errors.extend(ln.strip() for ln in log if ln.startswith("Error"))
        if not out.is_file():
            raise RenderError(f"abc2midi wrote no MIDI ({(log[-1].strip() if log else 'no output')[:120]})")
        return out.read_bytes()
