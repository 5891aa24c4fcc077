"""Conversion fidelity (clamp.diagnostics, rendering in clamp.abc.render): hand-computed cases
through abc2midi and music21."""

from __future__ import annotations

import pytest

from clamp.abc import render as R
from clamp.abc.convert import to_abc
from clamp.diagnostics import conversion as C
from clamp.diagnostics import fidelity as F

music21 = pytest.importorskip("music21")
from music21 import bar, chord, instrument, meter, note, stream, tempo  # noqa: E402
from music21.musicxml.m21ToXml import GeneralObjectExporter  # noqa: E402

EIGHT = ["C4", "D4", "E4", "F4", "G4", "A4", "B4", "C5"]  # two bars of quarter notes


def _part(pitches: list[str], *, ts: str = "4/4", name: str = "P") -> stream.Part:
    part = stream.Part()
    part.partName = name
    part.append(meter.TimeSignature(ts))
    for p in pitches:
        part.append(note.Note(p, quarterLength=1))
    part.makeMeasures(inPlace=True)
    return part


def _xml(*parts: stream.Part) -> bytes:
    score = stream.Score()
    for p in parts:
        score.insert(0, p)
    return GeneralObjectExporter(score).parse()


def _abc(body: str, header: str = "L:1/4\nM:4/4\nQ:1/4=120\nK:C") -> str:
    return f"X:1\nT:t\n{header}\n{body}\n"


def _levels(m: C.Measurement) -> dict[str, tuple[int, int, int]]:
    return {lv: (p.matched, p.n_ref, p.n_out) for lv, p in m.fidelity.levels.items()}


# ----------------------------------------------------------------------------------------- conversions


def test_converted_score_agrees_exactly():
    # two parts; a tie across the bar line, a triplet and a chord in the first part
    upper = stream.Part()
    upper.partName = "Upper"
    upper.append(meter.TimeSignature("3/4"))
    upper.append(note.Note("E5", quarterLength=2))
    tied = note.Note("G5", quarterLength=2)  # crosses the bar: makeMeasures splits and ties it
    upper.append(tied)
    for p in ("A5", "B5", "C6"):
        upper.append(note.Note(p, quarterLength=1 / 3))
    upper.append(chord.Chord(["C5", "E5", "G5"], quarterLength=3))
    upper.makeMeasures(inPlace=True)
    upper.makeTies(inPlace=True)
    lower = _part(["C3", "D3", "E3", "F3", "G3", "A3", "B3", "C4", "D4"], ts="3/4", name="Lower")
    xml = _xml(upper, lower)
    m = C.measure("musicxml", xml, to_abc("musicxml", xml))
    # upper: E5, G5 (one note, tie joined), 3 triplet notes, 3 chord notes = 8; lower: 9
    assert _levels(m)["pod"] == (17, 17, 17)
    assert m.fidelity.levels["pod"].f1 == 1.0
    assert m.fidelity.per_track.f1 == 1.0
    assert [t.name for t in m.fidelity.tracks] == ["Upper", "Lower"]
    assert m.failures == []


def test_transposing_instrument_is_compared_at_sounding_pitch():
    part = _part(["D5", "E5", "F#5", "G5"], name="Clarinet")
    part.insert(0, instrument.Clarinet())  # B-flat clarinet: sounds a major second lower
    part.atSoundingPitch = False
    xml = _xml(part)
    abc = to_abc("musicxml", xml)
    assert "transpose=-2" in abc
    m = C.measure("musicxml", xml, abc)
    assert _levels(m)["pod"] == (4, 4, 4)
    assert [n.pitch for n in m.fidelity.ref] == [72, 74, 76, 77]  # C5 D5 E5 F5 sounding


# ----------------------------------------------------------------------------------------- altered ABC


