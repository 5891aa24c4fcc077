"""What a tune's captions are written from (`Facts`): its origin (from `O:` and the collection),
what to call it (its form, from labels, titles and the corpus folder), its title, voices, length
and pitch range. `clamp.text.captions` turns these into sentences.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from clamp.text.attribution import corpus_folder
from clamp.text.clean import clean_candidate
from clamp.text.fields import all_fields, fix_at_artefacts, fold
from clamp.text.music_facts import n_bars, pitch_range, voices

# --------------------------------------------------------------------------- origin

# O: field components (folded, as the Essen collection writes them) -> adjective.
COUNTRY_ADJECTIVES: dict[str, str] = {
    "deutschland": "German",
    "deutschland (brd)": "German",
    "deutschland (ddr)": "German",
    "luxemburg": "Luxembourgish",
    "china": "Chinese",
    "irland": "Irish",
    "ireland": "Irish",
    "oesterreich": "Austrian",
    "schweiz": "Swiss",
    "franzoesische schweiz": "Swiss",
    "niederlande": "Dutch",
    "udssr": "Russian",
    "russland": "Russian",
    "ungarn": "Hungarian",
    "tschechoslowakei": "Czech",
    "rumaenien": "Romanian",
    "polen": "Polish",
    "jugoslawien": "Yugoslav",
    "frankreich": "French",
    "schweden": "Swedish",
    "daenemark": "Danish",
    "italien": "Italian",
    "amerika": "American",
    "nord amerika": "American",
    "england": "English",
    "norwegen": "Norwegian",
    "island": "Icelandic",
    "mexiko": "Mexican",
    "taiwan": "Taiwanese",
    "scotland": "Scottish",
    "schottland": "Scottish",
    "scotch": "Scottish",
    "wales": "Welsh",
    "japan": "Japanese",
    "griechenland": "Greek",
    "belgien": "Belgian",
    "finnland": "Finnish",
    "brasilien": "Brazilian",
    "indien": "Indian",
}
# Regions with an English name (others keep the name the source gives).
REGION_NAMES: dict[str, str] = {
    "lothringen": "Lorraine",
    "elsass": "Alsace",
    "westfalen": "Westphalia",
    "schlesien": "Silesia",
    "rheinland": "the Rhineland",
    "rhein": "the Rhine",
    "niederrhein": "the Lower Rhine",
    "schwaben": "Swabia",
    "franken": "Franconia",
    "thueringen": "Thuringia",
    "bayern": "Bavaria",
    "sachsen": "Saxony",
    "hessen": "Hesse",
    "boehmen": "Bohemia",
    "pommern": "Pomerania",
    "tirol": "Tyrol",
    "steiermark": "Styria",
    "siebenbuergen": "Transylvania",
    "preussen": "Prussia",
    "ostpreussen": "East Prussia",
    "wuerttemberg": "Württemberg",
    "galizien": "Galicia",
    "koeln": "Cologne",
    "muenster": "Münster",
    "nord deutschland": "northern Germany",
    "norddeutschland": "northern Germany",
    "sueddeutschland": "southern Germany",
    "gottschee": "Gottschee",
    "flaemisch": "Flanders",
}
_CONTINENTS = {
    "europa",
    "mitteleuropa",
    "osteuropa",
    "suedosteuropa",
    "westeuropa",
    "nordeuropa",
    "suedeuropa",
    "asien",
    "ostasien",
    "mittelamerika",
    "vorderer orient",
}
# Nationalities as Aird's and Ryan's write them in C: or S: ("Irish.", "SCOTCH.", "A Welch Tune").
_NATIONALITY_WORDS = {
    "irish": "Irish",
    "scotch": "Scottish",
    "scottish": "Scottish",
    "scots": "Scottish",
    "welch": "Welsh",
    "welsh": "Welsh",
    "english": "English",
    "french": "French",
    "gaelic": "Gaelic",
    "highland": "Scottish Highland",
    "west india": "West Indian",
}
_COLLECTION_ORIGINS = {"oneills1850": "Irish"}


def origin(abc: str, row_id: str = "") -> tuple[str | None, str | None]:
    """(adjective, region) of the tune's origin: from the O: field (`Europa, Mitteleuropa,
    Deutschland, Westfalen` -> ("German", "Westphalia")), else a nationality written in C:
    or S: ("Irish.", "SCOTCH."), else the collection's (O'Neill's is Irish)."""
    for value in all_fields(abc, "O"):
        parts = [fold(p).strip(" .") for p in re.split(r"[,;/]", value)]
        parts = [re.sub(r"\s*-\s*", " ", p) for p in parts if p and p not in _CONTINENTS]
        adjective = None
        region = None
        for p in parts:
            key = re.sub(r"\s*\(.*$", "", p) if p not in COUNTRY_ADJECTIVES else p
            if adjective is None and key in COUNTRY_ADJECTIVES:
                adjective = COUNTRY_ADJECTIVES[key]
            elif key in REGION_NAMES or (adjective and region is None and key not in COUNTRY_ADJECTIVES):
                region = region or REGION_NAMES.get(key) or _region_case(p)
                if adjective:
                    break
        if adjective or region:
            return adjective, region
    for letter in ("C", "S"):
        for value in all_fields(abc, letter):
            words = fold(value).strip(" .")
            for word, adjective in _NATIONALITY_WORDS.items():
                if re.match(rf"(?:an? |the )?(?:old )?{word}\b", words):
                    return adjective, None
    return _COLLECTION_ORIGINS.get(corpus_folder(row_id) or ""), None


def _region_case(name: str) -> str:
    return " ".join(w.capitalize() if w not in {"am", "an", "der", "im", "kr."} else w for w in name.split())


# --------------------------------------------------------------------------- facts

_TITLE_TYPE_SUFFIX = re.compile(r"\s*(?:--|\u2014|\u2013)\s*[^-]+$")
_FORMS = (
    ("chorale", "chorale"),
    ("choral", "chorale"),
    ("motet", "motet"),
    ("madrigal", "madrigal"),
    ("mass", "mass movement"),
    ("kyrie", "mass movement"),
    ("gloria", "mass movement"),
    ("credo", "mass movement"),
    ("sanctus", "mass movement"),
    ("benedictus", "mass movement"),
    ("agnus", "mass movement"),
    ("sonata", "sonata"),
    ("quartet", "string quartet"),
    ("mazurka", "mazurka"),
    ("polonaise", "polonaise"),
    ("rag", "ragtime piece"),
    ("ballata", "ballata"),
    ("virelai", "virelai"),
    ("caccia", "caccia"),
    ("minuet", "minuet"),
    ("menuetto", "minuet"),
    ("scherzo", "scherzo"),
    ("prelude", "prelude"),
    ("fugue", "fugue"),
    ("lied", "song"),
    ("song", "song"),
)
_FOLDER_FORMS = {"bach": "chorale", "monteverdi": "madrigal", "palestrina": "mass movement"}
_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
_VOCAL = {
    "soprano",
    "alto",
    "tenor",
    "bass",
    "basso",
    "baritone",
    "canto",
    "cantus",
    "quinto",
    "quintus",
    "sesto",
    "sextus",
    "altus",
    "bassus",
    "superius",
    "tenore",
    "contratenor",
    "contra",
    "motetus",
    "triplum",
    "voice",
    "voce",
    "discantus",
    "mezzo",
}
_INSTRUMENT_OF_COLLECTION = {"Ryan's Mammoth Collection": "fiddle", "Cole's 1000 Fiddle Tunes": "fiddle"}


def _number(n: int) -> str:
    return _NUMBERS[n] if n < len(_NUMBERS) else str(n)


def article(phrase: str) -> str:
    """`phrase` with "a" or "an" before it (letters named alone count: "an F major ...")."""
    first = phrase.split()[0] if phrase.split() else ""
    if len(first) == 1 and first.isupper():
        vowel = first in "AEFHILMNORSX"
    elif first[:1].isdigit():
        number = re.match(r"\d+", first)
        vowel = bool(number) and (number.group(0).startswith("8") or number.group(0) in ("11", "18"))
    else:
        vowel = first[:1].lower() in "aeiou" and not first.lower().startswith(("uni", "eu", "one"))
    return ("an " if vowel else "a ") + phrase


def with_the(name: str) -> str:
    """A collection's name as it follows "from": "Ryan's Mammoth Collection", but "the Essen
    Folksong Collection"."""
    return name if re.search(r"'s\b", name) else f"the {name}"


def capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def clean_title(value: str) -> str | None:
    """A title fit for a sentence: the tune type suffix ("-- Reel") cut off, ALL CAPS made
    title case, a trailing full stop dropped; None for placeholders and file names."""

    title = clean_candidate("Title", value)
    if not title:
        return None
    title = fix_at_artefacts(_TITLE_TYPE_SUFFIX.sub("", title)).strip().rstrip(".").strip()
    if title.isupper() and len(re.findall(r"[A-Z]{2,}", title)) >= 2:
        title = re.sub(r"[A-Z][A-Z']*", lambda m: m.group(0).capitalize(), title)
        title = re.sub(r"'S\b", "'s", title)
    if not re.search(r"[^\W\d_]{2}", title) or len(title) > 80:
        return None
    return title


@dataclass
class Facts:
    labels: dict[str, str]
    kind: str  # what to call the tune: "jig", "German folk song", "chorale", "piece" ...
    title: str | None
    bars: int
    low: str | None
    high: str | None
    parts: str | None  # "four voices (Soprano, Alto, Tenor, Bass)", "string quartet", "piano"
    n_parts: int
    adjective: str | None  # of origin
    region: str | None
    instrument: str | None


def _parts(names: list[str]) -> tuple[str | None, int]:
    """A phrase for the voices of a score and how many there are."""
    n = len(names)
    if n <= 1:
        return None, n
    plain = [re.sub(r"[\s.]*(?:\d+|[ivx]+)$", "", fold(v)).strip() for v in names]
    named = [v for v in names if not re.fullmatch(r"[\w-]{0,3}\d*", v)]
    if named and all(p == "piano" or p in ("", "pno") for p in plain) and "piano" in plain:
        return "piano", n
    if (
        n == 4
        and sorted(plain).count("violin") == 2
        and {"viola"} <= set(plain)
        and ("cello" in plain or "violoncello" in plain)
    ):
        return "string quartet", n
    if named and all(p.split()[0] in _VOCAL for p in plain if p):
        return f"{_number(n)} voices ({', '.join(names)})", n
    if named and len(named) == n:
        return f"{_number(n)} parts ({', '.join(names)})", n
    return f"{_number(n)} parts", n


def _title_of(abc: str, metadata: Mapping[str, object]) -> str | None:
    for value in all_fields(abc, "T"):
        title = clean_title(value)
        if title:
            return title
    meta_title = metadata.get("title")
    return clean_title(meta_title) if isinstance(meta_title, str) else None


def _form(row_id: str, abc: str, metadata: Mapping[str, object], parts: str | None) -> str | None:
    if parts == "string quartet":
        return "string quartet movement"
    texts = [*all_fields(abc, "T"), str(metadata.get("title", "")), str(metadata.get("path", ""))]
    words = set(re.findall(r"[a-z]+", fold(" ".join(texts))))
    for word, form in _FORMS:
        if word in words:
            return form
    return _FOLDER_FORMS.get(corpus_folder(row_id) or "")


def facts_of(abc: str, labels: dict[str, str], metadata: Mapping[str, object], row_id: str) -> Facts:
    """Everything the captions are written from (`labels` are the tune's `labels_of`);
    raises on a tune that cannot be analysed."""
    names = voices(abc)
    parts, n_parts = _parts(names)
    adjective, region = origin(abc, row_id)
    kind = labels.get("tune_type")
    if kind == "song":
        folk = labels.get("collection") == "Essen Folksong Collection" or adjective is not None
        kind = f"{adjective + ' ' if adjective else ''}{'folk song' if folk else 'song'}"
    elif kind in (None, "dance"):
        form = _form(row_id, abc, metadata, parts)
        if form is None and kind is None and labels.get("collection") == "Essen Folksong Collection":
            form = f"{adjective + ' ' if adjective else ''}folk song"  # the collection holds songs only
        kind = form or kind or ("piece" if labels.get("composer") or n_parts > 1 else "tune")
    bars = n_bars(abc)
    bars = bars if bars >= 2 else 0  # music written without bar lines (Josquin's parts) reads as one bar
    span = pitch_range(abc)
    return Facts(
        labels=labels,
        kind=kind,
        title=_title_of(abc, metadata),
        bars=bars,
        low=span[0] if span else None,
        high=span[1] if span else None,
        parts=parts,
        n_parts=n_parts,
        adjective=adjective,
        region=region,
        instrument=_INSTRUMENT_OF_COLLECTION.get(labels.get("collection", "")),
    )
