"""Reading an ABC header as text: its fields, folded and cleaned strings. Shared by the
label readers of this package and the text cleaning."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_AT_ARTEFACT = re.compile(r"(?<=[Aa]t):+(?=[a-z])")


def fix_at_artefacts(text: str) -> str:
    """Undo a mangling in some corpus files, where "at" inside a word gained colons while
    e-mail addresses were obfuscated ("Leviat:han", "nat::ural", "King Colbat:h")."""
    return _AT_ARTEFACT.sub("", text) if ":" in text else text


def fold(text: str) -> str:
    """Lower-case ASCII: accents removed, German umlauts spelled out ("ä" -> "ae")."""
    if text.isascii():
        return text.lower()
    text = text.replace("ß", "ss")
    for src, dst in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("Ä", "Ae"), ("Ö", "Oe"), ("Ü", "Ue")):
        text = text.replace(src, dst)
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


def _field_value(value: str) -> str:
    """An info field's value without its `%` comment and surrounding space."""
    return value.split("%", 1)[0].strip()


def is_field(line: str) -> bool:
    return len(line) > 1 and line[1] == ":" and line[0].isalpha()


def header_fields(abc: str) -> list[tuple[str, str]]:
    """(letter, value) of the header lines: the field lines before the first music line.

    Comment lines and blank lines are skipped; `%` comments are cut off the values. The
    voice definitions xml2abc writes after `K:` (and the `V:1` opening the first voice) are
    header fields too, since no music precedes them.
    """
    fields: list[tuple[str, str]] = []
    for raw in abc.split("\n"):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        if not is_field(line):
            break
        fields.append((line[0], _field_value(line[2:])))
    return fields


def last_field(fields: Iterable[tuple[str, str]], letter: str) -> str | None:
    value = None
    for key, v in fields:
        if key == letter:
            value = v
    return value


def first_field(fields: Iterable[tuple[str, str]], letter: str) -> str | None:
    return next((v for k, v in fields if k == letter and v), None)


def all_fields(abc: str, letter: str) -> list[str]:
    """The values of every `letter:` line of the tune (header or body), comments cut off."""
    prefix = letter + ":"
    return [_field_value(ln.strip()[2:]) for ln in abc.split("\n") if ln.strip().startswith(prefix)]
