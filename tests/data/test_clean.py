"""Cleaning: decoding, control characters, text clean-up, candidates, rejection reasons, hashing."""

from __future__ import annotations

import hashlib

import pytest

from clamp.data.clean import (
    RejectedRecord,
    check_has_music,
    check_raw_bytes,
    clean_text,
    content_hash,
    decode_text,
    music_body,
    strip_control_chars,
    text_candidates,
)


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
