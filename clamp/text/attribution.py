"""Who made or kept a tune: its collection (a corpus folder or a book), its composer and the
composer's period, read from its id, header and source metadata."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from clamp.text.fields import all_fields, fix_at_artefacts, fold

# --------------------------------------------------------------------------- collection, composer

# music21 corpus folders that are collections (folder -> name); a folder named None is a
# mixed folder without one name.
COLLECTIONS: dict[str, str | None] = {
    "ryansMammoth": "Ryan's Mammoth Collection",
    "oneills1850": "O'Neill's Music of Ireland",
    "essenFolksong": "Essen Folksong Collection",
    "airdsAirs": "Aird's Airs",
    "nottingham-dataset": "Nottingham Music Database",
    "miscFolk": None,
}
# Book names as written in B: fields (folded, numbers cut off) -> one name.
BOOKS: dict[str, str] = {
    "ryan's mammoth collection": "Ryan's Mammoth Collection",
    "ryans mammoth collection": "Ryan's Mammoth Collection",
    "ryan's mammoth collection of fiddle tunes": "Ryan's Mammoth Collection",
    "ryans mammoth collection of fiddle tunes": "Ryan's Mammoth Collection",
    "cole's 1000 fiddle tunes": "Cole's 1000 Fiddle Tunes",
    "coles 1000 fiddle tunes": "Cole's 1000 Fiddle Tunes",
    "coles": "Cole's 1000 Fiddle Tunes",
    "cole's": "Cole's 1000 Fiddle Tunes",
    "o'neill's music of ireland": "O'Neill's Music of Ireland",
    "o'neill's": "O'Neill's Music of Ireland",
    "oneills": "O'Neill's Music of Ireland",
    "o'neills": "O'Neill's Music of Ireland",
    "odhecaton a": "Harmonice Musices Odhecaton",
    "odhecaton": "Harmonice Musices Odhecaton",
    "northumbrian minstrelsy": "Northumbrian Minstrelsy",
}


def corpus_folder(row_id: str) -> str | None:
    """The music21 corpus folder of a row id (`music21:bach/bwv1.6.mxl` -> `bach`)."""
    if not row_id.startswith("music21:"):
        return None
    rest = row_id[len("music21:") :]
    return rest.split("/", 1)[0] if "/" in rest else None


def book_name(value: str) -> str | None:
    """A normalised book (B:) name: known books by one name, catalogue codes (`db: -c 8`)
    and provenance phrases (`From a 1549 ms.`) dropped, others cleaned."""
    value = re.sub(r"\s+", " ", fix_at_artefacts(value)).strip().strip("\"'").strip().rstrip(".").strip()
    if not value or re.match(r"^db\s*:|^-\w", value) or fold(value).startswith("from "):
        return None
    key = re.sub(r"[\s,#]*(?:no\.?\s*|p\.?\s*)?[\d.]+$", "", fold(value)).strip()
    if key in BOOKS:
        return BOOKS[key]
    if not re.search(r"[A-Za-z]{3}", value):
        return None
    return value


def collection_label(row_id: str, texts: Iterable[str] = ()) -> str | None:
    """A human collection name: the corpus folder's for music21 ids (`ryansMammoth` ->
    "Ryan's Mammoth Collection"; `miscFolk` has none), else a book named in the texts
    (`Book: ...`, the candidate made from a `B:` field), normalised."""
    folder = corpus_folder(row_id)
    if folder in COLLECTIONS:
        return COLLECTIONS[folder]
    for text in texts:
        if text.startswith("Book:"):
            name = book_name(text[len("Book:") :])
            if name:
                return name
    return None


# music21 corpus folders that are one composer (folder -> full name).
COMPOSER_FOLDERS: dict[str, str] = {
    "bach": "Johann Sebastian Bach",
    "beach": "Amy Beach",
    "beethoven": "Ludwig van Beethoven",
    "chopin": "Frédéric Chopin",
    "ciconia": "Johannes Ciconia",
    "corelli": "Arcangelo Corelli",
    "cpebach": "Carl Philipp Emanuel Bach",
    "handel": "George Frideric Handel",
    "haydn": "Joseph Haydn",
    "johnson_j_r": "J. Rosamond Johnson",
    "joplin": "Scott Joplin",
    "josquin": "Josquin des Prez",
    "liliuokalani": "Liliʻuokalani",
    "luca": "D. Luca",
    "lusitano": "Vicente Lusitano",
    "monteverdi": "Claudio Monteverdi",
    "mozart": "Wolfgang Amadeus Mozart",
    "palestrina": "Giovanni Pierluigi da Palestrina",
    "schoenberg": "Arnold Schoenberg",
    "schubert": "Franz Schubert",
    "schumann": "Robert Schumann",
    "schumann_clara": "Clara Schumann",
    "schumann_robert": "Robert Schumann",
    "verdi": "Giuseppe Verdi",
    "weber": "Carl Maria von Weber",
    "webern": "Anton Webern",
}

# Spellings met in C: fields and music21 metadata (folded) -> one name.
COMPOSER_ALIASES: dict[str, str] = {
    "j.s. bach": "Johann Sebastian Bach",
    "js bach": "Johann Sebastian Bach",
    "bach": "Johann Sebastian Bach",
    "j. s. bach": "Johann Sebastian Bach",
    "johann sebastian bach": "Johann Sebastian Bach",
    "l. van beethoven": "Ludwig van Beethoven",
    "l van beethoven": "Ludwig van Beethoven",
    "beethoven": "Ludwig van Beethoven",
    "ludwig van beethoven": "Ludwig van Beethoven",
    "w.a. mozart": "Wolfgang Amadeus Mozart",
    "w. a. mozart": "Wolfgang Amadeus Mozart",
    "w.amozart": "Wolfgang Amadeus Mozart",
    "mozart": "Wolfgang Amadeus Mozart",
    "wolfgang amadeus mozart": "Wolfgang Amadeus Mozart",
    "frederic chopin": "Frédéric Chopin",
    "chopin": "Frédéric Chopin",
    "giovanni perluigi da palestrina": "Giovanni Pierluigi da Palestrina",
    "giovanni pierluigi da palestrina": "Giovanni Pierluigi da Palestrina",
    "palestrina": "Giovanni Pierluigi da Palestrina",
    "josquin": "Josquin des Prez",
    "josquin des prez": "Josquin des Prez",
    "josquin de pre": "Josquin des Prez",
    "josquin des pres": "Josquin des Prez",
    "o'carolan": "Turlough O'Carolan",
    "carolan": "Turlough O'Carolan",
    "turlough o'carolan": "Turlough O'Carolan",
    "neil gow": "Niel Gow",
    "niel gow": "Niel Gow",
    "n.gow": "Niel Gow",
    "n. gow": "Niel Gow",
    "dibdin": "Charles Dibdin",
    "h.r.h.liliuokalani": "Liliʻuokalani",
    "liliuokalani": "Liliʻuokalani",
    "mrs. h.h.a. beach (amy beach)": "Amy Beach",
    "amy beach": "Amy Beach",
    "monteverdi": "Claudio Monteverdi",
    "claudio monteverdi": "Claudio Monteverdi",
    "handel": "George Frideric Handel",
    "haydn": "Joseph Haydn",
    "schubert": "Franz Schubert",
}

# C: values that are not a composer: origins and descriptions (Aird's writes "Irish.",
# "A Welch Tune"), tradition, and placeholders.
_NOT_COMPOSER = re.compile(
    r"^(?:an? |the )?(?:old |new )?(?:irish|scotch|scottish|scots|english|welch|welsh|french|german|gaelic|"
    r"highland|lowland|west india|west indian|virginian|american|negroe?|italian|spanish|dutch|swedish|"
    r"norwegian|danish|russian|polish|hungarian|manx|cornish|northumbrian)\b"
    r"|^(?:trad|traditional|anon|anonymous|unknown|none|various|music21|n/?a)\.?$"
    r"|collected|^an? |^play it |^as (?:sung|played|performed) |\.\.\.|^\W*$|^_"
)
# In O'Neill's Music of Ireland, C: names who contributed the tune (a collector), not its
# composer ("F. O'Neill.", "Cronin."): only known composers are taken from it.
_COLLECTOR_FOLDERS = {"oneills1850"}


def _initials_only(name: str) -> bool:
    return bool(re.fullmatch(r"(?:[A-Z]\.\s*){1,4}", name))


def normalise_composer(value: str) -> str | None:
    """One spelling of a composer's name, or None when the value names no composer."""
    v = fix_at_artefacts(value)
    v = re.sub(r"\\\w+", " ", v)  # LaTeX left-overs: "\footnotemark"
    v = v.split("\n", 1)[0]
    v = re.sub(r"\s*\(?\b1[0-9]{3}\b.*$", "", v)  # dates: "Josquin des Prez, 1545", "Preston (1780)"
    v = re.sub(r"\s+", " ", v).strip().strip("\"'").strip(" ,;:-")
    v = re.sub(r"^(?:composed |written |new set, )?by\s+", "", v, flags=re.I).strip()
    v = re.sub(r"\s+K\.?\s*\d+\w*$", "", v)  # "W. A. Mozart K. 156"
    v = v.rstrip(".").strip()
    if not v or _initials_only(v + ".") or _NOT_COMPOSER.search(fold(v)):
        return None
    key = fold(v)
    if key in COMPOSER_ALIASES:
        return COMPOSER_ALIASES[key]
    if "," in v:  # "Bach, Johann Sebastian" -> "Johann Sebastian Bach"
        last, _, first = v.partition(",")
        if first.strip() and len(first.split()) <= 4 and not re.search(r"\d", first):
            v = f"{first.strip()} {last.strip()}"
            if fold(v) in COMPOSER_ALIASES:
                return COMPOSER_ALIASES[fold(v)]
    if v.isupper():  # "FRANK LIVINGSTON" -> "Frank Livingston", "G.L.TRACY" -> "G.L.Tracy"
        v = re.sub(r"[A-Z]{2,}", lambda m: m.group(0).capitalize(), v)
        v = re.sub(r"\bMc([a-z])", lambda m: "Mc" + m.group(1).upper(), v)
    v = re.sub(r"\b([A-Z])\.(?=[A-Z])", r"\1. ", v)  # "J.Hand" -> "J. Hand"
    return v


