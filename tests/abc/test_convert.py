"""Real conversions to ABC (xml2abc, music21 for Humdrum, midi2abc) and their failure reasons."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path

import pytest

from clamp.abc.convert import ConversionError, to_abc
from clamp.config import default_benchmarks_dir

music21 = pytest.importorskip("music21")

# A hand-made type-0 MIDI file: one track, division 96, middle C (60) for one quarter note.
ONE_NOTE_MIDI = (
    b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60"
    b"MTrk\x00\x00\x00\x0c"
    b"\x00\x90\x3c\x40"  # note on C4
    b"\x60\x80\x3c\x40"  # 96 ticks later: note off
    b"\x00\xff\x2f\x00"  # end of track
)
NO_NOTES_MIDI = b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60MTrk\x00\x00\x00\x04\x00\xff\x2f\x00"


def _bars(abc: str) -> int:
    return abc.count("|")


def _assert_abc(abc: str) -> None:
    assert re.search(r"^X: ?\d", abc, re.MULTILINE), abc[:200]
    assert re.search(r"^K:", abc, re.MULTILINE), abc[:200]
    assert _bars(abc) >= 4


def _corpus_bytes(name: str) -> bytes:
    return Path(music21.corpus.getWork(name)).read_bytes()


def test_mxl_from_music21_corpus():
    abc = to_abc("mxl", _corpus_bytes("bwv66.6"))
    _assert_abc(abc)
    # the chorale has four voices (S, A, T, B)
    assert len(re.findall(r"^V:\d+ ", abc, re.MULTILINE)) == 4


def test_musicxml_uncompressed():
    # the same chorale, unzipped by hand, through the 'musicxml' path
    with zipfile.ZipFile(io.BytesIO(_corpus_bytes("bwv66.6"))) as zf:
        name = next(n for n in zf.namelist() if not n.startswith("META") and n.endswith(".xml"))
        xml = zf.read(name)
    abc = to_abc("musicxml", xml)
    _assert_abc(abc)
    assert abc == to_abc("mxl", _corpus_bytes("bwv66.6"))


def test_humdrum_from_music21_corpus():
    abc = to_abc("humdrum", _corpus_bytes("bach/bwv277.krn"))
    _assert_abc(abc)
    assert "Christ lag in Todesbanden" in abc


def test_hand_made_midi_one_middle_c():
    abc = to_abc("midi", ONE_NOTE_MIDI)
    assert abc.startswith("X:")
    assert re.search(r"^K:", abc, re.MULTILINE)
    body = [ln for ln in abc.split("\n") if ln and not re.match(r"^[A-Za-z]:|^%", ln)]
    # middle C is "C" in ABC; one quarter with L:1/8 is "C2"
    assert "".join(body).strip() == "C2"


def test_midi_output_has_no_temp_file_title():
    abc = to_abc("midi", ONE_NOTE_MIDI)
    assert "T: from" not in abc
    assert ".mid" not in abc
    assert "/tmp" not in abc


def test_vgmidi_file_converts():
    root = default_benchmarks_dir()
    csv_path = root / "vgmidi" / "vgmidi_labelled.csv" if root else None
    if csv_path is None or not csv_path.is_file():
        pytest.skip(f"VGMIDI benchmark not found (CLAMP_BENCHMARKS_DIR / ../shared/benchmarks): {csv_path}")
    with csv_path.open(newline="", encoding="utf-8") as fh:
        first = next(csv.DictReader(fh))
    midi = (csv_path.parent / first["midi"]).read_bytes()
    abc = to_abc("midi", midi)
    _assert_abc(abc)
    assert "T: from" not in abc
    assert str(csv_path.parent) not in abc


def _reason(fmt: str, content: bytes) -> str:
    with pytest.raises(ConversionError) as info:
        to_abc(fmt, content)
    return str(info.value)


def test_broken_midi():
    assert _reason("midi", b"MThd garbage").startswith("unparseable_midi")


def test_midi_without_notes():
    assert _reason("midi", NO_NOTES_MIDI) == "unparseable_midi: the MIDI file has no notes"


def test_broken_xml_not_xml():
    assert _reason("musicxml", b"this is not xml at all").startswith("unparseable_musicxml")


def test_broken_xml_run_through_xml2abc():
    reason = _reason("musicxml", b"<?xml version='1.0'?><score-partwise><part id='P1'><measure")
    assert reason.startswith("unparseable_musicxml: ")


def test_bad_mxl_zip():
    assert _reason("mxl", b"PK\x03\x04 not really a zip").startswith("unparseable_musicxml")


def test_mxl_zip_without_musicxml():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "no score here")
    assert _reason("mxl", buf.getvalue()).startswith("unparseable_musicxml")


def test_broken_humdrum():
    assert _reason("humdrum", b"garbage, no spines").startswith("unparseable_humdrum: ")
    assert _reason("humdrum", b"").startswith("unparseable_humdrum: ")


def test_humdrum_without_notes_is_rejected():
    # music21 parses this leniently (the bad note is skipped) and xml2abc then finds no notes;
    # the reason code is currently the MusicXML one (reported), so only the prefix is checked.
    assert _reason("humdrum", b"**kern\n*M4/4\n=1\n4q\n*-\n").startswith("unparseable_")


def test_unsupported_format():
    assert _reason("mp3", b"ID3") == "unsupported_format: mp3"


def test_utf16_musicxml_is_converted():
    from pathlib import Path

    from music21 import corpus

    from clamp.abc.convert import to_abc

    path = Path(corpus.__file__).parent / "trecento" / "PMFC_12_20-Agnus Dei Gherardello.xml"
    data = path.read_bytes()
    assert data[:2] == b"\xff\xfe"  # the corpus file is UTF-16
    abc = to_abc("musicxml", data)
    assert "X:" in abc and "K:" in abc and "|" in abc


def test_humdrum_failures_have_the_humdrum_reason():
    from clamp.abc.convert import ConversionError, to_abc

    with pytest.raises(ConversionError, match="^unparseable_humdrum"):
        to_abc("humdrum", b"**kern\n*M4/4\n=1\n4q\n*-\n")


def test_corrupt_mxl_deflate_stream_is_a_conversion_error():
    import io
    import zipfile

    from clamp.abc.convert import ConversionError, to_abc

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("score.xml", "<score-partwise>" + "x" * 5000 + "</score-partwise>")
    data = bytearray(buf.getvalue())
    start = data.index(b"score.xml") + len("score.xml")
    data[start + 10 : start + 40] = b"\xff" * 30  # damage the compressed stream
    with pytest.raises(ConversionError, match="^unparseable_musicxml"):
        to_abc("mxl", bytes(data))
