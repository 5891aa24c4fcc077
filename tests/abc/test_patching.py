"""Bar patching (docs/abc-normalisation-and-patching.md): the WikiMT reference digests and hand-computed small cases."""

from __future__ import annotations

import hashlib
import statistics

import numpy as np
import pytest

from clamp.abc.patching import (
    PATCH_MODES,
    PATCH_SIZE,
    get_patch_mode,
    patchify,
    patchify_m3_text,
    patchify_v1_text,
    split_bars,
)

V1_DIGEST = "7f6aaeace8de18f791204f36bba6a51c9dcabd4d85026535a8bc7e4452cc70d0"
M3_DIGEST = "e50aab0427f6785b0ea81f0e9f4959df72c74e63d034c02e96fda32434dd0351"


# ----------------------------------------------------------------------------------------- helpers


def v1(piece: str) -> list[int]:
    """Expected clamp-v1 patch of one piece, written out from the spec (ord - 31, 97, pad 0)."""
    ids = [ord(c) - 31 for c in piece[:64]]
    if len(ids) < 64:
        ids.append(97)
    return ids + [0] * (64 - len(ids))


def m3(piece: str) -> list[int]:
    """Expected m3 patch of one piece: [1] + ords + [2], cut to 64, padded with 0."""
    ids = ([1] + [ord(c) for c in piece] + [2])[:64]
    return ids + [0] * (64 - len(ids))


V1_END = [97] * 64
M3_BEGIN = [1] * 64
M3_END = [1] + [2] * 63


def rows(data: bytes) -> list[list[int]]:
    assert len(data) % PATCH_SIZE == 0
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, PATCH_SIZE).tolist()


# ----------------------------------------------------------------------------------------- WikiMT digests