def test_one_wrong_pitch_and_one_wrong_duration():
    xml = _xml(_part(EIGHT))
    good = _abc("C D E F | G A B c |]")
    assert _levels(C.measure("musicxml", xml, good))["pod"] == (8, 8, 8)
    # E -> ^E (F, one semitone up); the second F is half as long, a rest fills its beat
    bad = _abc("C D ^E F/2 z/2 | G A B c |]")
    m = C.measure("musicxml", xml, bad)
    assert _levels(m) == {"pod": (6, 8, 8), "po": (7, 8, 8), "p": (7, 8, 8)}
    pod = m.fidelity.levels["pod"]
    assert pod.precision == pytest.approx(6 / 8)
    assert pod.recall == pytest.approx(6 / 8)
    assert pod.f1 == pytest.approx(0.75)
    assert sorted(f.label for f in m.failures) == ["duration: other", "pitch: accidental"]
    wrong = next(f for f in m.failures if f.kind == "pitch")
    assert (wrong.ref.pitch, wrong.out.pitch, wrong.source.bar.number) == (64, 65, 1)


def test_a_bar_too_long_shifts_the_rest_of_the_voice():
    xml = _xml(_part(EIGHT))
    m = C.measure("musicxml", xml, _abc("C D E F D | G A B c |]"))  # an extra D in bar 1
    assert _levels(m)["pod"] == (4, 8, 9)
    kinds = sorted(f.kind for f in m.failures)
    assert kinds == ["shift"] * 4
    assert {round(f.out.onset - f.ref.onset, 2) for f in m.failures} == {1.0}


def test_missing_note():
    xml = _xml(_part(EIGHT))
    m = C.measure("musicxml", xml, _abc("C D E F | G A B z |]"))
    assert _levels(m)["pod"] == (7, 8, 7)
    assert m.fidelity.levels["pod"].precision == 1.0
    assert [f.kind for f in m.failures] == ["missing"]


# ----------------------------------------------------------------------------------------- tempo, repeats


def test_tempo_does_not_matter():
    xml = _xml(_part(EIGHT))
    slow = _abc("C D E F | G A B c |]", "L:1/4\nM:4/4\nQ:1/4=40\nK:C")
    fast = _abc("C D E F | [Q:1/4=200] G A B c |]", "L:1/4\nM:4/4\nQ:1/4=90\nK:C")
    for abc in (slow, fast):
        assert _levels(C.measure("musicxml", xml, abc))["pod"] == (8, 8, 8)


def test_tempo_marks_in_the_source_do_not_matter():
    part = _part(EIGHT)
    part.measure(1).insert(0, tempo.MetronomeMark(number=50))
    part.measure(2).insert(0, tempo.MetronomeMark(number=180))
    xml = _xml(part)
    assert _levels(C.measure("musicxml", xml, _abc("C D E F | G A B c |]")))["pod"] == (8, 8, 8)


def test_midi_note_times_are_in_quarter_notes():
    abc = "C D E F | G A B c |]"
    a = R.midi_notes(R.abc_to_midi(_abc(abc, "L:1/4\nM:4/4\nQ:1/4=60\nK:C")))
    b = R.midi_notes(R.abc_to_midi(_abc(abc, "L:1/4\nM:4/4\nQ:1/4=150\nK:C")))
    assert [(n.pitch, round(n.onset, 2), round(n.duration, 2)) for n in a.notes] == [
        (n.pitch, round(n.onset, 2), round(n.duration, 2)) for n in b.notes
    ]
    assert [round(n.onset, 2) for n in a.notes] == [0, 1, 2, 3, 4, 5, 6, 7]


def test_repeats_in_notated_order_and_expanded():
    part = _part(EIGHT)
    part.measure(1).leftBarline = bar.Repeat(direction="start")
    part.measure(1).rightBarline = bar.Repeat(direction="end")
    xml = _xml(part)
    abc = to_abc("musicxml", xml)
    assert ":|" in abc
    m = C.measure("musicxml", xml, abc)
    # notated order: each bar once on both sides, though abc2midi and music21 both expand
    assert _levels(m)["pod"] == (8, 8, 8)
    # expanded on both sides: bar 1 twice
    assert m.expanded is not None
    assert (m.expanded.levels["pod"].matched, m.expanded.levels["pod"].n_ref) == (12, 12)
    # a repeat lost in the ABC costs nothing in notated order but shows when expanded: the
    # first pass of bar 1 matches, bar 2 comes a bar early
    m = C.measure("musicxml", xml, _abc("C D E F | G A B c |]"))
    assert _levels(m)["pod"] == (8, 8, 8)
    expanded = m.expanded.levels["pod"]
    assert (expanded.matched, expanded.n_ref, expanded.n_out) == (4, 12, 8)


