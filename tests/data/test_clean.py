"""Cleaning: decoding, control characters, text clean-up, candidates, rejection reasons, hashing."""

from __future__ import annotations

import hashlib

import pytest

from clamp.data.clean import (
    RejectedRecord,
    check_has_music,
    check_raw_bytes,
    content_hash,
    decode_text,
    music_body,
    strip_control_chars,
)
from clamp.text.clean import clean_text, text_candidates


def _reason(fn, *args, **kwargs) -> str:
    with pytest.raises(RejectedRecord) as info:
        fn(*args, **kwargs)
    return info.value.reason


# ----------------------------------------------------------------------------------------- decoding


def test_decode_utf8():
    assert decode_text("X:1\nT:Café\n".encode()) == "X:1\nT:Café\n"


def test_decode_utf8_bom_is_removed():
    assert decode_text(b"\xef\xbb\xbfX:1\n") == "X:1\n"


def test_decode_cp1252_fallback():
    assert decode_text(b"caf\xe9") == "café"
    # 0x93/0x94 are curly quotes in Windows-1252 (they would be C1 controls in Latin-1)
    assert decode_text(b"\x93hi\x94") == "\u201chi\u201d"


def test_decode_undecodable():
    # 0x81 0x8D 0x8F 0x90 0x9D are undefined in Windows-1252 and invalid UTF-8
    assert _reason(decode_text, b"\x81\x8d\x8f\x90\x9d") == "undecodable"


def test_decode_nul_means_binary():
    assert _reason(decode_text, b"X:1\x00\nK:C\n") == "binary"
    # the NUL check wins even when the bytes would decode
    assert _reason(decode_text, b"\x00") == "binary"


# ----------------------------------------------------------------------------------------- raw bytes


def test_check_raw_bytes_empty():
    assert _reason(check_raw_bytes, b"") == "empty"
    assert _reason(check_raw_bytes, b" \n\t\r ") == "empty"


def test_check_raw_bytes_too_large():
    assert _reason(check_raw_bytes, b"x" * 11, max_bytes=10) == "too_large"
    check_raw_bytes(b"x" * 10, max_bytes=10)  # the limit itself is allowed


def test_check_raw_bytes_ok():
    assert check_raw_bytes(b"X:1\nK:C\nabc|\n") is None


# ----------------------------------------------------------------------------------------- control characters


def test_strip_control_chars_few_are_removed():
    text = "a" * 99 + "\x07"  # 1 in 100: exactly the 1% limit, still allowed
    assert strip_control_chars(text) == "a" * 99


def test_strip_control_chars_keeps_tab_newline_and_normalizes_cr():
    assert strip_control_chars("a\tb\r\nc\rd") == "a\tb\nc\nd"


def test_strip_control_chars_many_rejected():
    assert _reason(strip_control_chars, "a" * 98 + "\x07\x07") == "control_characters"
    assert _reason(strip_control_chars, "\x01\x02\x03abc") == "control_characters"


def test_strip_control_chars_custom_ratio():
    assert strip_control_chars("ab\x07", max_ratio=0.5) == "ab"


def test_strip_control_chars_clean_text_unchanged():
    text = "X:1\nT:Café\nK:C\nabc|\n"
    assert strip_control_chars(text) == text


# ----------------------------------------------------------------------------------------- clean_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (r"Caf\'e", "Café"),
        (r"M\"uller", "Müller"),
        (r"Se\~nor", "Señor"),
        (r"Fran\ccois", "François"),
        (r"\`a la", "à la"),
        (r"Stra\ss e", "Straß e"),
        (r"\AEsir", "Æsir"),
    ],
)
def test_clean_text_abc_accent_escapes(raw, expected):
    assert clean_text(raw) == expected


def test_clean_text_accents_are_nfc_composed():
    assert clean_text(r"\'e") == "\u00e9"
    assert len(clean_text(r"\'e")) == 1


def test_clean_text_html():
    assert clean_text("<p>Bold <b>text</b> &amp; more&nbsp;here</p>") == "Bold text & more here"
    assert clean_text("caf&eacute; &#233;") == "café é"


def test_clean_text_wiki_markup():
    assert clean_text("[[Target|Shown]] and [[Plain]] ''it'' **b**") == "Shown and Plain it b"


def test_clean_text_whitespace_and_controls():
    assert clean_text("  a \n\t b\u200b  c  ") == "a b c"
    assert clean_text(" \n ") == ""
    assert clean_text("<br/>") == ""


# ----------------------------------------------------------------------------------------- text candidates


def test_text_candidates_labels_and_order():
    abc = "X:1\nT:The Tune\nC:J. S. Bach\nR:reel\nO:Ireland\nZ:someone\nN:a note\nK:C\nabc|\n"
    assert text_candidates(abc, ["A description."]) == [
        "Title: The Tune",
        "Composer: J. S. Bach",
        "Rhythm: reel",
        "Origin: Ireland",
        "Transcription: someone",
        "Notes: a note",
        "A description.",
    ]


