"""Clean labels of one tune, read from its ABC header, texts, source metadata and id.

Pure functions over strings (no heavy imports): the build calls `labels_of` once per prepared
row and stores the result in the row's `metadata` JSON under `"labels"`; captions
(`clamp.data.captions`) are written from the same labels, and evaluation reads them as
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
import unicodedata
from collections.abc import Iterable, Mapping

# --------------------------------------------------------------------------- text helpers

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


def _is_field(line: str) -> bool:
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
        if not _is_field(line):
            break
        fields.append((line[0], _field_value(line[2:])))
    return fields


def _last(fields: Iterable[tuple[str, str]], letter: str) -> str | None:
    value = None
    for key, v in fields:
        if key == letter:
            value = v
    return value


def _first(fields: Iterable[tuple[str, str]], letter: str) -> str | None:
    return next((v for k, v in fields if k == letter and v), None)


def all_fields(abc: str, letter: str) -> list[str]:
    """The values of every `letter:` line of the tune (header or body), comments cut off."""
    prefix = letter + ":"
    return [_field_value(ln.strip()[2:]) for ln in abc.split("\n") if ln.strip().startswith(prefix)]


# --------------------------------------------------------------------------- tune type

# One name per tune type (docs/shard-schema.md, "Captions and labels"): the keys are folded
# (lower case, ASCII) R: values with runs of space and hyphens made one space.
TUNE_TYPES: dict[str, str] = {
    "reel": "reel", "reels": "reel", "double reel": "reel",
    "jig": "jig", "jigs": "jig", "double jig": "jig", "single jig": "jig", "jig time": "jig",
    "slip jig": "slip jig", "slipjig": "slip jig", "slip jigs": "slip jig", "hop jig": "slip jig",
    "hornpipe": "hornpipe", "hornpipes": "hornpipe", "double hornpipe": "hornpipe",
    "strathspey": "strathspey", "strathspeys": "strathspey",
    "waltz": "waltz", "waltzes": "waltz", "valse": "waltz", "walzer": "waltz",
    "polka": "polka", "polkas": "polka",
    "march": "march", "marches": "march", "marsch": "march", "quick march": "march", "slow march": "march",
    "quickstep": "quickstep", "quick step": "quickstep",
    "slide": "slide", "slides": "slide",
    "mazurka": "mazurka", "schottische": "schottische", "schottisch": "schottische",
    "air": "air", "airs": "air", "slow air": "air", "lament": "air",
    "set dance": "set dance", "barn dance": "barn dance", "country dance": "country dance",
    "fling": "fling", "highland fling": "fling", "highland": "fling",
    "minuet": "minuet", "menuett": "minuet", "menuet": "minuet",
    "clog": "clog", "clog dance": "clog", "walkaround": "walkaround", "walk around": "walkaround",
    "gavotte": "gavotte", "polonaise": "polonaise", "bourree": "bourree", "gigue": "jig",
    "planxty": "planxty", "ländler": "ländler", "laendler": "ländler", "landler": "ländler",
    "song": "song", "songs": "song", "ballad": "song", "lied": "song", "carol": "song",
    "dance": "dance", "tanz": "dance", "tanzweise": "dance",
}

# Dance types recognised as a word inside a longer value ("??, Walzer]" -> waltz).
_DANCE_WORDS = {k: v for k, v in TUNE_TYPES.items() if v not in {"song", "dance", "air"} and " " not in k}

# Song genres and song themes of the Essen collection (German, and Chinese genre names in
# pinyin), matched as word stems: any folded word starting with one of these makes a song.
_SONG_STEMS = (
    "lied", "ballade", "romanze", "hymne", "choral", "gebet", "klage", "jodler", "gesang", "antiphon",
    "messe", "vesper", "psalm", "kehrreim", "legende", "sage", "erzaehl", "maerchen", "song", "ballad", "carol",
    "chanson", "canzon", "corrido", "geistlich", "religi", "kinder", "wiegen", "spott", "scherz", "trink",
    "hochzeit", "liebe", "libe", "abschied", "treue", "untreue", "mord", "werbung", "brautwerbung",
    "beischlaf", "verfuehr", "standesunterschied", "fenstergang", "trennung", "trauer", "heirat", "ehe",
    "vaterland", "natur", "lyrik", "heimat", "soldat", "krieg", "jaeger", "wander", "arbeit", "beruf", "tod", "nonne",
    "xiaodiao", "xiaodao", "shange", "haozi", "wuge", "qingge", "minge", "erge", "yangge", "duichang",
    "dui", "diao", "huar", "tiange", "shanqu", "yuge",
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
    "": "major", "maj": "major", "ion": "major", "m": "minor", "min": "minor", "aeo": "minor",
    "mix": "mixolydian", "dor": "dorian", "phr": "phrygian", "lyd": "lydian", "loc": "locrian",
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
    rest = value[m.end():].split()
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
    value = _last(header_fields(abc), "K")
    parsed = _parse_key(value) if value else None
    return f"{parsed[0]} {parsed[1]}" if parsed else None


# --------------------------------------------------------------------------- meter, tempo

_METER = re.compile(r"^(\d+(?:\+\d+)*)\s*/\s*(\d+)$")


def meter_label(abc: str) -> str | None:
    """The time signature of the (last header) `M:` field: `6/8`; `C` -> `4/4`; `C|` -> `2/2`;
    `none`, free meters (`FREI4/4`) and unreadable values give None."""
    value = _last(header_fields(abc), "M")
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
    "very slow": "very slow", "slow": "slow", "slowly": "slow", "rather slow": "slow", "slower": "slow",
    "moderate": "moderate", "moderately": "moderate", "moderato": "moderato", "medium": "moderate",
    "lively": "lively", "spirited": "spirited", "with spirit": "spirited", "animated": "animated",
    "brisk": "brisk", "briskly": "brisk", "quick": "quick", "quickly": "quick", "fast": "fast",
    "very fast": "fast", "gaily": "lively", "vivid": "lively", "freely": "free",
    "grave": "grave", "largo": "largo", "larghetto": "larghetto", "lento": "lento", "adagio": "adagio",
    "adagietto": "adagietto", "andante": "andante", "andantino": "andantino", "allegretto": "allegretto",
    "allegro": "allegro", "allegro moderato": "allegro moderato", "allegro vivace": "allegro vivace",
    "allegro assai": "allegro", "allegro molto": "allegro", "molto allegro": "allegro", "vivace": "vivace",
    "presto": "presto", "prestissimo": "prestissimo", "tempo di marcia": "march tempo",
    "march time": "march tempo", "in march time": "march tempo",
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
            if text.startswith(prefix) and (found := _tempo_of(text[len(prefix):])):
                return found
    return None


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
        if _is_field(stripped):
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
        after = next((c for c in counts[i + 1:] if c), 0)
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
    rest = row_id[len("music21:"):]
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
            name = book_name(text[len("Book:"):])
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
    "j.s. bach": "Johann Sebastian Bach", "js bach": "Johann Sebastian Bach", "bach": "Johann Sebastian Bach",
    "j. s. bach": "Johann Sebastian Bach", "johann sebastian bach": "Johann Sebastian Bach",
    "l. van beethoven": "Ludwig van Beethoven", "l van beethoven": "Ludwig van Beethoven",
    "beethoven": "Ludwig van Beethoven", "ludwig van beethoven": "Ludwig van Beethoven",
    "w.a. mozart": "Wolfgang Amadeus Mozart", "w. a. mozart": "Wolfgang Amadeus Mozart",
    "w.amozart": "Wolfgang Amadeus Mozart", "mozart": "Wolfgang Amadeus Mozart",
    "wolfgang amadeus mozart": "Wolfgang Amadeus Mozart",
    "frederic chopin": "Frédéric Chopin", "chopin": "Frédéric Chopin",
    "giovanni perluigi da palestrina": "Giovanni Pierluigi da Palestrina",
    "giovanni pierluigi da palestrina": "Giovanni Pierluigi da Palestrina", "palestrina": "Giovanni Pierluigi da Palestrina",
    "josquin": "Josquin des Prez", "josquin des prez": "Josquin des Prez", "josquin de pre": "Josquin des Prez",
    "josquin des pres": "Josquin des Prez",
    "o'carolan": "Turlough O'Carolan", "carolan": "Turlough O'Carolan", "turlough o'carolan": "Turlough O'Carolan",
    "neil gow": "Niel Gow", "niel gow": "Niel Gow", "n.gow": "Niel Gow", "n. gow": "Niel Gow",
    "dibdin": "Charles Dibdin", "h.r.h.liliuokalani": "Liliʻuokalani", "liliuokalani": "Liliʻuokalani",
    "mrs. h.h.a. beach (amy beach)": "Amy Beach", "amy beach": "Amy Beach",
    "monteverdi": "Claudio Monteverdi", "claudio monteverdi": "Claudio Monteverdi",
    "handel": "George Frideric Handel", "haydn": "Joseph Haydn", "schubert": "Franz Schubert",
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
    "Johann Sebastian Bach": "Baroque", "George Frideric Handel": "Baroque", "Arcangelo Corelli": "Baroque",
    "Claudio Monteverdi": "Renaissance",  # the corpus holds his madrigal books 3-5 (1592-1605)
    "Carl Philipp Emanuel Bach": "Classical", "Joseph Haydn": "Classical", "Wolfgang Amadeus Mozart": "Classical",
    "Ludwig van Beethoven": "Classical",
    "Franz Schubert": "Romantic", "Frédéric Chopin": "Romantic", "Robert Schumann": "Romantic",
    "Clara Schumann": "Romantic", "Carl Maria von Weber": "Romantic", "Giuseppe Verdi": "Romantic",
    "Amy Beach": "Romantic", "Liliʻuokalani": "Romantic", "Stephen Foster": "Romantic",
    "Scott Joplin": "Modern", "J. Rosamond Johnson": "Modern", "Arnold Schoenberg": "Modern",
    "Anton Webern": "Modern", "Irving Berlin": "Modern",
    "Josquin des Prez": "Renaissance", "Giovanni Pierluigi da Palestrina": "Renaissance",
    "Vicente Lusitano": "Renaissance",
    "Johannes Ciconia": "Medieval", "Jacopo da Bologna": "Medieval", "Francesco Landini": "Medieval",
    "Philippe de Vitry": "Medieval", "Guillaume de Machaut": "Medieval", "Bartolino da Padova": "Medieval",
    "Lorenzo da Firenze": "Medieval", "Gherardello da Firenze": "Medieval", "Donato da Cascia": "Medieval",
    "Giovanni da Cascia": "Medieval", "Paolo da Firenze": "Medieval", "Niccolò da Perugia": "Medieval",
    "Vincenzo da Rimini": "Medieval", "Andrea da Firenze": "Medieval", "Antonio Zacara da Teramo": "Medieval",
    "Turlough O'Carolan": "Baroque", "Niel Gow": "Classical", "Charles Dibdin": "Classical",
}
_PERIOD_BY_FOLD = {fold(k): v for k, v in COMPOSER_PERIODS.items()}


def composer_period(name: str | None) -> str | None:
    """The style period of a composer in the table (Medieval, Renaissance, Baroque,
    Classical, Romantic, Modern), or None."""
    if not name:
        return None
    return COMPOSER_PERIODS.get(name) or _PERIOD_BY_FOLD.get(fold(name))


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
