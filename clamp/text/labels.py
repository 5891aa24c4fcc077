"""Clean labels of one tune, read from its ABC header, texts, source metadata and id.

Pure functions over strings (no heavy imports): the build calls `labels_of` once per prepared
row and stores the result in the row's `metadata` JSON under `"labels"`; captions
(`clamp.text.captions`) are written from the same labels, and evaluation reads them as
clean class labels. The rules, and the corpus figures they were chosen from, are in
docs/shard-schema.md ("Captions and labels").

The ABC is the tune as converted, before normalisation, so every header field (K:, M:, Q:,
R:, C:, O:, B:, V:, ...) is still there. Spelling conventions of the labels:

- tune types are lower case, one name per type (`slip jig`, `reel`, `song`, ...);
- keys are `<tonic> <mode>` with accidentals in words: `B flat major`, `F sharp minor`;
- meters are `<n>/<d>` (`C` is `4/4`, `C|` is `2/2`);
- tempo words are lower case (`slow`, `moderate`, `lively`, `allegro`, ...);
- pitches are scientific pitch names of the written staff position, accidentals left out
  (`C4` is ABC `C`, middle C; `c'` is `C6`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from clamp.text.attribution import collection_label, composer_label, composer_period
from clamp.text.fields import all_fields, fix_at_artefacts, fold, header_fields, last_field

# --------------------------------------------------------------------------- tune type

# One name per tune type (docs/shard-schema.md, "Captions and labels"): the keys are folded
# (lower case, ASCII) R: values with runs of space and hyphens made one space.
TUNE_TYPES: dict[str, str] = {
    "reel": "reel",
    "reels": "reel",
    "double reel": "reel",
    "jig": "jig",
    "jigs": "jig",
    "double jig": "jig",
    "single jig": "jig",
    "jig time": "jig",
    "slip jig": "slip jig",
    "slipjig": "slip jig",
    "slip jigs": "slip jig",
    "hop jig": "slip jig",
    "hornpipe": "hornpipe",
    "hornpipes": "hornpipe",
    "double hornpipe": "hornpipe",
    "strathspey": "strathspey",
    "strathspeys": "strathspey",
    "waltz": "waltz",
    "waltzes": "waltz",
    "valse": "waltz",
    "walzer": "waltz",
    "polka": "polka",
    "polkas": "polka",
    "march": "march",
    "marches": "march",
    "marsch": "march",
    "quick march": "march",
    "slow march": "march",
    "quickstep": "quickstep",
    "quick step": "quickstep",
    "slide": "slide",
    "slides": "slide",
    "mazurka": "mazurka",
    "schottische": "schottische",
    "schottisch": "schottische",
    "air": "air",
    "airs": "air",
    "slow air": "air",
    "lament": "air",
    "set dance": "set dance",
    "barn dance": "barn dance",
    "country dance": "country dance",
    "fling": "fling",
    "highland fling": "fling",
    "highland": "fling",
    "minuet": "minuet",
    "menuett": "minuet",
    "menuet": "minuet",
    "clog": "clog",
    "clog dance": "clog",
    "walkaround": "walkaround",
    "walk around": "walkaround",
    "gavotte": "gavotte",
    "polonaise": "polonaise",
    "bourree": "bourree",
    "gigue": "jig",
    "planxty": "planxty",
    "ländler": "ländler",
    "laendler": "ländler",
    "landler": "ländler",
    "song": "song",
    "songs": "song",
    "ballad": "song",
    "lied": "song",
    "carol": "song",
    "dance": "dance",
    "tanz": "dance",
    "tanzweise": "dance",
}

# Dance types recognised as a word inside a longer value ("??, Walzer]" -> waltz).
_DANCE_WORDS = {k: v for k, v in TUNE_TYPES.items() if v not in {"song", "dance", "air"} and " " not in k}

# Song genres and song themes of the Essen collection (German, and Chinese genre names in
# pinyin), matched as word stems: any folded word starting with one of these makes a song.
_SONG_STEMS = (
    "lied",
    "ballade",
    "romanze",
    "hymne",
    "choral",
    "gebet",
    "klage",
    "jodler",
    "gesang",
    "antiphon",
    "messe",
    "vesper",
    "psalm",
    "kehrreim",
    "legende",
    "sage",
    "erzaehl",
    "maerchen",
    "song",
    "ballad",
    "carol",
    "chanson",
    "canzon",
    "corrido",
    "geistlich",
    "religi",
    "kinder",
    "wiegen",
    "spott",
    "scherz",
    "trink",
    "hochzeit",
    "liebe",
    "libe",
    "abschied",
    "treue",
    "untreue",
    "mord",
    "werbung",
    "brautwerbung",
    "beischlaf",
    "verfuehr",
    "standesunterschied",
    "fenstergang",
    "trennung",
    "trauer",
    "heirat",
    "ehe",
    "vaterland",
    "natur",
    "lyrik",
    "heimat",
    "soldat",
    "krieg",
    "jaeger",
    "wander",
    "arbeit",
    "beruf",
    "tod",
    "nonne",
    "xiaodiao",
    "xiaodao",
    "shange",
    "haozi",
    "wuge",
    "qingge",
    "minge",
    "erge",
    "yangge",
    "duichang",
    "dui",
    "diao",
    "huar",
    "tiange",
    "shanqu",
    "yuge",
)
# ... and lieder compounds: any word ending in one of these.
_SONG_SUFFIXES = ("lied", "lieder", "klage", "gesang", "ballade", "romanze")
_JUNK = re.compile(r"^[\s?!.,;:()\[\]\"'*_-]*$|^(?:y+|x+|nn|n\.?n\.?|unknown|none|other|misc)$")


def is_junk(value: str) -> bool:
    """Whether an R:-style value is a placeholder (`???`, `yyy]`, `NN`) rather than a name."""
    s = _fold_type(value).replace("?", "").strip(" .,;:")
    return not s or bool(_JUNK.match(s))


def _fold_type(raw: str) -> str:
    s = fold(fix_at_artefacts(raw)).strip()
    s = re.sub(r"[\[\]\"]", " ", s)
    s = re.sub(r"\s*-\s*", " ", s)
    return re.sub(r"\s+", " ", s).strip(" .,;:")


def tune_type(raw: str | None) -> str | None:
    """The normalised tune type of an `R:` (rhythm) value, or None when it names none.

    Exact names and their variants first (`slipjig`, `Slip Jig` -> `slip jig`; `double jig`
    -> `jig`); then a dance word inside a longer value (`??, Walzer]` -> `waltz`); then song
    genres and themes (`Liebes - Lied`, `Romanze, Ballade, Lied`, `Xiaodiao]`, `Liebe, Tod]`
    -> `song`). Essen's theme field closes with `]`, so any other bracketed value with a word
    in it is a song too. `???`, `yyy]` and other junk give None.
    """
    if not raw:
        return None
    if is_junk(raw):
        return None
    s = _fold_type(raw)
    if s in TUNE_TYPES:
        return TUNE_TYPES[s]
    words = re.findall(r"[a-z]+", s)
    if any(w.startswith(_SONG_STEMS) or w.endswith(_SONG_SUFFIXES) for w in words):
        return "song"
    two = {" ".join(p) for p in zip(words, words[1:], strict=False)}
    dances = {TUNE_TYPES[w] for w in two if w in TUNE_TYPES} or {_DANCE_WORDS[w] for w in words if w in _DANCE_WORDS}
    if len(dances) == 1:
        return dances.pop()
    if any(w.startswith("tanz") for w in words):
        return "dance"
    meaningful = [w for w in words if w not in {"y", "yy", "yyy", "nn"}]
    if raw.rstrip().endswith("]") and meaningful:
        return "song"  # Essen's theme field ("Barbara]", "Jagen]"): every tune there is a song
    return None


_TITLE_TYPE = re.compile(r"(?:--|\u2014|\u2013)\s*([^-]+?)\s*\.?$|\(([^()]+)\)\s*\.?$")


def tune_type_from_title(title: str) -> str | None:
    """A dance type named at the end of a title ("Acacia -- Reel", "Sally Gardens (reel)",
    "Dutchess of Gordon's Strathspey.")."""
    m = _TITLE_TYPE.search(title)
    if not m:
        words = re.findall(r"[A-Za-z]+", fold(title))
        if len(words) < 2:
            return None
        for n in (2, 1):
            found = TUNE_TYPES.get(" ".join(words[-n:]))
            if found and found not in ("song", "dance", "air"):
                return found
        return None
    named = m.group(1) or m.group(2)
    if len(named.split()) > 3:  # "(Can be used as a Clog.)" is a remark, not a type
        return None
    found = tune_type(named)
    return found if found not in (None, "song", "dance") else None


# --------------------------------------------------------------------------- key

_MODES = {
    "": "major",
    "maj": "major",
    "ion": "major",
    "m": "minor",
    "min": "minor",
    "aeo": "minor",
    "mix": "mixolydian",
    "dor": "dorian",
    "phr": "phrygian",
    "lyd": "lydian",
    "loc": "locrian",
}
_KEY = re.compile(r"^([A-G])([#b\u266f\u266d]?)([A-Za-z]*)")
_ACCIDENTAL_WORDS = {"#": " sharp", "\u266f": " sharp", "b": " flat", "\u266d": " flat", "": ""}


def _mode_of(word: str) -> str | None:
    """The mode named by the word after a key's tonic ("" is major; ABC modes are
    case-insensitive, so `m` and `M` are both minor); clef and octave words name none."""
    w = word.lower()
    if w in ("", "m"):
        return "major" if w == "" else "minor"
    if w[:3] in _MODES:
        return _MODES[w[:3]]
    if w.startswith(_CLEF_WORDS):
        return "major"  # "K:F -8va", "K:G treble": no mode given
    return None


_CLEF_WORDS = ("tre", "bas", "alt", "ten", "cle", "tra", "oct", "mid", "sta", "-", "+", "=", "^", "_")


def _parse_key(value: str) -> tuple[str, str] | None:
    value = value.strip()
    if not value or fold(value).split()[0] in {"none", "hp", "h"}:
        return None
    m = _KEY.match(value)
    if not m:
        return None
    tonic, accidental, glued = m.group(1), m.group(2), m.group(3)
    rest = value[m.end() :].split()
    mode = _mode_of(glued if glued or not rest else rest[0])
    if mode is None:
        return None
    return tonic + _ACCIDENTAL_WORDS[accidental], mode


_TITLE_KEY = re.compile(r"\bin ([A-G])(?:[- ]?(sharp|flat|#|b))?[- ]?(major|minor|dur|moll)\b", re.IGNORECASE)


def _title_key(abc: str) -> str | None:
    """A key named in a title ("Mazurka in C-sharp Minor, Op. 6"): a converted score's `K:`
    is only its key signature, which says E major for a piece in C sharp minor."""
    for title in all_fields(abc, "T"):
        m = _TITLE_KEY.search(title)
        if m:
            accidental = {"#": "sharp", "b": "flat"}.get(m.group(2) or "", (m.group(2) or "").lower())
            mode = {"dur": "major", "moll": "minor"}.get(m.group(3).lower(), m.group(3).lower())
            return f"{m.group(1).upper()}{' ' + accidental if accidental else ''} {mode}"
    return None


def key_label(abc: str) -> str | None:
    """Tonic and mode of the tune's key (its last header `K:`), e.g. `B flat major`, `A dorian`.

    `Am`, `Amin`, `A Minor`, `Gmin` (xml2abc) are minor; `Dmix`, `Ador`, `E phr -8va` are
    modes; clefs and octave marks after the key are ignored. `K:none`, the Highland-pipe
    keys `K:Hp`/`K:HP` and anything unreadable give None. A key named in a title ("Mazurka
    in C-sharp Minor") wins over `K:`, which for converted scores is the key signature only.
    """
    if named := _title_key(abc):
        return named
    value = last_field(header_fields(abc), "K")
    parsed = _parse_key(value) if value else None
    return f"{parsed[0]} {parsed[1]}" if parsed else None


# --------------------------------------------------------------------------- meter, tempo

_METER = re.compile(r"^(\d+(?:\+\d+)*)\s*/\s*(\d+)$")


def meter_label(abc: str) -> str | None:
    """The time signature of the (last header) `M:` field: `6/8`; `C` -> `4/4`; `C|` -> `2/2`;
    `none`, free meters (`FREI4/4`) and unreadable values give None."""
    value = last_field(header_fields(abc), "M")
    if not value:
        return None
    value = value.strip().strip("[]").strip()
    if value == "C":
        return "4/4"
    if value == "C|":
        return "2/2"
    m = _METER.match(value)
    return f"{m.group(1)}/{m.group(2)}" if m else None


# Tempo words and phrases (folded) -> label. The corpus's O'Neill's tunes carry them in N:
# ("Moderate", "With spirit", "Slow"), Aird's and others in Q: ("1/4=80 \"Slow\"").
TEMPO_WORDS: dict[str, str] = {
    "very slow": "very slow",
    "slow": "slow",
    "slowly": "slow",
    "rather slow": "slow",
    "slower": "slow",
    "moderate": "moderate",
    "moderately": "moderate",
    "moderato": "moderato",
    "medium": "moderate",
    "lively": "lively",
    "spirited": "spirited",
    "with spirit": "spirited",
    "animated": "animated",
    "brisk": "brisk",
    "briskly": "brisk",
    "quick": "quick",
    "quickly": "quick",
    "fast": "fast",
    "very fast": "fast",
    "gaily": "lively",
    "vivid": "lively",
    "freely": "free",
    "grave": "grave",
    "largo": "largo",
    "larghetto": "larghetto",
    "lento": "lento",
    "adagio": "adagio",
    "adagietto": "adagietto",
    "andante": "andante",
    "andantino": "andantino",
    "allegretto": "allegretto",
    "allegro": "allegro",
    "allegro moderato": "allegro moderato",
    "allegro vivace": "allegro vivace",
    "allegro assai": "allegro",
    "allegro molto": "allegro",
    "molto allegro": "allegro",
    "vivace": "vivace",
    "presto": "presto",
    "prestissimo": "prestissimo",
    "tempo di marcia": "march tempo",
    "march time": "march tempo",
    "in march time": "march tempo",
}
_TEMPO_LEAD = re.compile(
    r"^(?:" + "|".join(sorted((re.escape(k) for k in TEMPO_WORDS), key=len, reverse=True)) + r")\b"
)


def _tempo_of(text: str) -> str | None:
    s = fold(text).strip().strip("\"'").strip()
    m = _TEMPO_LEAD.match(s)
    return TEMPO_WORDS[m.group(0)] if m else None


def tempo_label(abc: str, texts: Iterable[str] = ()) -> str | None:
    """The tempo word of the tune: the quoted text of `Q:`, else the first N:/Q: value or
    `Notes:`/`Tempo:` text that starts with a tempo word (`"Lively"`, `"Slow with feeling"`
    -> `slow`, `Allegro` -> `allegro`). A bare `Q:1/4=120` names no tempo word: None."""
    for value in all_fields(abc, "Q"):
        for quoted in re.findall(r'"([^"]*)"', value):
            if found := _tempo_of(quoted):
                return found
        if found := _tempo_of(re.sub(r"\d+/\d+\s*=\s*\d+|\d+", " ", value)):
            return found
    for value in all_fields(abc, "N"):
        for part in re.findall(r'"([^"]*)"', value) or [value]:
            if found := _tempo_of(part):
                return found
    for text in texts:
        for prefix in ("Notes:", "Tempo:"):
            if text.startswith(prefix) and (found := _tempo_of(text[len(prefix) :])):
                return found
    return None


# --------------------------------------------------------------------------- all labels

LABEL_KEYS = ("tune_type", "key", "mode", "meter", "tempo", "collection", "composer", "period")


def _book_texts(abc: str, texts: Iterable[str]) -> list[str]:
    return [f"Book: {b}" for b in all_fields(abc, "B") if b] + list(texts)


def labels_of(
    abc: str, texts: Iterable[str] = (), metadata: Mapping[str, object] | None = None, row_id: str = ""
) -> dict[str, str]:
    """Every label known for the tune, keys in `LABEL_KEYS` order, unknown ones left out.

    `tune_type` comes from the first R: field that names one, else from a dance type at the
    end of the title ("Acacia -- Reel"); `mode` is the mode of `key`.
    """
    texts = list(texts)
    out: dict[str, str] = {}
    kind = next((t for t in map(tune_type, all_fields(abc, "R")) if t), None)
    if kind is None:
        kind = next((t for t in map(tune_type_from_title, all_fields(abc, "T")) if t), None)
    if kind:
        out["tune_type"] = kind
    key = key_label(abc)
    if key:
        out["key"] = key
        out["mode"] = key.rsplit(" ", 1)[1]
    meter = meter_label(abc)
    if meter:
        out["meter"] = meter
    tempo = tempo_label(abc, texts)
    if tempo:
        out["tempo"] = tempo
    collection = collection_label(row_id, _book_texts(abc, texts))
    if collection:
        out["collection"] = collection
    composer = composer_label(abc, metadata, row_id)
    if composer:
        out["composer"] = composer
        period = composer_period(composer)
        if period:
            out["period"] = period
    return out
