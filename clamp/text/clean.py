"""Cleaning of text candidates: ABC text escapes and markup, contacts scrubbed, placeholder
and boilerplate values dropped, the text fields of a tune gathered (`text_candidates`) and
de-duplicated. Pure functions over strings; `clamp.data.prepare` calls them per record."""

from __future__ import annotations

import html
import re
import unicodedata

from clamp.abc.normalize import INFO_FIELD_NAMES, extract_info_fields
from clamp.text.fields import fix_at_artefacts, fold
from clamp.text.labels import is_junk, tune_type

# ABC 2.1 text escapes for accented letters (\'e, \`a, \^o, \"u, \~n, \cc, \oo, \ss ...).
_ABC_ACCENTS = {
    "'": "\u0301",
    "`": "\u0300",
    "^": "\u0302",
    '"': "\u0308",
    "~": "\u0303",
    "c": "\u0327",
    "o": "\u030a",
    "=": "\u0304",
    "u": "\u0306",
    "v": "\u030c",
}
_ABC_ESCAPE = re.compile(r"\\([`'^\"~cou=v])([A-Za-z])")
_ABC_SPECIAL = {
    r"\ss": "ß",
    r"\AE": "Æ",
    r"\ae": "æ",
    r"\OE": "Œ",
    r"\oe": "œ",
    r"\/o": "ø",
    r"\/O": "Ø",
    r"\aa": "å",
    r"\AA": "Å",
}
_TAG = re.compile(r"<[^<>]{0,200}>")
_MARKUP = re.compile(r"\[\[([^\]|]*\|)?([^\]]*)\]\]|'{2,}|\*\*|__")
_SPACE = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Unicode-normalize one text candidate and strip markup; '' when nothing is left."""
    for code, char in _ABC_SPECIAL.items():
        text = text.replace(code, char)
    text = _ABC_ESCAPE.sub(lambda m: m.group(2) + _ABC_ACCENTS[m.group(1)], text)
    text = html.unescape(_TAG.sub(" ", text))
    text = _MARKUP.sub(lambda m: m.group(2) or "", text)
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C" or c in "\t\n")
    text = unicodedata.normalize("NFC", text)
    return _SPACE.sub(" ", text).strip()


# --- text candidates (docs/shard-schema.md, "Captions and labels": cleaning rules) ----------------

# E-mail addresses, also the obfuscated ones of the corpus ("ray:davies99.freeserve.co.uk",
# "walsh:mat:h.ubc.ca", "BobP:at:workcom.com", "name (at) host.org"), and URLs.
_EMAIL = re.compile(
    r"(?:mailto:)?[\w.+-]+(?:@|\s?\(at\)\s?|\s\[at\]\s)[\w-]+(?:\.[\w-]+)*"
    r"|(?:mailto:)?\b[\w.+-]+(?::at:|:+)[\w-]+(?:[.:]+[\w-]+)*\.[A-Za-z]{2,}\b",
)
_URL = re.compile(
    r"\b(?:https?|ftp)://[^\s<>\"]+|\bwww\.[^\s<>\"]+"
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|edu|gov|uk|nl|dk|se|ca|nu|info|ie|au|fi)\b(?:/[^\s<>\"]*)?"
)
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|<\s*>|\[\s*\]|\{\s*\}")
_DANGLING = re.compile(r"\s*([*,;:/|])(?:\s*[*,;:/|])+")


def has_contact(text: str) -> bool:
    """Whether the text holds an e-mail address or a URL."""
    return bool(_EMAIL.search(text) or _URL.search(text))


def scrub_contacts(text: str) -> str:
    """`text` without e-mail addresses and URLs, and without the brackets and separators they leave."""
    if not ("@" in text or ":" in text or "." in text or "(at)" in text):
        return text
    out = _URL.sub(" ", _EMAIL.sub(" ", text))
    if out == text:
        return text
    out = _EMPTY_BRACKETS.sub(" ", out)
    out = _DANGLING.sub(lambda m: (" " if m.group(1) in "*/|" else "") + m.group(1), out)
    return _SPACE.sub(" ", out).strip(" \t,;:*/|-")


# Free-text fields of the music itself, which `clamp serve` renders with the score; `+:` continues one.
MUSIC_TEXT_FIELDS = frozenset("NZHSW")


def scrub_music_fields(abc: str) -> str:
    """The tune with e-mail addresses and URLs taken out of its free-text fields (`N:`, `Z:`,
    `H:`, `S:`, `W:` and their `+:` continuations); a field left empty is dropped. The music
    and every other line are unchanged, byte for byte."""
    out: list[str] = []
    in_text_field = False
    for line in abc.split("\n"):
        field = line[0] if len(line) >= 2 and line[1] == ":" else None
        if field == "+" and in_text_field or field in MUSIC_TEXT_FIELDS:
            in_text_field = True
            value = line[2:]
            scrubbed = scrub_contacts(value)  # the same string when there is nothing to take out
            if scrubbed == value:
                out.append(line)
            elif scrubbed:  # a field of nothing but a contact goes
                out.append(line[:2] + (" " if value.startswith(" ") else "") + scrubbed)
            continue
        in_text_field = False
        out.append(line)
    return "\n".join(out)


# Credits for the transcription, copyright and software notes: never a description of the music.
_CREDIT = re.compile(
    r"^[\W\d]*(?:abc\s+)?(?:transcri(?:bed|ption|pton|ber)|contributed|corrected|proof-?read|typed|entered|"
    r"edited|encoded|engraved|converted|arranged for abc|edition)\b"
    r"|\b(?:transcribed|contributed|corrected|proof-?read|typed|entered|encoded|engraved) by\b"
    r"|^\W*\d{4}\s+by\s|^\W*\d{8,}\s+[A-Z]",  # "1997 by John Chambers", "20020507 John Walsh"
    re.IGNORECASE,
)
_COPYRIGHT = re.compile(r"copyright|\u00a9|\(c\)\s*\d|all rights reserved|used by permission", re.IGNORECASE)
_SOFTWARE = re.compile(
    r"^(?:abc|abcmus|abc2win|abc2mtex|barfly|easyabc|abcnav|abcm2ps|abc2midi|noteworthy|xml2abc|midi2abc|"
    r"musescore|finale|sibelius|lilypond|music21)\b[\s\d.,v-]*$",
    re.IGNORECASE,
)
# John Chambers's edit notes ("Fixed line wrapping [jc]") and the Essen encoders' internal
# remarks between +++ marks ("+++BEREITS KODIERT ?+++", "+++ Doublette +++")
_EDITOR_TAG = re.compile(r"\[jc\]\s*$|\+{3}")
# Catalogue numbers of the Essen collection ("A0611D", "C0046, C0495"), which some notes
# consist of or refer to ("Melodievergleich zu Q0095"), and database options in B: ("db: -c 8 -b 21").
CATALOGUE_CODE = re.compile(r"\b[A-Z]\d{4}[A-Z]?\b")
_DB_OPTIONS = re.compile(r"^db\s*:|^(?:-\w\s*\d*\s*)+$")
# Nationality codes that the Essen collection's Chinese tunes (han2.abc) carry as N: fields.
CHINESE_NATIONALITIES = frozenset(
    {
        "han",
        "hui",
        "zang",
        "tu",
        "tuzu",
        "tujia",
        "menggu",
        "meng",
        "sala",
        "salazu",
        "yugu",
        "miao",
        "zhuang",
        "uygur",
        "weiwuer",
        "chaoxian",
        "hani",
        "naxi",
        "lisu",
        "jingpo",
        "buyi",
        "hasake",
        "kazak",
    }
)
_FILENAME = re.compile(r"\.(?:abc|mxl|xml|musicxml|krn|mid|midi|pdf)$", re.IGNORECASE)
_PLACEHOLDER_TITLES = {
    "title",
    "untitled",
    "score",
    "subtitle",
    "composer",
    "lyricist",
    "arranger",
    "copyright",
    "part",
    "voice",
    "track",
    "new score",
}
_ROMAN = re.compile(r"[IVXLCDM]+", re.IGNORECASE)
_FIELD_PREFIX = re.compile(r"^([A-Z][a-z]+):\s*(.*)$", re.DOTALL)
_KNOWN_FIELDS = {name.capitalize() for name in INFO_FIELD_NAMES.values()}


def _unquote(value: str) -> str:
    m = re.fullmatch(r'"([^"]*)"\.?', value)
    return m.group(1).strip() if m else value


def drop_reason(field: str | None, value: str, raw: str | None = None) -> str | None:
    """Why a cleaned candidate (`field` as named in the candidate, e.g. "Notes"; None for free
    text) is not kept, or None to keep it. `raw` is the value before contacts were scrubbed.

    Codes: `empty` (no letter left), `catalogue_code`, `credit` (transcriber/contributor
    credit, or a transcription field that held an address), `copyright`, `software`,
    `editorial` (an editor's tagged note), `placeholder` (file names and stand-in titles).
    """
    if not re.search(r"[^\W\d_]", value):
        return "empty"
    if field not in ("Title", "Words", "Rhythm", None) and not any(
        len(w) >= 3 and not _ROMAN.fullmatch(w) for w in re.findall(r"[^\W\d_]+", value)
    ):
        return "empty"  # "MM", "III, 482": source shorthands without a word
    folded = value.casefold().strip(" .")
    if _COPYRIGHT.search(raw or value):
        return "copyright"
    if _CREDIT.search(value):
        return "credit"
    if field in ("Transcription", "Source") and raw is not None and has_contact(raw):
        return "credit"  # the transcriber's or informant's address: "Bob Puckette <...> 2003-3-10"
    if _SOFTWARE.match(value):
        return "software"
    if _EDITOR_TAG.search(value):
        return "editorial"
    if field in ("Notes", "Book", "Source", "History", "Remark", None) and (
        CATALOGUE_CODE.search(value) or _DB_OPTIONS.match(value)
    ):
        return "catalogue_code"
    if field == "Notes" and set(re.findall(r"[a-z]+", fold(value))) <= CHINESE_NATIONALITIES:
        return "catalogue_code"
    if field == "Title" and (folded in _PLACEHOLDER_TITLES or _FILENAME.search(value)):
        return "placeholder"
    return None


def clean_candidate(field: str | None, value: str) -> str | None:
    """One text candidate's cleaned value, or None when it is dropped (`drop_reason`).

    Markup and ABC escapes are cleaned (`clean_text`), e-mail addresses and URLs scrubbed,
    a value that is one quoted string unquoted, and a `Rhythm` value normalised with
    `clamp.text.labels.tune_type` (unknown types keep their cleaned value; placeholders
    such as `???` are dropped).
    """
    cleaned = clean_text(value)
    if not cleaned:
        return None
    if cleaned.endswith("]") and "[" not in cleaned:  # Essen's fields close with a stray "]"
        cleaned = cleaned[:-1].rstrip(" ,;")
    cleaned = _unquote(fix_at_artefacts(scrub_contacts(cleaned)))
    # addresses are looked for in the value as given too: clean_text drops "<name@host>" as a tag
    raw = value if has_contact(value) else cleaned
    if not cleaned or drop_reason(field, cleaned, raw):
        return None
    if field == "Words":
        cleaned = join_lyrics(cleaned)
        if not cleaned:
            return None
    if field == "Rhythm":
        if is_junk(cleaned):
            return None
        cleaned = tune_type(value) or cleaned
    return cleaned


_LYRIC_MARKS = re.compile(r"[|*~_$]|\\-")
_HYPHENATED = re.compile(r"(\w)-\s+(?=\w)")


def join_lyrics(words: str) -> str:
    """Lyrics as aligned to notes (`w:` lines: "Mei- ne|Seel' er- hebt * den") as plain text
    ("Meine Seel' erhebt den"): bar lines, holds and spacers removed, syllables joined."""
    text = _LYRIC_MARKS.sub(" ", words)
    text = _HYPHENATED.sub(r"\1", text)
    return _SPACE.sub(" ", text).strip(" -")


def merge_continued_notes(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Join an N: line that continues the one before it (the Essen collection wraps long notes:
    "N: ... Verzierung (Vorschlag) in" / "N: der letzten Zeile"): it starts in lower case and
    the previous note does not end a sentence."""
    out: list[tuple[str, str]] = []
    for key, value in fields:
        if (
            key == "N"
            and out
            and out[-1][0] == "N"
            and value[:1].islower()
            and not out[-1][1].rstrip().endswith((".", "!", "?", '"', ":"))
        ):
            out[-1] = ("N", f"{out[-1][1].rstrip()} {value}")
        else:
            out.append((key, value))
    return out


def text_candidates(abc: str, extra: list[str]) -> list[str]:
    """Cleaned, de-duplicated text candidates: the tune's info fields, then source texts.

    Every candidate goes through `clean_candidate`; source texts written as `Field: value`
    with a known field name get the same per-field rules as info fields.
    """
    out: list[str] = []
    for key, value in merge_continued_notes(extract_info_fields(abc)):
        name = INFO_FIELD_NAMES.get(key, key).capitalize()
        cleaned = clean_candidate(name, value)
        if cleaned:
            out.append(f"{name}: {cleaned}")
    for text in extra:
        m = _FIELD_PREFIX.match(text.strip())
        if m and m.group(1) in _KNOWN_FIELDS:
            cleaned = clean_candidate(m.group(1), m.group(2))
            if cleaned:
                out.append(f"{m.group(1)}: {cleaned}")
        else:
            cleaned = clean_candidate(None, text)
            if cleaned:
                out.append(cleaned)
    return dedupe(out)


def dedupe(texts: list[str]) -> list[str]:
    """`texts` in order without case-insensitive repeats."""
    seen: set[str] = set()
    unique = []
    for t in texts:
        if t.casefold() not in seen:
            seen.add(t.casefold())
            unique.append(t)
    return unique
