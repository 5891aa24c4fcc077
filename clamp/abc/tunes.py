"""Splitting multi-tune ABC files into single tunes."""

from __future__ import annotations

import re

_X_LINE = re.compile(r"^X:", re.MULTILINE)
_FIELD = re.compile(r"^[A-Za-z]:")


def split_tunes(text: str) -> list[str]:
    """Split an ABC file into tunes, one per `X:` line.

    Info-field lines of the file header (before the first `X:`) apply to every tune in the
    ABC standard, so they are inserted after each tune's `X:` line. A file with no `X:` line
    is one tune.
    """
    starts = [m.start() for m in _X_LINE.finditer(text)]
    if not starts:
        return [text] if text.strip() else []
    header_fields = [ln for ln in text[: starts[0]].split("\n") if _FIELD.match(ln)]
    tunes: list[str] = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        tune = text[start:end].rstrip() + "\n"
        if header_fields:
            x_line, _, rest = tune.partition("\n")
            tune = "\n".join([x_line, *header_fields, rest])
        tunes.append(tune)
    return tunes