def composer_label(abc: str, metadata: Mapping[str, object] | None = None, row_id: str = "") -> str | None:
    """The tune's composer, normalised: for music21 scores the corpus folder (`bach` ->
    "Johann Sebastian Bach"), else the source metadata's `composer`, else the first C: field
    that names a person (origins such as "Irish." and "collected by ..." are not composers)."""
    folder = corpus_folder(row_id)
    if folder in COMPOSER_FOLDERS:
        return COMPOSER_FOLDERS[folder]
    meta_composer = (metadata or {}).get("composer")
    if isinstance(meta_composer, str) and (name := normalise_composer(meta_composer)):
        return name
    for value in all_fields(abc, "C"):
        name = normalise_composer(value)
        if name is None:
            continue
        if folder in _COLLECTOR_FOLDERS and name not in COMPOSER_ALIASES.values():
            continue
        return name
    return None


# Composer -> style period, for the composers of the corpus (its score folders, the
# Trecento set, the lead sheets) and a few others met in C: fields.
COMPOSER_PERIODS: dict[str, str] = {
    "Johann Sebastian Bach": "Baroque",
    "George Frideric Handel": "Baroque",
    "Arcangelo Corelli": "Baroque",
    "Claudio Monteverdi": "Renaissance",  # the corpus holds his madrigal books 3-5 (1592-1605)
    "Carl Philipp Emanuel Bach": "Classical",
    "Joseph Haydn": "Classical",
    "Wolfgang Amadeus Mozart": "Classical",
    "Ludwig van Beethoven": "Classical",
    "Franz Schubert": "Romantic",
    "Frédéric Chopin": "Romantic",
    "Robert Schumann": "Romantic",
    "Clara Schumann": "Romantic",
    "Carl Maria von Weber": "Romantic",
    "Giuseppe Verdi": "Romantic",
    "Amy Beach": "Romantic",
    "Liliʻuokalani": "Romantic",
    "Stephen Foster": "Romantic",
    "Scott Joplin": "Modern",
    "J. Rosamond Johnson": "Modern",
    "Arnold Schoenberg": "Modern",
    "Anton Webern": "Modern",
    "Irving Berlin": "Modern",
    "Josquin des Prez": "Renaissance",
    "Giovanni Pierluigi da Palestrina": "Renaissance",
    "Vicente Lusitano": "Renaissance",
    "Johannes Ciconia": "Medieval",
    "Jacopo da Bologna": "Medieval",
    "Francesco Landini": "Medieval",
    "Philippe de Vitry": "Medieval",
    "Guillaume de Machaut": "Medieval",
    "Bartolino da Padova": "Medieval",
    "Lorenzo da Firenze": "Medieval",
    "Gherardello da Firenze": "Medieval",
    "Donato da Cascia": "Medieval",
    "Giovanni da Cascia": "Medieval",
    "Paolo da Firenze": "Medieval",
    "Niccolò da Perugia": "Medieval",
    "Vincenzo da Rimini": "Medieval",
    "Andrea da Firenze": "Medieval",
    "Antonio Zacara da Teramo": "Medieval",
    "Turlough O'Carolan": "Baroque",
    "Niel Gow": "Classical",
    "Charles Dibdin": "Classical",
}
_PERIOD_BY_FOLD = {fold(k): v for k, v in COMPOSER_PERIODS.items()}


def composer_period(name: str | None) -> str | None:
    """The style period of a composer in the table (Medieval, Renaissance, Baroque,
    Classical, Romantic, Modern), or None."""
    if not name:
        return None
    return COMPOSER_PERIODS.get(name) or _PERIOD_BY_FOLD.get(fold(name))
