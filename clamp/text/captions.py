"""Natural-language captions of one tune, written from its labels and its music.

The build adds these sentences to a row's text candidates, next to the cleaned info fields
(docs/shard-schema.md, "Captions and labels"). Each caption is one sentence built from what
is known: the labels of `clamp.text.labels` (tune type, key, meter, tempo, collection,
composer, period), the tune's origin, title, length in bars, pitch range and voices. Which
phrasings a tune gets is chosen with a seed derived from its row id, so a rebuild writes the
same captions byte for byte.

`CAPTIONS_VERSION` is part of the prepare fingerprint: bump it whenever the captions (or the
labels) of any tune change, so that a rebuild redoes preparation; otherwise reruns skip it.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from clamp.text.attribution import corpus_folder
from clamp.text.clean import clean_candidate
from clamp.text.fields import all_fields, fix_at_artefacts, fold
from clamp.text.labels import labels_of
from clamp.text.music_facts import n_bars, pitch_range, voices

CAPTIONS_VERSION = 2
MIN_CAPTIONS = 3
MAX_CAPTIONS = 7


@dataclass
class Description:
    """What `describe` found: the labels, the captions, and the error that stopped the
    analysis (then `captions` is empty; `labels` holds what was found before it)."""

    labels: dict[str, str] = field(default_factory=dict)
    captions: list[str] = field(default_factory=list)
    error: str | None = None


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


def _article(phrase: str) -> str:
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


def _the(name: str) -> str:
    """A collection's name as it follows "from": "Ryan's Mammoth Collection", but "the Essen
    Folksong Collection"."""
    return name if re.search(r"'s\b", name) else f"the {name}"


def _cap(text: str) -> str:
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


# --------------------------------------------------------------------------- phrasings

_TEMPO_ADJECTIVES = {
    "slow": "slow",
    "very slow": "very slow",
    "moderate": "moderately paced",
    "lively": "lively",
    "spirited": "spirited",
    "animated": "animated",
    "brisk": "brisk",
    "quick": "quick",
    "fast": "fast",
    "free": "freely paced",
}


def _tempo_adjective(f: Facts) -> str | None:
    return _TEMPO_ADJECTIVES.get(f.labels.get("tempo", ""))


def _tempo_marking(f: Facts) -> str | None:
    tempo = f.labels.get("tempo")
    if tempo is None or tempo in _TEMPO_ADJECTIVES:
        return None
    return tempo.capitalize()


def _kind_with_origin(f: Facts) -> str:
    """The kind with the origin adjective in front when it is not there yet ("Irish jig")."""
    if f.adjective and f.adjective not in f.kind:
        return f"{f.adjective} {f.kind}"
    return f.kind


def _for_parts(f: Facts) -> str:
    """ ", for four voices (...)" when the parts say more than the kind of piece already does."""
    return f", for {f.parts}" if f.parts and f.parts not in f.kind else ""


def _key_meter(f: Facts, sep: str = ", ") -> str | None:
    key, meter = f.labels.get("key"), f.labels.get("meter")
    if key and meter:
        return f"in {key}{sep}in {meter}"
    if key:
        return f"in {key}"
    return f"in {meter}" if meter else None


def _span(f: Facts) -> str | None:
    return f"from {f.low} to {f.high}" if f.low and f.high and f.low != f.high else None


def p_tempo_kind_key(f: Facts) -> str | None:
    """ "A lively jig in D major, in 6/8." """
    key_meter = _key_meter(f)
    if not key_meter:
        return None
    adjective = _tempo_adjective(f)
    marking = _tempo_marking(f)
    head = _article(f"{adjective} {f.kind}" if adjective else f.kind)
    tail = f", marked {marking}" if marking else ""
    return _cap(f"{head} {key_meter}{tail}.")


def p_collection_bars_range(f: Facts) -> str | None:
    """ "Irish jig from O'Neill's Music of Ireland, 32 bars, ranging from D4 to B5." """
    collection = f.labels.get("collection")
    if not collection:
        return None
    bits = [f"{_cap(_kind_with_origin(f))} from {_the(collection)}"]
    if f.bars:
        bits.append(f"{f.bars} bar{'s' if f.bars != 1 else ''}")
    if span := _span(f):
        bits.append(f"ranging {span}")
    return ", ".join(bits) + "."


def p_composer(f: Facts) -> str | None:
    """ "A chorale by Johann Sebastian Bach, a Baroque composer, for four voices (...)." """
    composer = f.labels.get("composer")
    if not composer:
        return None
    period = f.labels.get("period")
    text = f"{_article(f.kind)} by {composer}"
    if period:
        text += f", {_article(period)} composer"
    return _cap(text + _for_parts(f) + ".")


def p_origin_key_time(f: Facts) -> str | None:
    """ "A German folk song in G major, 3/4 time." """
    if not f.adjective and not f.region:
        return None
    key, meter = f.labels.get("key"), f.labels.get("meter")
    text = _article(_kind_with_origin(f))
    if f.region:
        text += f" from {f.region}"
    if key:
        text += f" in {key}"
    if meter:
        text += f", {meter} time"
    return _cap(text + ".")


def p_title(f: Facts) -> str | None:
    """ "The Little Heathy Hill: an Irish air in G minor." """
    if not f.title:
        return None
    key = f.labels.get("key")
    text = f"{f.title}: {_article(_kind_with_origin(f))}"
    if key:
        text += f" in {key}"
    return text + "."


def p_length_range(f: Facts) -> str | None:
    """ "A 16-bar tune in 3/4 whose melody spans D4 to B5." """
    if not f.bars:
        return None
    meter = f.labels.get("meter")
    text = _article(f"{f.bars}-bar {f.kind}")
    if meter:
        text += f" in {meter}"
    if f.low and f.high and f.low != f.high:
        text += f" whose {'parts span' if f.n_parts > 1 else 'melody spans'} {f.low} to {f.high}"
    return _cap(text + ".")


