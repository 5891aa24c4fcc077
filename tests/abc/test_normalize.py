"""clamp-v1 ABC normalization (docs/abc-normalisation-and-patching.md), info-field extraction and
ASCII transliteration."""

from __future__ import annotations

import pytest

from clamp.abc.normalize import TEXT_FIELD_PREFIXES, extract_info_fields, normalize_abc, to_ascii

DROPPED = ["A", "B", "C", "D", "F", "H", "N", "O", "R", "r", "S", "T", "W", "w", "X", "Z"]


def test_dropped_prefixes_are_exactly_the_design_list():
    assert set(TEXT_FIELD_PREFIXES) == {f"{k}:" for k in DROPPED}


@pytest.mark.parametrize("key", DROPPED)
def test_each_text_info_field_is_dropped(key):
    tune = f"X:1\n{key}:some text here\nK:C\nabc|\n"
    assert normalize_abc(tune) == "K:C\nabc|\n"


def test_music_fields_and_group_are_kept():
    tune = (
        "X:1\nT:Title\nC:Composer\nL:1/8\nM:6/8\nQ:1/4=120\nP:AB\nI:linebreak $\nG:guitar\nV:1 treble\nK:D\nabc def|\n"
    )
    assert normalize_abc(tune) == "L:1/8\nM:6/8\nQ:1/4=120\nP:AB\nI:linebreak $\nG:guitar\nV:1 treble\nK:D\nabc def|\n"


def test_lyrics_lines_are_dropped():
    tune = "X:1\nK:C\nabc|\nw:la la la\nW:verse two\ndef|\n"
    assert normalize_abc(tune) == "K:C\nabc|\ndef|\n"


def test_blank_and_comment_lines_dropped_but_score_directive_kept():
    tune = "X:1\n\n% a whole-line comment\n%%MIDI program 1\n%%score (1 2)\n   \nK:C\n\t\nabc|\n"
    assert normalize_abc(tune) == "%%score (1 2)\nK:C\nabc|\n"


def test_inline_comment_keeps_text_before_last_percent_minus_one_char():
    # "ab cd|" + "% note": text before '%' is "ab cd|", minus one char -> "ab cd"
    assert normalize_abc("K:C\nab cd|% note\n") == "K:C\nab cd\n"
    # with a space before the %, only the space is lost
    assert normalize_abc("K:C\nab cd| % note\n") == "K:C\nab cd|\n"
    # the LAST '%' of the line is the cut point
    assert normalize_abc("K:C\na%b%c\n") == "K:C\na%\n"


def test_line_of_only_an_inline_comment_after_one_char_becomes_empty_but_is_kept():
    # "a%x": before the % is "a", minus one char -> "" (v1 keeps the now-empty line)
    assert normalize_abc("K:C\na%x\nbc|\n") == "K:C\n\nbc|\n"


def test_unidecode_transliteration():
    tune = 'X:1\nK:C\n"^Café"abc|"Größe"d|\n'
    assert normalize_abc(tune) == 'K:C\n"^Cafe"abc|"Grosse"d|\n'


def test_prefix_check_happens_after_transliteration():
    # a full-width T (U+FF34) transliterates to "T", so the line is then dropped as a title
    assert to_ascii("\uff34") == "T"
    assert normalize_abc("\uff34:Title\nK:C\nabc|\n") == "K:C\nabc|\n"


def test_output_ends_with_single_newline_and_empty_when_nothing_kept():
    assert normalize_abc("K:C\nabc|") == "K:C\nabc|\n"
    assert normalize_abc("X:1\nT:only text\n% comment\n\n") == ""
    assert normalize_abc("") == ""


def test_indented_info_line_is_not_dropped():
    # only the first two characters are looked at
    assert normalize_abc(" T:title\nK:C\n") == " T:title\nK:C\n"


def test_extract_info_fields_order_and_words():
    tune = "X:1\nT: My Tune \nC:Someone\nR:reel\nw: la la\nK:C\nabc|\nw: di da\nO:Ireland\nN:\nG:guitar\nM:4/4\n"
    assert extract_info_fields(tune) == [
        ("T", "My Tune"),
        ("C", "Someone"),
        ("R", "reel"),
        ("O", "Ireland"),
        ("W", "la la di da"),
    ]


def test_extract_info_fields_skips_x_and_empty_and_music_fields():
    assert extract_info_fields("X:12\nT:\nK:C\nL:1/8\nabc|\n") == []


def test_extract_info_fields_lowercase_remark_and_uppercase_words():
    tune = "X:1\nr:a remark\nW:first verse\nW:second verse\nK:C\n"
    assert extract_info_fields(tune) == [("r", "a remark"), ("W", "first verse second verse")]


def test_to_ascii_fast_path_returns_same_object():
    s = "X:1\nK:C\nabc|\n"
    assert to_ascii(s) is s


def test_to_ascii_transliterates():
    assert to_ascii("Café Größe Dvořák") == "Cafe Grosse Dvorak"
    assert to_ascii("Café").isascii()
