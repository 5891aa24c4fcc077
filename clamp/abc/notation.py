"""Text transforms of one ABC tune: the same music in another notation.

The model should read the same music however it is written, and the evaluation scores tunes
rewritten in other notations (controls, `clamp.eval.controls`). Every function takes the text of
one tune (header lines such as ``X:1``, ``T:..``, ``M:6/8``, ``L:1/8``, ``K:D``, then music lines)
and never raises: what it cannot handle safely it returns unchanged.

- `canonical_header`: no spaces after the colon of field lines, ``M:C``/``M:C|`` as ``4/4``/``2/2``;
- `strip_chord_symbols`: chord symbols and annotations (quoted strings) out of the music lines;
- `rewrite_unit_length`: another unit note length (``L:``), every duration scaled so the music
  is the same (`rewrite_unit_length_checked` also says whether it could);
- `canonical_abc`: the form the models read (`canonical_header`, `strip_chord_symbols`, ``L:1/8``).

The rewrites of the evaluation's controls (notes only, chord symbols added) are in
`clamp.abc.variants`.

How a tune is read (ABC 2.1, as abc2midi plays it):

- the header runs to the first ``K:`` line; the body from there to the first blank line (which
  ends a tune in ABC: anything after it is left as it is); ``%`` starts a comment;
- the unit note length without an ``L:`` field is 1/16 when the header's meter is below 3/4, else
  1/8 (``M:C`` is 4/4, ``M:C|`` 2/2, no meter or ``M:none`` gives 1/8); a meter change in the
  body does not change it;
- an ``L:`` field (line or inline ``[L:..]``) sets the unit length of the voice it is in; a voice
  without an ``L:`` of its own follows the tune's (the one set before any ``V:``). An ``L:``
  line after a ``V:`` line of the header is that voice's own, as in xml2abc's output and
  `clamp.abc.render.playable_abc`;
- a chord's length is the length after its ``]`` when there is one (abc2midi then ignores the
  lengths inside), else its first note's.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

__all__ = [
    "canonical_abc",
    "canonical_header",
    "rewrite_unit_length",
    "rewrite_unit_length_checked",
    "strip_chord_symbols",
]

# ----------------------------------------------------------------------------------------- lines

FIELD_LINE = re.compile(r"[A-Za-z+]:")  # matched at the start of a line
KEY_LINE = re.compile(r"K:")
BLANK_LINE = re.compile(r"[ \t\r]*$")


class _Unparsed(Exception):
    """The tune holds something this module does not read safely."""


def header_and_body(lines: list[str]) -> tuple[int, int] | None:
    """(index of the first ``K:`` line, index where the body ends: the first blank line after it,
    or the number of lines); None when there is no ``K:`` line."""
    key = next((i for i, ln in enumerate(lines) if KEY_LINE.match(ln)), None)
    if key is None:
        return None
    end = next((i for i in range(key + 1, len(lines)) if BLANK_LINE.match(lines[i])), len(lines))
    return key, end


def _music_line_indices(lines: list[str]) -> range:
    """The lines that may hold music: the body, or every line of a tune without ``K:``."""
    regions = header_and_body(lines)
    return range(regions[0] + 1, regions[1]) if regions else range(len(lines))


def is_music_line(line: str) -> bool:
    return not (FIELD_LINE.match(line) or line.startswith("%") or BLANK_LINE.match(line))


# ----------------------------------------------------------------------------------------- header

_FIELD_SPACE = re.compile(r"^([A-Za-z]):[ \t]+", re.MULTILINE)
_COMMON_TIME = re.compile(r"^M:[ \t]*C(\|?)(?=[ \t\r]*(?:%|$))", re.MULTILINE)
_INLINE_COMMON_TIME = re.compile(r"\[M:[ \t]*C(\|?)[ \t]*\]")


def _meter_fraction(m: re.Match[str]) -> str:
    return "2/2" if m.group(1) else "4/4"


def canonical_header(abc: str) -> str:
    """Field lines without spaces after the colon (``M: 6/8`` -> ``M:6/8``: midi2abc writes
    them so, the training corpus does not) and common time as a fraction: ``M:C`` -> ``M:4/4``,
    ``M:C|`` -> ``M:2/2``, also in inline ``[M:C]`` fields. Nothing else changes."""
    try:
        out = _FIELD_SPACE.sub(r"\1:", abc)
        out = _COMMON_TIME.sub(lambda m: "M:" + _meter_fraction(m), out)
        if "[M:" in out:
            out = _INLINE_COMMON_TIME.sub(lambda m: "[M:" + _meter_fraction(m) + "]", out)
        return out
    except Exception:  # pragma: no cover - regexes on a str do not fail
        return abc


# ----------------------------------------------------------------------------------------- chord symbols

# In a music line: a quoted string, an inline field (whose values may hold quotes, as in
# [V:1 name="x"]), a comment, or a lone quote (an unterminated string).
QUOTED_OR_FIELD = re.compile(r'"[^"\n]*"|\[[A-Za-z]:[^\]\n]*\]|%.*|"')


def _strip_line(line: str) -> str | None:
    """The line without its quoted strings; None when it has an unterminated one."""
    pieces: list[str] = []
    pos = 0
    for m in QUOTED_OR_FIELD.finditer(line):
        token = m.group(0)
        if token[0] != '"':
            continue  # an inline field or a comment: kept
        if len(token) == 1:
            return None
        pieces.append(line[pos : m.start()])
        pos = m.end()
    if not pieces:
        return line
    pieces.append(line[pos:])
    return "".join(pieces)


def strip_chord_symbols(abc: str) -> str:
    """Every double-quoted string (chord symbols ``"Am7"``, annotations ``"^text"``) out of the
    music lines. Field lines (``T:``, ``w:`` ...), comments and inline fields keep theirs; a line
    with an unterminated quote is left as it is; a line left empty is dropped (a blank line
    would end the tune)."""
    if '"' not in abc:
        return abc
    try:
        lines = abc.split("\n")
        out: list[str] = []
        music = _music_line_indices(lines)
        for i, line in enumerate(lines):
            if i in music and '"' in line and is_music_line(line):
                stripped = _strip_line(line)
                if stripped is not None:
                    if BLANK_LINE.match(stripped):
                        continue
                    line = stripped
            out.append(line)
        return "\n".join(out)
    except Exception:  # pragma: no cover - defensive: never raise on odd input
        return abc


# ----------------------------------------------------------------------------------------- music tokens

_LEN = r"\d*(?:/+\d*)?"
_VOLTA = r"\d+(?:[,\-]\d+)*"
MUSIC_TOKEN = re.compile(
    r"(?P<ws>[ \t\r]+)"
    rf"|(?P<note>(?:\^\^?|__?|=)?[A-Ga-g][,']*|[zx])(?P<len>{_LEN})"
    rf"|(?P<bar>\.?:*\[?\|[|\]]*:*(?:{_VOLTA})?|:{{2,}}(?:{_VOLTA})?)"
    r'|(?P<string>"[^"\n]*")'
    r"|(?P<field>\[[A-Za-z]:[^\]\n]*\])"
    rf"|(?P<volta>\[{_VOLTA})"
    r"|(?P<open>\[)"
    rf"|(?P<close>\])(?P<clen>{_LEN})"
    r"|(?P<grace>\{/?)"
    r"|(?P<endgrace>\})"
    r"|(?P<tuplet>\(\d+(?::\d*){0,2})"
    r"|(?P<deco>![^!\s|]*!|\+[^+\s|]*\+)"
    r"|(?P<mrest>[ZX]\d*)"
    r"|(?P<sym>[()\-<>.~`&$y\\H-Wh-w])"
    r"|(?P<comment>%.*)"
    r"|(?P<bad>[\s\S])"
)
# a note as `Match.lastgroup` names it: its last group is its length
NOTE_GROUP = "len"
# +..+ holding nothing but note characters may be an ABC 1.6 chord (+CEG+), not a decoration
_OLD_CHORD = re.compile(r"\+[\^_=A-Ga-g,'\d/]+\+")
_DYNAMICS = frozenset({"+f+", "+ff+", "+fff+", "+ffff+"})


@lru_cache(maxsize=4096)
def _length(text: str) -> Fraction:
    """The multiplier a length suffix writes (``""`` 1, ``3/2``, ``/`` 1/2, ``//`` 1/4, ``/4``)."""
    if not text:
        return Fraction(1)
    digits, _, rest = text.partition("/")
    num = int(digits) if digits else 1
    if "/" not in text:
        den = 1
    else:
        slashes = 1 + len(rest) - len(rest.lstrip("/"))
        tail = rest.lstrip("/")
        if tail:
            if slashes > 1:
                raise _Unparsed(f"length {text!r}")
            den = int(tail)
        else:
            den = 2**slashes
    if num == 0 or den == 0:
        raise _Unparsed(f"length {text!r}")
    return Fraction(num, den)


@lru_cache(maxsize=4096)
def _spell(value: Fraction) -> str:
    """The minimal spelling of a length multiplier: 1 -> '', 2 -> '2', 1/2 -> '/', 1/4 -> '/4',
    3/2 -> '3/2'."""
    n, d = value.numerator, value.denominator
    if d == 1:
        return "" if n == 1 else str(n)
    if n == 1:
        return "/" if d == 2 else f"/{d}"
    return f"{n}/{d}"


# ----------------------------------------------------------------------------------------- unit length

_L_VALUE = r"[ \t]*(\d+)(?:/(\d+))?[ \t\r]*"
_L_LINE = re.compile(rf"L:{_L_VALUE}(?:%.*)?$")
_L_INLINE = re.compile(rf"\[L:{_L_VALUE}\]")
_L_LINE_VALUE = re.compile(r"^(L:[ \t]*)\d+(?:/\d+)?")
_V_ID = re.compile(r"V:[ \t]*([^\s%\]]+)")
_M_VALUE = re.compile(r"M:[ \t]*([^%]*)")
_METER = re.compile(r"\(?(\d+(?:\+\d+)*)\)?/(\d+)")


def _fraction(num: str, den: str | None) -> Fraction:
    if int(num) == 0 or (den is not None and int(den) == 0):
        raise _Unparsed("unit length 0")
    return Fraction(int(num), int(den) if den is not None else 1)


def _default_unit(meter: str | None) -> Fraction:
    """The unit length without an ``L:`` field, from the header's meter (ABC 2.1)."""
    value = (meter or "").strip()
    if value in ("", "none", "C", "C|"):
        return Fraction(1, 8)
    m = _METER.fullmatch(value.replace(" ", ""))
    if m is None:
        raise _Unparsed(f"meter {value!r}")
    num = sum(int(x) for x in m.group(1).split("+"))
    if int(m.group(2)) == 0:
        raise _Unparsed(f"meter {value!r}")
    return Fraction(1, 16) if Fraction(num, int(m.group(2))) < Fraction(3, 4) else Fraction(1, 8)


class _Units:
    """The unit length of each voice, as fields set it (see the module docstring)."""

    def __init__(self, tune: Fraction) -> None:
        self.tune = tune  # the tune's, followed by voices without their own
        self.own: dict[str, Fraction] = {}
        self.voice: str | None = None

    def current(self) -> Fraction:
        return self.own.get(self.voice, self.tune) if self.voice is not None else self.tune

    def set(self, value: Fraction) -> None:
        if self.voice is None:
            self.tune = value
        else:
            self.own[self.voice] = value


def _scale_table(factor: Fraction) -> dict[str, str]:
    """length suffix -> its spelling once scaled by `factor`, filled as lengths are met."""
    table = _SCALE_TABLES.get(factor)
    if table is None:
        if len(_SCALE_TABLES) > 256:
            _SCALE_TABLES.clear()
        table = _SCALE_TABLES[factor] = {}
    return table


_SCALE_TABLES: dict[Fraction, dict[str, str]] = {}
# group numbers of MUSIC_TOKEN, as `Match.lastindex` gives them (a note's and a chord end's
# last group is their length)
_G = dict(MUSIC_TOKEN.groupindex)
_G_LEN, _G_CLEN = _G["len"], _G["clen"]
_G_PASS = frozenset(_G[k] for k in ("ws", "bar", "string", "volta", "mrest", "tuplet"))
_G_FIELD, _G_SYM, _G_OPEN, _G_GRACE, _G_ENDGRACE, _G_DECO, _G_COMMENT = (
    _G[k] for k in ("field", "sym", "open", "grace", "endgrace", "deco", "comment")
)


def _rewrite_music_line(line: str, units: _Units, target: Fraction, target_text: str, guard: bool) -> str:
    """One music line with every duration scaled from the current unit length to `target`.
    `guard`: music outside any voice is ambiguous here (raise). Only what changes is rewritten:
    the rest of the line is copied in slices."""
    factor = units.current() / target
    table = _scale_table(factor)
    out: list[str] = []
    append = out.append
    pos = 0  # line[:pos] is in `out`
    chord: list[tuple[int, int, Fraction]] | None = None  # (start, end, length) of its notes' lengths
    grace = False
    for m in MUSIC_TOKEN.finditer(line):
        kind = m.lastindex
        if kind == _G_LEN:  # a note or rest
            if guard:
                raise _Unparsed("music outside the voices that have their own unit length")
            text = m.group(_G_LEN)
            if chord is not None:
                chord.append((m.start(_G_LEN), m.end(_G_LEN), _length(text)))
                continue
            new = table.get(text)
            if new is None:
                new = table[text] = _spell(_length(text) * factor)
            if new != text:
                append(line[pos : m.start(_G_LEN)])
                append(new)
                pos = m.end()
        elif kind in _G_PASS:
            continue
        elif kind == _G_CLEN:  # the end of a chord
            if not chord:
                raise _Unparsed("chord end without a chord, or an empty chord")
            outer = m.group(_G_CLEN)
            lengths = {length for _, _, length in chord}
            if outer:
                if lengths != {1}:
                    # readers disagree: abc2midi ignores the inner lengths, the standard multiplies
                    raise _Unparsed("chord with lengths inside and after it")
                new_outer = _spell(_length(outer) * factor)
                inner = [(a, b, "") for a, b, _ in chord]
            elif len(lengths) == 1:  # the same length for every note: written after the chord
                new_outer = _spell(lengths.pop() * factor)
                inner = [(a, b, "") for a, b, _ in chord]
            else:
                new_outer = ""
                inner = [(a, b, _spell(length * factor)) for a, b, length in chord]
            for a, b, text in inner:
                append(line[pos:a])
                append(text)
                pos = b
            append(line[pos : m.start(_G_CLEN)])
            append(new_outer)
            pos = m.end()
            chord = None
        elif kind == _G_FIELD:
            token = m.group(0)
            if token.startswith("[L:"):
                lm = _L_INLINE.fullmatch(token)
                if lm is None:
                    raise _Unparsed(f"inline field {token!r}")
                units.set(_fraction(lm.group(1), lm.group(2)))
                append(line[pos : m.start()])
                append(f"[L:{target_text}]")
                pos = m.end()
            elif token.startswith("[V:"):
                vm = _V_ID.match(token, 1)
                if vm is None:
                    raise _Unparsed(f"inline field {token!r}")
                units.voice = vm.group(1)
                guard = False
            else:
                continue
            factor = units.current() / target
            table = _scale_table(factor)
        elif kind == _G_SYM:
            if m.group(0) == "\\" and line[m.end() :].lstrip(" \t\r")[:1] not in ("", "%"):
                raise _Unparsed("backslash inside a line")
        elif kind == _G_OPEN:
            if chord is not None:
                raise _Unparsed("chord inside a chord")
            chord = []
        elif kind == _G_GRACE:
            if grace:
                raise _Unparsed("grace group inside a grace group")
            grace = True
        elif kind == _G_ENDGRACE:
            if not grace:
                raise _Unparsed("grace group end without a start")
            grace = False
        elif kind == _G_DECO:
            token = m.group(0)
            if token[0] == "+" and _OLD_CHORD.fullmatch(token) and token not in _DYNAMICS:
                raise _Unparsed(f"old-style chord {token!r}")
            nxt = line[m.end() : m.end() + 1]
            if nxt.isdigit() or nxt == "/":
                raise _Unparsed(f"length after decoration {token!r}")
        elif kind == _G_COMMENT:
            break
        else:  # bad: an unknown character, a stray digit or '!' ...
            token = m.group(0)
            if token == "!" and "!" not in line[m.end() :]:
                continue  # an ABC 1.6 line break: the last '!' of the line, not a decoration
            raise _Unparsed(f"cannot read {token!r}")
    if chord is not None or grace:
        raise _Unparsed("chord or grace group not closed on its line")
    if not out:
        return line
    append(line[pos:])
    return "".join(out)


def _parse_target(target: str) -> tuple[Fraction, str]:
    m = re.fullmatch(r"[ \t]*(\d+)(?:/(\d+))?[ \t]*", str(target))
    if m is None:
        raise _Unparsed(f"target {target!r}")
    value = _fraction(m.group(1), m.group(2))
    text = str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    return value, text


def _rewrite(abc: str, target: str) -> str:
    goal, goal_text = _parse_target(target)
    lines = abc.split("\n")
    regions = header_and_body(lines)
    if regions is None:
        raise _Unparsed("no K: line")
    key, end = regions
    # the header: the tune's and the voices' unit lengths, the meter, where L: goes if missing
    meter: str | None = None
    tune_l: Fraction | None = None
    voice_l: dict[str, Fraction] = {}
    voice: str | None = None
    first_v: int | None = None
    for i in range(key):
        line = lines[i]
        if line.startswith("%") or BLANK_LINE.match(line):
            continue
        if not FIELD_LINE.match(line):
            raise _Unparsed(f"header line {line[:40]!r}")
        if line.startswith("L:"):
            lm = _L_LINE.match(line)
            if lm is None:
                raise _Unparsed(f"header {line[:40]!r}")
            value = _fraction(lm.group(1), lm.group(2))
            if voice is None:
                tune_l = value
            else:
                voice_l[voice] = value
        elif line.startswith("V:"):
            vm = _V_ID.match(line)
            if vm is None:
                raise _Unparsed(f"header {line[:40]!r}")
            voice = vm.group(1)
            if first_v is None:
                first_v = i
        elif line.startswith("M:") and voice is None:
            meter = _M_VALUE.match(line).group(1)  # type: ignore[union-attr]
    if tune_l is None and voice_l:
        # readers disagree on whether a voice's L: in the header is then the tune's
        raise _Unparsed("voices with their own L: in a header without the tune's")
    units = _Units(tune_l if tune_l is not None else _default_unit(meter))
    units.own.update(voice_l)
    # music before any V: in the body is ambiguous when the header gave voices their own L:
    guard = any(v != units.tune for v in voice_l.values())
    out = lines[:]
    for i in range(key + 1, end):
        line = lines[i]
        if line.startswith("%"):
            continue
        if FIELD_LINE.match(line):
            if line.startswith("L:"):
                lm = _L_LINE.match(line)
                if lm is None:
                    raise _Unparsed(f"field {line[:40]!r}")
                units.set(_fraction(lm.group(1), lm.group(2)))
                out[i] = _L_LINE_VALUE.sub(lambda m: m.group(1) + goal_text, line, count=1)
            elif line.startswith("V:"):
                vm = _V_ID.match(line)
                if vm is None:
                    raise _Unparsed(f"field {line[:40]!r}")
                units.voice = vm.group(1)
                guard = False
            continue
        out[i] = _rewrite_music_line(line, units, goal, goal_text, guard)
        if units.voice is not None:
            guard = False
    for i in range(key):
        if out[i].startswith("L:"):
            out[i] = _L_LINE_VALUE.sub(lambda m: m.group(1) + goal_text, out[i], count=1)
    if tune_l is None:  # the default unit length: made explicit, before the voices and K:
        at = first_v if first_v is not None else key
        out.insert(at, f"L:{goal_text}" + ("\r" if lines[key].endswith("\r") else ""))
    return "\n".join(out)


def rewrite_unit_length_checked(abc: str, target: str = "1/8") -> tuple[str, bool]:
    """`rewrite_unit_length`, and whether the tune was read and rewritten (False: something in
    it could not be read safely, and it comes back unchanged). A rewritten tune may equal the
    input (it was already at `target`, written canonically)."""
    try:
        return _rewrite(abc, target), True
    except (_Unparsed, ValueError, ZeroDivisionError, OverflowError):
        return abc, False
    except Exception:  # pragma: no cover - defensive: never raise on odd input
        return abc, False


def rewrite_unit_length(abc: str, target: str = "1/8") -> str:
    """The tune with unit note length `target` (``"1/4"``, ``"1/8"``, ``"1/16"`` ...) and every
    duration scaled so the music is the same.

    Every ``L:`` field (header, voices' own, body lines, inline ``[L:..]``) becomes `target`, and
    a tune that relied on the default unit length gets an ``L:`` line before ``K:`` (or its
    first ``V:`` line). Notes, rests ``z``/``x``, chords and grace notes are scaled; multi-bar
    rests ``Z``/``X``, broken rhythm, tuplets, ties, slurs, decorations, bar lines, quoted
    strings, inline fields, comments and all other field lines are left alone. Each length is
    written minimally (``2``, ``3/2``, ``/``, ``/4``; none for 1), a chord's shared length after
    its ``]``; so a canonical tune at 1/8 comes back the same after a trip through 1/4, and the
    rewrite is idempotent.

    What it cannot read safely leaves the tune unchanged (`rewrite_unit_length_checked` tells):
    no ``K:`` line, text that is not a field in the header, unknown characters in a music line
    (``+CEG+`` chords of ABC 1.6, a stray digit, an unterminated string or decoration), a chord
    with lengths both inside and after it, unreadable ``L:``/``M:`` values, or music outside any
    voice when the header gave voices their own ``L:``.
    """
    return rewrite_unit_length_checked(abc, target)[0]


def canonical_abc(abc: str) -> str:
    """The form the models read: `canonical_header`, then `strip_chord_symbols`, then
    `rewrite_unit_length` to ``L:1/8`` (unchanged where it cannot be read safely)."""
    return rewrite_unit_length(strip_chord_symbols(canonical_header(abc)), "1/8")