def test_text_candidates_dedup_and_cleaning():
    abc = "X:1\nT:Caf\\'e\nT:Café\nK:C\nabc|\n"
    extra = ["  ", "title: café", "<i>Described</i> here", "Described here"]
    assert text_candidates(abc, extra) == ["Title: Café", "Described here"]


def test_text_candidates_words():
    abc = "X:1\nT:Song\nK:C\nabc|\nw:la la\nw:la\n"
    assert text_candidates(abc, []) == ["Title: Song", "Words: la la la"]


# ----------------------------------------------------------------------------------------- music checks


def test_check_has_music_header_only():
    assert _reason(check_has_music, "K:C\n") == "header_only"
    assert _reason(check_has_music, "%%score 1 2\nL:1/8\nM:4/4\nK:C\n") == "header_only"
    assert _reason(check_has_music, "") == "header_only"
    assert _reason(check_has_music, "K:C\n   \n") == "header_only"


def test_check_has_music_ok():
    assert check_has_music("K:C\nabc|\n") is None


def test_music_body():
    assert music_body("L:1/8\nK:C\n%%score 1\nabc|\nV:2\ndef|\n") == "abc|\ndef|"


def test_content_hash_is_whitespace_insensitive():
    a = content_hash("K:C\nabc |def|\n")
    assert a == content_hash("K:C\n abc|\tdef| \n")
    assert a == content_hash("K:Cabc|def|")
    assert a == hashlib.sha256(b"K:Cabc|def|").hexdigest()[:32]
    assert len(a) == 32


def test_content_hash_differs_for_different_music():
    assert content_hash("K:C\nabc|def|\n") != content_hash("K:C\nabc|deg|\n")
    assert content_hash("K:C\nabc|\n") != content_hash("K:G\nabc|\n")


def test_c1_mojibake_from_dos_text_is_repaired_not_quarantined():
    from clamp.data.clean import repair_c1_mojibake, strip_control_chars

    # an Essen title as stored in the corpus: cp437 bytes once decoded as Latin-1
    assert repair_c1_mojibake("T: Ach M\x81ller/M\x81ller als M\x94rder") == "T: Ach Müller/Müller als Mörder"
    assert strip_control_chars("X:1\nT: J\x84gerlust\nK:C\nCDEF|\n") == "X:1\nT: Jägerlust\nK:C\nCDEF|\n"
    assert repair_c1_mojibake("plain ascii") == "plain ascii"


# ----------------------------------------------------------------------------------------- cleaning rules
# (docs/shard-schema.md, "Captions and labels"; the values are real corpus fields)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Transcribed by Bob Safranek, rjs@gsp.org", "Transcribed by Bob Safranek"),
        ("Contributed by Ray Davies,  ray:davies99.freeserve.co.uk", "Contributed by Ray Davies"),
        ("John B. Walsh, 5/8/2002 <walsh:mat:h.ubc.ca>", "John B. Walsh, 5/8/2002"),
        ("Bob Puckette <BobP:at:workcom.com> 2003-3-7", "Bob Puckette 2003-3-7"),
        ("Jack Campin * www.campin.me.uk * 2009", "Jack Campin * 2009"),
        ("1999 by John Chambers <jc@eddie.mit.edu> http://eddie.mit.edu/~jc/music/abc/", "1999 by John Chambers"),
        ("see mailto:someone@example.org for more", "see for more"),
        ("Notes on the tune", "Notes on the tune"),
        ("Rhythm: jig", "Rhythm: jig"),  # a field name and a value are no address
    ],
)
def test_scrub_contacts(raw, expected):
    from clamp.text.clean import scrub_contacts

    assert scrub_contacts(raw) == expected


def test_addresses_are_scrubbed_from_every_text():
    abc = (
        "X:1\nT:Tune\nN:Ask fred@example.com or see https://tunes.example.org/t/1 for the source\n"
        "S:Bob's notebook, bob@example.net\nK:G\nGABc|\n"
    )
    texts = text_candidates(abc, ["A tune from www.example.com", "Mail <x@y.org> for more"])
    assert texts == ["Title: Tune", "Notes: Ask or see for the source", "A tune from", "Mail for more"]
    assert not any("@" in t or "http" in t or "www" in t for t in texts)