def _digest(items: list[dict], mode: str) -> tuple[str, list[int], list[float]]:
    pm = get_patch_mode(mode)
    h = hashlib.sha256()
    counts: list[int] = []
    ratios: list[float] = []
    for item in items:
        text = pm.prepare(item["music"])
        data = pm.patch_bytes(text, 512)
        assert len(data) % PATCH_SIZE == 0
        h.update(data)
        h.update(b"\xff")
        counts.append(len(data) // PATCH_SIZE)
        ratios.append(len(data) // PATCH_SIZE / len(text))
    return h.hexdigest(), counts, ratios


def test_wikimt_digest_clamp_v1(wikimt):
    assert len(wikimt) == 1010
    digest, counts, ratios = _digest(wikimt, "clamp-v1")
    assert sum(counts) == 48_555
    assert statistics.median(counts) == 41
    assert round(statistics.median(ratios), 4) == 0.0658
    assert digest == V1_DIGEST


def test_wikimt_digest_m3(wikimt):
    digest, counts, _ = _digest(wikimt, "m3")
    assert sum(counts) == 50_575
    assert statistics.median(counts) == 43
    assert digest == M3_DIGEST


def test_wikimt_modes_differ_and_first_tune_starts_as_specified(wikimt):
    music = wikimt[0]["music"]
    v = patchify(music, "clamp-v1")
    m = patchify(music, "m3")
    # clamp-v1 drops X:1, so the first patch is the L: header; m3 starts with the begin patch
    assert v[0].tolist() == v1(music.split("\n")[1])
    assert m[0].tolist() == M3_BEGIN
    assert m[1].tolist() == m3("X:1\n")
    assert v[-1].tolist() == V1_END
    assert m[-1].tolist() == M3_END


# ----------------------------------------------------------------------------------------- split_bars


def test_split_bars_each_barline_kind():
    body = "a|:b::c:|d[|e||f|]g|"
    assert split_bars(body) == ["a|:", "b::", "c:|", "d[|", "e||", "f|]", "g|"]


def test_split_bars_alternatives_in_order():
    # the leftmost match wins: ":|" starts before "|:" could, so ":" stays as text
    assert split_bars("a:|:b|") == ["a:|", ":b|"]
    # at one position the two-character barlines are tried before the bare "|"
    assert split_bars("a||]b|") == ["a||", "]b|"]
    assert split_bars("a|]b|:c|") == ["a|]", "b|:", "c|"]
    # two barlines in a row: the empty piece between them is dropped, so the pairing shifts
    # (reference behaviour: "|" pairs with the following text)
    assert split_bars("a::|b|") == ["a::", "|b"]


def test_split_bars_leading_barline_glued_and_trailing_text_dropped():
    assert split_bars("|abc|def|") == ["|abc|", "def|"]
    assert split_bars("|:abc:|") == ["|:abc:|"]
    assert split_bars("abc|de") == ["abc|"]
    assert split_bars("abc") == []
    assert split_bars("|") == []
    assert split_bars("") == []


# ----------------------------------------------------------------------------------------- clamp-v1


def test_v1_spec_ids_literal():
    # K=75 -> 44, ':'=58 -> 27, C=67 -> 36, then end-of-patch 97, then pad
    assert rows(patchify_v1_text("K:C\n"))[0] == [44, 27, 36, 97] + [0] * 60
    # the printable range ends: ' ' (32) -> 1, '~' (126) -> 95; '|' (124) -> 93
    assert rows(patchify_v1_text(" ~|\n"))[0][:5] == [1, 95, 93, 97, 0]


def test_v1_header_and_bars():
    out = rows(patchify_v1_text("K:C\nabc|def|\n"))
    assert out == [v1("K:C"), v1("abc|"), v1("def|"), V1_END]


def test_v1_body_lines_are_concatenated_without_separator():
    # the bar "c d|" spans two lines; the newline is not part of it
    out = rows(patchify_v1_text("K:C\nab|c\nd|\n"))
    assert out == [v1("K:C"), v1("ab|"), v1("cd|"), V1_END]


def test_v1_header_inside_body_flushes_bars():
    out = rows(patchify_v1_text("K:C\nab|cd|\nV:2\nef|\n"))
    assert out == [v1("K:C"), v1("ab|"), v1("cd|"), v1("V:2"), v1("ef|"), V1_END]


def test_v1_score_directive_is_a_header_patch():
    out = rows(patchify_v1_text("%%score 1 2\nK:C\nab|\n"))
    assert out == [v1("%%score 1 2"), v1("K:C"), v1("ab|"), V1_END]


def test_v1_short_bar_gets_end_of_patch_right_after():
    patch = rows(patchify_v1_text("ab|\n"))[0]
    assert patch[:4] == [ord("a") - 31, ord("b") - 31, ord("|") - 31, 97]
    assert patch[4:] == [0] * 60


def test_v1_bar_of_exactly_64_has_no_end_of_patch():
    bar = "a" * 63 + "|"
    patch = rows(patchify_v1_text(bar + "\n"))[0]
    assert patch == [ord("a") - 31] * 63 + [ord("|") - 31]
    assert 97 not in patch


def test_v1_long_bar_is_cut_at_64():
    bar = "a" * 70 + "|"
    out = rows(patchify_v1_text(bar + "\n"))
    assert out == [[ord("a") - 31] * 64, V1_END]


def test_v1_leading_barline_and_trailing_text():
    out = rows(patchify_v1_text("K:C\n|ab|cd|ef\n"))
    assert out == [v1("K:C"), v1("|ab|"), v1("cd|"), V1_END]


def test_v1_each_barline_kind_closes_a_patch():
    out = rows(patchify_v1_text("a|:b::c:|d[|e||f|]g|\n"))
    assert out == [v1(p) for p in ["a|:", "b::", "c:|", "d[|", "e||", "f|]", "g|"]] + [V1_END]


def test_v1_max_patches_truncates_including_end_patch():
    text = "K:C\nab|cd|ef|\n"
    assert len(rows(patchify_v1_text(text, 512))) == 5
    assert rows(patchify_v1_text(text, 2)) == [v1("K:C"), v1("ab|")]
    assert rows(patchify_v1_text(text, 5))[-1] == V1_END


def test_v1_non_printable_ascii_maps_to_pad():
    # tab (9) and DEL (127) are outside 32..126 -> 0
    patch = rows(patchify_v1_text("a\tb\x7f|\n"))[0]
    assert patch[:6] == [ord("a") - 31, 0, ord("b") - 31, 0, ord("|") - 31, 97]


def test_v1_non_ascii_maps_to_pad():
    patch = rows(patchify_v1_text("a\u00e9|\n"))[0]
    assert patch[:4] == [ord("a") - 31, 0, ord("|") - 31, 97]


def test_v1_empty_text_is_only_the_end_patch():
    assert rows(patchify_v1_text("")) == [V1_END]


def test_v1_prepare_is_section4_normalization():
    pm = get_patch_mode("clamp-v1")
    assert pm.vocab_size == 98 and pm.pad_id == 0 and pm.mask_id == 96
    assert pm.prepare("X:1\nT:t\nK:C\nab|\n") == "K:C\nab|\n"


# ----------------------------------------------------------------------------------------- m3


def test_m3_begin_header_bars_end():
    out = rows(patchify_m3_text("X:1\nK:C\nabc|def|\n"))
    assert out == [M3_BEGIN, m3("X:1\n"), m3("K:C\n"), m3("abc|"), m3("def|\n"), M3_END]


def test_m3_literal_bytes_of_a_bar():
    # [1] begin, a b |, newline 10, [2] end, pad
    assert m3("ab|\n")[:7] == [1, 97, 98, 124, 10, 2, 0]
    assert rows(patchify_m3_text("ab|\n"))[1][:7] == [1, 97, 98, 124, 10, 2, 0]


def test_m3_percent_percent_lines_are_headers_and_empty_lines_skipped():
    out = rows(patchify_m3_text("%%MIDI program 1\n\nK:C\nab|\n"))
    assert out == [M3_BEGIN, m3("%%MIDI program 1\n"), m3("K:C\n"), m3("ab|\n"), M3_END]


def test_m3_lines_are_split_separately_and_trailing_text_dropped():
    out = rows(patchify_m3_text("|ab|cd\nef|\n"))
    assert out == [M3_BEGIN, m3("|ab|\n"), m3("ef|\n"), M3_END]


def test_m3_line_without_barline_is_one_patch():
    out = rows(patchify_m3_text("abc\n"))
    assert out == [M3_BEGIN, m3("abc\n"), M3_END]


def test_m3_each_barline_kind():
    out = rows(patchify_m3_text("a|:b::c:|d[|e||f|]g|\n"))
    bars = ["a|:", "b::", "c:|", "d[|", "e||", "f|]", "g|\n"]
    assert out == [M3_BEGIN, *[m3(b) for b in bars], M3_END]


def test_m3_long_bar_cut_and_exact_fit():
    # a bar of 62 characters (not the line's last, so no newline) + begin + end = 64
    fit = rows(patchify_m3_text("a" * 61 + "|b|"))[1]
    assert fit == [1] + [97] * 61 + [124, 2]
    # 63 characters: the end id is cut off
    cut = rows(patchify_m3_text("a" * 62 + "|b|"))[1]
    assert cut == [1] + [97] * 62 + [124]
    # the line's last bar carries the newline: 61 + "|" + "\n" = 63 characters, end id cut off
    last = rows(patchify_m3_text("a" * 61 + "|\n"))[1]
    assert last == [1] + [97] * 61 + [124, 10]
    long = rows(patchify_m3_text("a" * 100 + "|"))[1]
    assert long == [1] + [97] * 63


def test_m3_max_patches_truncates():
    text = "K:C\nab|cd|ef|\n"
    assert len(rows(patchify_m3_text(text))) == 6
    assert rows(patchify_m3_text(text, 3)) == [M3_BEGIN, m3("K:C\n"), m3("ab|")]


def test_m3_prepare_drops_text_fields_and_transliterates_but_does_not_normalize():
    pm = get_patch_mode("m3")
    assert pm.vocab_size == 128 and pm.pad_id == 0 and pm.mask_id == 3
    # text fields go (they are the text side), comments and the rest stay as written
    assert pm.prepare("X:1\nT:Café\nK:C\n% café comment\nCDE|\n") == "X:1\nK:C\n% cafe comment\nCDE|\n"


# ----------------------------------------------------------------------------------------- API


@pytest.mark.parametrize("mode", sorted(PATCH_MODES))
def test_patchify_returns_uint8_n_by_64(mode):
    arr = patchify("X:1\nT:t\nK:C\nabc|def|\n", mode)
    assert arr.dtype == np.uint8
    assert arr.ndim == 2 and arr.shape[1] == 64
    # clamp-v1: K:C, abc|, def|, end; m3: begin, X:, K:, abc|, def|, end (T: is text, not music)
    assert arr.shape[0] == (4 if mode == "clamp-v1" else 6)


def test_patchify_max_patches():
    assert patchify("K:C\n" + "ab|" * 100, "clamp-v1", max_patches=10).shape == (10, 64)
    assert patchify("K:C\n" + "ab|" * 100, "m3", max_patches=10).shape == (10, 64)


def test_patchify_matches_hand_computed_v1():
    arr = patchify("X:1\nT:Title\nK:C\nabc|\n", "clamp-v1")
    assert arr.tolist() == [v1("K:C"), v1("abc|"), V1_END]


def test_unknown_mode_raises_value_error():
    with pytest.raises(ValueError, match="unknown patch mode"):
        get_patch_mode("clamp-v9")
    with pytest.raises(ValueError):
        patchify("K:C\nabc|\n", "nope")


def test_m3_keeps_text_fields_out_of_the_music():
    from clamp.abc.normalize import m3_text

    tune = "X:1\nT:Test Jig\nR:jig\nM:6/8\nK:D\n|:dAF DFA|\n"
    assert m3_text(tune) == "X:1\nM:6/8\nK:D\n|:dAF DFA|\n"
    rows_ = np.frombuffer(
        get_patch_mode("m3").patch_bytes(get_patch_mode("m3").prepare(tune), 512), dtype=np.uint8
    ).reshape(-1, 64)
    text = b"".join(bytes(r) for r in rows_)
    assert b"Test Jig" not in text and b"R:jig" not in text and b"K:D" in text
