"""Splitting multi-tune ABC files."""

from __future__ import annotations

from clamp.abc.tunes import split_tunes


def test_split_with_file_header_inserts_header_fields_after_each_x():
    text = (
        "% abc file header\n"
        "%%pagewidth 21cm\n"
        "C:Trad.\n"
        "R:reel\n"
        "\n"
        "X:1\nT:First\nK:C\nabc|\n"
        "\n"
        "X:2\nT:Second\nK:G\ndef|\n\n\n"
    )
    assert split_tunes(text) == [
        "X:1\nC:Trad.\nR:reel\nT:First\nK:C\nabc|\n",
        "X:2\nC:Trad.\nR:reel\nT:Second\nK:G\ndef|\n",
    ]


def test_split_without_file_header():
    text = "X:1\nT:A\nK:C\nabc|\nX:2\nT:B\nK:D\nd|\n"
    assert split_tunes(text) == ["X:1\nT:A\nK:C\nabc|\n", "X:2\nT:B\nK:D\nd|\n"]


def test_x_must_start_a_line():
    # "X:" inside a line (here in a title) does not start a tune
    text = "X:1\nT:Track X:2\nK:C\nabc|\n"
    assert split_tunes(text) == ["X:1\nT:Track X:2\nK:C\nabc|\n"]


def test_no_x_line_is_one_tune():
    text = "T:Untitled\nK:C\nabc|\n"
    assert split_tunes(text) == [text]


def test_empty_and_blank_input():
    assert split_tunes("") == []
    assert split_tunes("  \n\n\t") == []


def test_last_tune_without_trailing_newline_gets_one():
    assert split_tunes("X:1\nK:C\nabc|") == ["X:1\nK:C\nabc|\n"]