# ----------------------------------------------------------------------------------------- pieces


def test_playable_abc_strips_what_abc2midi_would_play_differently():
    abc = _abc('|: "Am" !trill!C .D TE !fermata!F :|[1 G4 :|[2 "^text" A4 |]', "L:1/4\nM:4/4\n%%MIDI program 1\nK:C")
    out = R.playable_abc(abc)
    body = out.split("K:C\n", 1)[1]
    assert "%%MIDI program 1" in out and "%%MIDI chordattack 0" in out
    assert body.split("\n")[0].split() == ["|", "C", "D", "E", "F", "|", "G4", "|", "A4", "|]"]
    kept = R.playable_abc(abc, keep_repeats=True).split("K:C\n", 1)[1].split("\n")[0]
    assert kept.split() == ["|:", "C", "D", "E", "F", ":|[1", "G4", ":|[2", "A4", "|]"]
    assert "%%propagate-accidentals octave" in R.playable_abc(abc, accidentals="octave")


def test_abc2midi_accidentals_hold_in_every_octave_by_default():
    # =B, then B: abc2midi's default carries the natural to B in the next octave (71, not 70)
    abc = _abc("=B, C D E B c d e |]", "L:1/8\nM:4/4\nK:F")
    default = [n.pitch for n in R.midi_notes(R.abc_to_midi(abc)).notes]
    octave = [n.pitch for n in R.midi_notes(R.abc_to_midi(abc, accidentals="octave")).notes]
    assert default[4] == 71 and octave[4] == 70


def test_prf_and_matching_tolerance():
    ref = [R.NoteEvent(60, 0.0, 1.0, 0), R.NoteEvent(62, 1.0, 1.0, 0)]
    out = [R.NoteEvent(60, 0.01, 0.99, 0), R.NoteEvent(62, 1.1, 1.0, 0)]
    assert len(F.match_notes(ref, out, "pod")) == 1  # 0.01 is within 1/48, 0.1 is not
    assert len(F.match_notes(ref, out, "pod", tol=0.125)) == 2
    assert len(F.match_notes(ref, out, "p")) == 2
    prf = F.PRF(3, 4, 6)
    assert (prf.precision, prf.recall, prf.f1) == (0.5, 0.75, 0.6)


def test_multi_tune_abc_is_refused():
    with pytest.raises(R.RenderError, match="more than one tune"):
        R.abc_to_midi("X:1\nK:C\nC|\n\nX:2\nK:C\nD|\n")


def test_a_voice_unit_length_in_the_header_applies_to_that_voice_only():
    # xml2abc's layout (schoenberg/opus19/movement2.mxl): the voices defined in %%score order,
    # V:3's own L: right after its definition, V:2 defined after it with none of its own
    abc = "X:1\nL:1/8\nM:4/4\nK:C\nV:1 treble\nV:3 treble\nL:1/4\nV:2 bass\n"
    abc += "V:1\nCDEF GABc|\nV:2\nCDEF GABc|\nV:3\nx4|\n"
    assert R.has_voice_unit_lengths(abc)

    def v2_lengths(notes: R.MidiNotes) -> set[float]:
        return {round(n.duration, 1) for n in notes.notes if n.track == 1}

    assert v2_lengths(R.midi_notes(R.abc_to_midi(abc))) == {0.5}  # eighths, as xml2abc means
    # read as abc2midi reads the header by itself, V:2 gets V:3's quarter notes
    assert v2_lengths(R.midi_notes(R.abc_to_midi(abc, voice_lengths=False))) == {1.0}
