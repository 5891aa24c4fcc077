"""Facts read from a tune's music lines, for captions: its bars, its pitch range, its voices.

Pitches are scientific pitch names of the written staff position, accidentals left out (`C4` is
ABC `C`, middle C; `c'` is `C6`)."""

from __future__ import annotations

import re

from clamp.text.fields import is_field

# --------------------------------------------------------------------------- the music

_QUOTED = re.compile(r'"[^"\n]*"')
_DECORATION = re.compile(r"![^!\n]*!|\+[^+\n\s]*\+")
_INLINE_FIELD = re.compile(r"\[[A-Za-z]:[^\]\n]*\]")
_GRACE = re.compile(r"\{[^}\n]*\}")
_NOTE = re.compile(r"([A-Ga-g])([',]*)")
_BAR_SPLIT = re.compile(r"([:|\]\[]*\|[:|\]\[0-9]*)")
_LETTERS = "CDEFGAB"


def _voice_id(value: str) -> str:
    return value.split()[0] if value.split() else ""


def music_lines(abc: str, first_voice_only: bool = False) -> list[str]:
    """The lines of music (no fields, comments, lyrics), with quoted text, decorations, inline
    fields and grace notes removed. With `first_voice_only`, only the first voice's lines."""
    out: list[str] = []
    voice: str | None = None
    first: str | None = None
    in_body = False
    for raw in abc.split("\n"):
        line = raw.split("%", 1)[0].rstrip() if "%" in raw else raw.rstrip()
        stripped = line.strip()
        if not stripped:
            continue
        if is_field(stripped):
            if stripped[0] == "V":
                voice = _voice_id(stripped[2:])
            continue
        m = re.match(r"^\[V:\s*([^\]\s]+)[^\]]*\]", stripped)
        if m:
            voice = m.group(1)
        if not in_body:
            in_body = True
            first = voice
        if first_voice_only and first is not None and voice != first:
            continue
        text = _QUOTED.sub(" ", stripped)
        text = _DECORATION.sub(" ", text)
        text = _INLINE_FIELD.sub(" ", text)
        out.append(_GRACE.sub(" ", text))
    return out


_LENGTH = re.compile(r"([A-Ga-gzx])[,']*(\d*)(/*)(\d*)")
_CHORD = re.compile(r"\[([\^_=]*[A-Ga-g][,']*\d*/*\d*)[^\]]*\](\d*/*\d*)")


def _duration(piece: str) -> float:
    """Written length of a piece of music in `L:` units: chords count as their first note,
    broken rhythm and tuplets are ignored (a rough measure, enough to tell a pick-up)."""
    piece = _CHORD.sub(lambda m: m.group(1) + m.group(2), piece)
    total = 0.0
    for _, num, slashes, den in _LENGTH.findall(piece):
        length = float(num) if num else 1.0
        if slashes:
            length /= float(den) if den else 2.0 ** len(slashes)
        total += length
    return total


_SECTION_END = re.compile(r"\|\||:\||\|\]|::|\[\||\|:")


def n_bars(abc: str) -> int:
    """Bars written in the tune (its first voice), repeats not unfolded.

    The music is cut at bar lines; every piece holding a note or rest is a bar, except a
    pick-up: a piece at the start or right after a section mark (`||`, `:|`, `|]`, `|:`) lasting
    less than half the bar after it (note lengths as written, in units of `L:`).
    """
    body = " ".join(music_lines(abc, first_voice_only=True))
    parts = _BAR_SPLIT.split(body)  # piece, bar line, piece, bar line, ...
    pieces, seps = parts[0::2], ["^", *parts[1::2]]
    counts = [_duration(p) for p in pieces]
    bars = 0
    for i, count in enumerate(counts):
        if not count:
            continue
        after = next((c for c in counts[i + 1 :] if c), 0)
        if (seps[i] == "^" or _SECTION_END.search(seps[i])) and count * 2 < after:
            continue  # a pick-up
        bars += 1
    return bars


# a written note's height: octave * 7 + step (C=0 ... B=6), ABC `C` being C4
_STEP = {letter: i for i, letter in enumerate(_LETTERS)}
_BASE = {**{c: 4 * 7 + i for c, i in _STEP.items()}, **{c.lower(): 5 * 7 + i for c, i in _STEP.items()}}


def pitch_range(abc: str) -> tuple[str, str] | None:
    """Lowest and highest written note (`("D4", "B5")`) over all voices, from a plain scan of
    the music lines; chord symbols and annotations in quotes, `!...!` decorations, inline
    fields, grace notes, lyrics and header lines are skipped. None when there is no note."""
    heights = [
        _BASE[letter] + (7 * (marks.count("'") - marks.count(",")) if marks else 0)
        for line in music_lines(abc)
        for letter, marks in _NOTE.findall(line)
    ]
    if not heights:
        return None
    low, high = min(heights), max(heights)
    return f"{_LETTERS[low % 7]}{low // 7}", f"{_LETTERS[high % 7]}{high // 7}"


_NM = re.compile(r'\b(?:nm|name)\s*=\s*"([^"]*)"')


def _clean_voice_name(name: str) -> str:
    # xml2abc writes part names with the MusicXML file's line breaks: nm="\n\t\t\t:Violin I"
    name = name.replace("\\n", " ").replace("\\t", " ")
    name = re.sub(r"\s+", " ", name).strip().lstrip(":").strip()
    return name


def voices(abc: str) -> list[str]:
    """One entry per voice of the tune, in order of first appearance: its name (`nm="..."` or
    `name="..."`, as xml2abc and others write it), else its `V:` id. [] without `V:` fields."""
    names: dict[str, str] = {}
    for raw in abc.split("\n"):
        line = raw.strip()
        if not line.startswith("V:"):
            continue
        vid = _voice_id(line[2:])
        if not vid:
            continue
        m = _NM.search(line)
        name = _clean_voice_name(m.group(1)) if m else ""
        if vid not in names or (name and names[vid] == vid):
            names[vid] = name or names.get(vid) or vid
    return list(names.values())