@pytest.mark.parametrize(
    "field",
    [
        "Z:Jack Campin * www.campin.me.uk * 2009",
        "Z:Transcribed by Trish O'Neil",
        'Z:"Transcribed by Bob Safranek, rjs@gsp.org"',
        "Z: Contributed 20080902 by John Chambers jc:jc.tzo.net",
        "Z: 1997 by John Chambers <jc@trillian.mit.edu>",
        "Z:Bob Puckette <bpuckette:msn.com> 2003-3-10",
        "Z:abc 1.6",
        "Z:ABCMUS 1.0",
        "Z:Copyright \u00a9",
        "T:PDF \u00a9 2004 Margaret Greentree - used by permission",
        "Z:Edition by Leo Schrade",
        "N:Fixed line wrapping [jc]",
        "N: +++BEREITS KODIERT ?+++",
        "N: A0611D",
        "N: C0046, C0495, C0136",
        "N: Melodievergleich zu Q0095, anderes Lied.",
        "N: Han",
        "N: Hui Han",
        "N: ]",
        "N:165",
        "B:db: -c 8 -b 21",
        "S: MM,]",
        "S: III, 482]",
        "T:bwv10.7.mxl",
        "T:Title",
        "T:2",
        "R: ???",
        "R: yyy]",
    ],
)
def test_boilerplate_codes_and_placeholders_are_dropped(field):
    assert text_candidates(f"X:1\nT:Kept\n{field}\nK:G\nGABc|\n", []) == ["Title: Kept"]


def test_what_is_kept_of_transcription_and_notes():
    abc = (
        'X:1\nT:Kept\nZ:All ornaments (~) are trills.\nN:"Moderate"\nN:"Slow" "collected by J. O\'Neill"\n'
        "N: in der Quelle mit einer 2. Stimme versehen\nS: PINCK, Louis: Verklingende Weisen Bd 4, Kassel 1939]\n"
        "K:G\nGABc|\n"
    )
    assert text_candidates(abc, []) == [
        "Title: Kept",
        "Transcription: All ornaments (~) are trills.",
        "Notes: Moderate",  # one quoted string is unquoted
        'Notes: "Slow" "collected by J. O\'Neill"',
        "Notes: in der Quelle mit einer 2. Stimme versehen",
        "Source: PINCK, Louis: Verklingende Weisen Bd 4, Kassel 1939",  # Essen's stray "]" removed
    ]


@pytest.mark.parametrize(
    ("r", "expected"),
    [
        ("reel", "Rhythm: reel"),
        ("REEL", "Rhythm: reel"),
        ("slipjig", "Rhythm: slip jig"),
        ("Slip Jig", "Rhythm: slip jig"),
        ("double jig", "Rhythm: jig"),
        (" Liebes - Lied", "Rhythm: song"),
        (" Xiaodiao]", "Rhythm: song"),
        (" Kunstmusik", "Rhythm: Kunstmusik"),  # unknown: the cleaned value
    ],
)
def test_rhythm_values_are_normalised(r, expected):
    assert text_candidates(f"X:1\nR:{r}\nK:G\nGABc|\n", []) == [expected]


def test_source_texts_in_field_form_get_the_field_rules():
    texts = text_candidates(
        "X:1\nK:G\nGABc|\n",
        ["Title: bwv66.6.mxl", "Title: BWV 66.6", "Composer: J.S. Bach", "Rhythm: Slip Jig", "Notes: T0003A"],
    )
    assert texts == ["Title: BWV 66.6", "Composer: J.S. Bach", "Rhythm: slip jig"]


def test_wrapped_essen_notes_are_joined_before_cleaning():
    # essenFolksong/ballad20.abc: a note wrapped over two N: lines; the continuation starts in lower case
    wrapped = "X:1\nN: Melodie mit Verzierung (Vorschlag) in\nN: der letzten Zeile\nK:G\nGABc|\n"
    assert text_candidates(wrapped, []) == ["Notes: Melodie mit Verzierung (Vorschlag) in der letzten Zeile"]
    # a note after one that ends a sentence, or one starting in upper case, stays a note of its own
    separate = "X:1\nN: Zweite Zeile = Refrain.\nN: eine neue Zeile\nN: Vorschlaege\nK:G\nGABc|\n"
    assert text_candidates(separate, []) == [
        "Notes: Zweite Zeile = Refrain.",
        "Notes: eine neue Zeile",
        "Notes: Vorschlaege",
    ]
    # the whole of a wrapped note is dropped when it refers to a catalogue number
    coded = "X:1\nN: Melodievergleich zu Q0051H, anderes Lied. Verzierung in\nN: der letzten Zeile\nK:G\nGABc|\n"
    assert text_candidates(coded, []) == []


def test_lyrics_aligned_to_notes_become_plain_text():
    abc = "X:1\nT:BWV 10.7\nK:G\nGABc|\nw: Mei- ne|Seel\u2019 er- hebt den|Her- ren;|* und\n"
    assert text_candidates(abc, []) == ["Title: BWV 10.7", "Words: Meine Seel\u2019 erhebt den Herren; und"]


def test_at_artefacts_of_the_corpus_are_repaired():
    assert text_candidates("X:1\nT:Leviat:han -- Hornpipe\nK:G\nGABc|\n", []) == ["Title: Leviathan -- Hornpipe"]
