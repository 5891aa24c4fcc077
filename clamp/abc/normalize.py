"""ABC normalization of CLaMP v1 (docs/abc-normalisation-and-patching.md) and extraction of the info fields it drops.

The dropped info fields are the text side of a music-text pair, so they are returned by
`extract_info_fields` rather than thrown away.
"""

from __future__ import annotations

from unidecode import unidecode

# Info fields that carry text, not music. CLaMP v1 keeps `G:` (compatibility).
TEXT_FIELD_PREFIXES = frozenset(
    ["A:", "B:", "C:", "D:", "F:", "H:", "N:", "O:", "R:", "r:", "S:", "T:", "W:", "w:", "X:", "Z:"]
)

# Human names of the info fields, used as text-candidate labels.
INFO_FIELD_NAMES = {
    "T": "title",
    "C": "composer",
    "R": "rhythm",
    "O": "origin",
    "A": "area",
    "N": "notes",
    "B": "book",
    "S": "source",
    "Z": "transcription",
    "H": "history",
    "D": "discography",
    "F": "file",
    "W": "words",
    "r": "remark",
}


def to_ascii(text: str) -> str:
    """Transliterate to ASCII; the check is a fast path since most ABC already is."""
    return text if text.isascii() else unidecode(text)


def normalize_abc(text: str) -> str:
    """Return the music of one tune as the clamp-v1 patcher sees it (docs/abc-normalisation-and-patching.md)."""
    kept: list[str] = []
    append = kept.append
    for line in to_ascii(text).split("\n"):
        if line[:2] in TEXT_FIELD_PREFIXES:
            continue
        if line.startswith("%"):
            if line.startswith("%%score"):
                append(line)
            continue
        if line.strip() == "":
            continue
        if "%" in line:
            # v1 keeps the text before the last '%' minus the character just before it.
            line = line[: line.rindex("%")][:-1]
        append(line)
    return "\n".join(kept) + "\n" if kept else ""


def drop_text_fields(text: str) -> str:
    """The tune without its text-carrying info fields (kept: `X:`, the tune number). m3 mode
    patches the tune as written otherwise, so titles and rhythms stay on the text side of a
    pair instead of leaking into the music."""
    return "\n".join(ln for ln in text.split("\n") if ln[:2] not in TEXT_FIELD_PREFIXES or ln.startswith("X:"))


def m3_text(text: str) -> str:
    """What the m3 patcher sees: ASCII, without text fields (docs/abc-normalisation-and-patching.md,
    "Check digests" checks raw WikiMT, which has no text fields, so the digest is unchanged)."""
    return to_ascii(drop_text_fields(text))


def extract_info_fields(text: str) -> list[tuple[str, str]]:
    """The (field letter, value) pairs of the text-carrying header fields, in order.

    `X:` is a tune number and `w:`/`W:` are lyrics syllables aligned to notes, so `X:` is
    skipped and lyric lines are joined into one `words` value.
    """
    fields: list[tuple[str, str]] = []
    words: list[str] = []
    for raw in text.split("\n"):
        line = raw.strip()
        if len(line) < 2 or line[1] != ":" or line[:2] not in TEXT_FIELD_PREFIXES:
            continue
        key, value = line[0], line[2:].strip()
        if key == "X" or not value:
            continue
        if key in "wW":
            words.append(value)
            continue
        fields.append((key, value))
    if words:
        fields.append(("W", " ".join(words)))
    return fields
