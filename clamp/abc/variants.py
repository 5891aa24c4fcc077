"""The same tune written otherwise, for the evaluation's input controls
(`clamp.eval.controls`): without its key, meter and unit-length lines and voice names
(`notes_only`), or with a chord symbol per bar (`add_chord_symbols`). Apply them to a tune in
canonical notation (`clamp.abc.notation.canonical_abc`)."""

from __future__ import annotations

import re
from functools import lru_cache

from clamp.abc.notation import (
    BLANK_LINE,
    FIELD_LINE,
    KEY_LINE,
    MUSIC_TOKEN,
    NOTE_GROUP,
    QUOTED_OR_FIELD,
    header_and_body,
    is_music_line,
)

_KML_LINE = re.compile(r"[KML]:")
_V_LINE = re.compile(r"(V:)[ \t]*([^\s%\]]+).*", re.DOTALL)
_V_INLINE = re.compile(r"\[V:[ \t]*([^\s%\]]+)[^\]\n]*\]")


def notes_only(abc: str) -> str:
    """The tune without its ``K:``, ``M:`` and ``L:`` field lines (header or body; inline
    ``[K:..]`` fields in music lines stay) and without voice names: a ``V:`` line (and an inline
    ``[V:..]`` field) keeps only its id (``V:1 name="Soprano" clef=treble`` -> ``V:1``).

    Without ``L:`` and ``M:`` the unit length is the default 1/8, so apply it to a tune at
    L:1/8 (`canonical_abc`) to keep its durations."""
    try:
        out: list[str] = []
        for line in abc.split("\n"):
            if _KML_LINE.match(line):
                continue
            if line.startswith("V:"):
                vm = _V_LINE.match(line)
                if vm is not None:
                    line = vm.group(1) + vm.group(2)
            elif "[V:" in line and not FIELD_LINE.match(line):
                line = _V_INLINE.sub(lambda m: f"[V:{m.group(1)}]", line)
            out.append(line)
        return "\n".join(out)
    except Exception:  # pragma: no cover - defensive: never raise on odd input
        return abc


# ----------------------------------------------------------------------------------------- chords added

_LETTERS = "CDEFGAB"
_NATURAL = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_MAJOR_STEPS = (0, 2, 4, 5, 7, 9, 11)
_MODES = {"maj": 0, "ion": 0, "dor": 1, "phr": 2, "lyd": 3, "mix": 4, "aeo": 5, "min": 5, "m": 5, "loc": 6}
_KEY = re.compile(r"[ \t]*(?:([A-G])([#b]?)[ \t]*([A-Za-z]*)|(H[Pp]))")
# degrees tried in this order when triads cover as many notes: I, V, IV, vi, ii, iii, vii
_DEGREE_ORDER = (0, 4, 3, 5, 1, 2, 6)
_QUALITY = {(4, 7): "", (3, 7): "m", (3, 6): "dim", (4, 8): "aug"}


@lru_cache(maxsize=256)
def _triads(key: str) -> tuple[tuple[frozenset[str], str], ...]:
    """The diatonic triads of a ``K:`` value, in tie-break order: (its letters, its name)."""
    m = _KEY.match(key)
    if m is None:
        tonic, accidental, mode = "C", "", 0
    elif m.group(4):  # Highland pipes: A mixolydian
        tonic, accidental, mode = "A", "", 4
    else:
        tonic, accidental = m.group(1), m.group(2)
        mode = _MODES.get(m.group(3).lower()[:3], 0)
    tonic_pc = (_NATURAL[tonic] + {"#": 1, "b": -1, "": 0}[accidental]) % 12
    steps = [(_MAJOR_STEPS[(mode + i) % 7] - _MAJOR_STEPS[mode]) % 12 for i in range(7)]
    start = _LETTERS.index(tonic)
    letters = [_LETTERS[(start + i) % 7] for i in range(7)]
    pcs = [(tonic_pc + s) % 12 for s in steps]
    triads = []
    for degree in _DEGREE_ORDER:
        root, third, fifth = degree, (degree + 2) % 7, (degree + 4) % 7
        quality = _QUALITY.get(((pcs[third] - pcs[root]) % 12, (pcs[fifth] - pcs[root]) % 12), "")
        shift = (pcs[root] - _NATURAL[letters[root]] + 6) % 12 - 6
        name = letters[root] + ("#" * shift if shift > 0 else "b" * -shift) + quality
        triads.append((frozenset((letters[root], letters[third], letters[fifth])), name))
    return tuple(triads)