def p_mode(f: Facts) -> str | None:
    """ "Written in the dorian mode on A, for fiddle." """
    key = f.labels.get("key")
    mode = f.labels.get("mode")
    if not key or not mode:
        return None
    tonic = key[: -len(mode)].strip()
    if mode in ("major", "minor"):
        text = f"{_cap(f.kind)} in a {mode} key ({key})"
    else:
        text = f"{_cap(f.kind)} in the {mode} mode on {tonic}"
    if f.instrument:
        text += f", for {f.instrument}"
    else:
        text += _for_parts(f)
    return text + "."


def p_period_style(f: Facts) -> str | None:
    """ "Baroque music for four voices, in G minor." """
    period = f.labels.get("period")
    if not period:
        return None
    text = f"{period} music"
    if f.parts:
        text += f" for {f.parts}"
    elif f.kind != "piece":
        text = f"{_article(period + ' ' + f.kind)}"
    key = f.labels.get("key")
    if key:
        text += f", in {key}"
    return text + "."


def p_meter_tempo(f: Facts) -> str | None:
    """ "Lively, in 6/8 time: a jig." """
    meter = f.labels.get("meter")
    adjective = _tempo_adjective(f)
    if not meter or not (adjective or f.labels.get("tune_type")):
        return None
    lead = f"{_cap(adjective)}, in {meter} time" if adjective else f"In {meter} time"
    return f"{lead}: {_article(_kind_with_origin(f))}."


def p_instrument(f: Facts) -> str | None:
    """ "A fiddle tune: a hornpipe in G major from Ryan's Mammoth Collection." """
    if not f.instrument:
        return None
    collection = f.labels.get("collection")
    text = f"{_article(f.instrument + ' tune')}: {_article(f.kind)}"
    if key := f.labels.get("key"):
        text += f" in {key}"
    if collection:
        text += f" from {_the(collection)}"
    return _cap(text + ".")


def p_key(f: Facts) -> str | None:
    """ "In D major." A short sentence in which the key is most of the meaning (MiniLM: cosine 0.70
    between "In D major." and "In G major.", 0.87 between two longer captions differing only there)."""
    key = f.labels.get("key")
    return f"In {key}." if key else None


def p_meter(f: Facts) -> str | None:
    """ "In 6/8 time." The same for the meter."""
    meter = f.labels.get("meter")
    return f"In {meter} time." if meter else None


PHRASINGS: tuple[Callable[[Facts], str | None], ...] = (
    p_tempo_kind_key,
    p_collection_bars_range,
    p_composer,
    p_origin_key_time,
    p_title,
    p_length_range,
    p_mode,
    p_period_style,
    p_meter_tempo,
    p_instrument,
    p_key,
    p_meter,
)


ALWAYS = frozenset({p_key, p_meter, p_tempo_kind_key, p_collection_bars_range, p_composer})


def seed_of(row_id: str) -> int:
    """The phrasing seed of a row: the first 64 bits of the SHA-256 of its id."""
    return int.from_bytes(hashlib.sha256(row_id.encode("utf-8")).digest()[:8], "big")


def write_captions(f: Facts, row_id: str) -> list[str]:
    """3 to 7 distinct sentences (fewer only when fewer can be written), in the order of
    `PHRASINGS`: the ones in `ALWAYS` whenever they apply (between them they name the kind,
    key, meter, tempo, collection, length, range, composer and period), then others chosen
    with the row's seed."""
    written: list[tuple[bool, str]] = []
    for phrasing in PHRASINGS:
        text = phrasing(f)
        if text:
            text = re.sub(r"\s+", " ", text).strip()
            if text not in (t for _, t in written):
                written.append((phrasing in ALWAYS, text))
    if len(written) <= MIN_CAPTIONS:
        return [t for _, t in written]
    rng = random.Random(seed_of(row_id))
    required = [i for i, (always, _) in enumerate(written) if always]
    optional = [i for i, (always, _) in enumerate(written) if not always]
    k = rng.randint(max(MIN_CAPTIONS, len(required)), min(MAX_CAPTIONS, len(written)))
    chosen = sorted(required + rng.sample(optional, max(0, k - len(required))))
    return [written[i][1] for i in chosen]


def describe(
    abc: str, texts: Iterable[str], metadata: Mapping[str, object] | None, row_id: str, n_patches: int = 0
) -> Description:
    """Labels and captions of one tune. Never raises: an exception while analysing the tune
    gives no captions and is reported in `error` (the build counts it).

    `n_patches` (the row's bar patches) is accepted for callers that know it; the length the
    captions give is counted in bars from the ABC itself (`clamp.text.music_facts.n_bars`).
    """
    metadata = metadata or {}
    out = Description()
    try:
        out.labels = labels_of(abc, texts, metadata, row_id)
        out.captions = write_captions(facts_of(abc, out.labels, metadata, row_id), row_id)
    except Exception as exc:  # one tune must never stop a build: counted as a caption failure
        out.captions = []
        out.error = f"{type(exc).__name__}: {exc}"
    return out


def captions(
    abc: str, texts: Iterable[str], metadata: Mapping[str, object] | None, row_id: str, n_patches: int = 0
) -> list[str]:
    """Several natural-language descriptions of the tune (3 to 7 distinct sentences when that
    many facts are known), e.g. "A lively jig in D major, in 6/8."; [] when it cannot be
    analysed (see `describe`)."""
    return describe(abc, texts, metadata, row_id, n_patches).captions