def _best_chord(key: str, letters: list[str]) -> str:
    best_name, best_score = "", -1
    for members, name in _triads(key):
        score = sum(1 for x in letters if x in members)
        if score > best_score:
            best_name, best_score = name, score
    return best_name


_ANCHORS = frozenset({NOTE_GROUP, "open", "grace", "tuplet", "deco", "string", "sym"})
_ANCHOR_SYMS = frozenset("(~.") | frozenset("HIJKLMNOPQRSTUVWhijklmnopqrstuvw")


_CHORD_SYMBOL = re.compile(r'"\(?[A-G]')  # a quoted string that names a chord (not "^text", "4")


def _has_chord_symbols(lines: list[str], music: range) -> bool:
    for i in music:
        line = lines[i]
        if '"' in line and is_music_line(line):
            for m in QUOTED_OR_FIELD.finditer(line):
                if _CHORD_SYMBOL.match(m.group(0)):
                    return True
    return False


def add_chord_symbols(abc: str) -> str:
    """A chord symbol at the start of every bar of a tune that has none.

    Each bar with notes gets the diatonic triad of the key (``K:``, mode included: ``K:Ador``,
    ``K:Em``, ``K:Bb``; C major without one; inline and body key changes followed) whose root,
    third and fifth cover the most of the bar's notes (counted by letter, accidentals and
    octaves ignored, grace notes and rests left out); ties go to the tonic, then the dominant,
    subdominant, submediant, supertonic, mediant, leading note. It is written like ``"G"``,
    ``"Em"``, ``"Bdim"`` before the bar's first note (or its decoration, slur, grace group).
    Bars without notes get none. A tune that has chord symbols already (a quoted string that
    starts with a note letter; annotations such as ``"^text"`` and fingerings such as ``"4"``
    do not count), or whose music cannot be read, comes back unchanged.
    """
    try:
        lines = abc.split("\n")
        regions = header_and_body(lines)
        music = range(regions[0] + 1, regions[1]) if regions else range(len(lines))
        if _has_chord_symbols(lines, music):
            return abc
        key = ""
        if regions is not None:
            km = KEY_LINE.match(lines[regions[0]])
            key = lines[regions[0]][km.end() :] if km else ""  # type: ignore[union-attr]
        inserts: dict[int, list[tuple[int, str]]] = {}
        anchor: tuple[int, int] | None = None
        anchor_key = key
        letters: list[str] = []
        grace = False

        def close_bar() -> None:
            nonlocal anchor, letters
            if anchor is not None and letters:
                inserts.setdefault(anchor[0], []).append((anchor[1], _best_chord(anchor_key, letters)))
            anchor, letters = None, []

        for i in music:
            line = lines[i]
            if line.startswith("%") or BLANK_LINE.match(line):
                continue
            if FIELD_LINE.match(line):
                if line.startswith("K:"):
                    close_bar()
                    key = line[2:]
                elif line.startswith("V:"):
                    close_bar()
                continue
            for m in MUSIC_TOKEN.finditer(line):
                kind = m.lastgroup
                if kind == "bad":
                    if m.group(0) == "!":
                        continue
                    return abc
                if kind == "comment":
                    break
                if kind == "bar":
                    close_bar()
                    continue
                if kind == "field":
                    token = m.group(0)
                    if token.startswith(("[K:", "[V:")):
                        close_bar()
                        if token.startswith("[K:"):
                            key = token[3:-1]
                    continue
                if kind == "grace":
                    grace = True
                elif kind == "endgrace":
                    grace = False
                if anchor is None and kind in _ANCHORS and (kind != "sym" or m.group(0) in _ANCHOR_SYMS):
                    anchor, anchor_key = (i, m.start()), key
                if kind == NOTE_GROUP and not grace:
                    head = m.group("note")
                    if head not in ("z", "x"):
                        letters.append(head.lstrip("^_=")[0].upper())
        close_bar()
        if not inserts:
            return abc
        for i, places in inserts.items():
            line = lines[i]
            pieces, pos = [], 0
            for at, name in sorted(places):
                pieces.append(line[pos:at] + f'"{name}"')
                pos = at
            pieces.append(line[pos:])
            lines[i] = "".join(pieces)
        return "\n".join(lines)
    except Exception:  # pragma: no cover - defensive: never raise on odd input
        return abc


# ----------------------------------------------------------------------------------------- canonical form
