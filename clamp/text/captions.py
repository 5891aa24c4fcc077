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

from clamp.text.labels import labels_of
from clamp.text.tune_facts import Facts, article, capitalized, facts_of, with_the

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
    head = article(f"{adjective} {f.kind}" if adjective else f.kind)
    tail = f", marked {marking}" if marking else ""
    return capitalized(f"{head} {key_meter}{tail}.")


def p_collection_bars_range(f: Facts) -> str | None:
    """ "Irish jig from O'Neill's Music of Ireland, 32 bars, ranging from D4 to B5." """
    collection = f.labels.get("collection")
    if not collection:
        return None
    bits = [f"{capitalized(_kind_with_origin(f))} from {with_the(collection)}"]
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
    text = f"{article(f.kind)} by {composer}"
    if period:
        text += f", {article(period)} composer"
    return capitalized(text + _for_parts(f) + ".")


def p_origin_key_time(f: Facts) -> str | None:
    """ "A German folk song in G major, 3/4 time." """
    if not f.adjective and not f.region:
        return None
    key, meter = f.labels.get("key"), f.labels.get("meter")
    text = article(_kind_with_origin(f))
    if f.region:
        text += f" from {f.region}"
    if key:
        text += f" in {key}"
    if meter:
        text += f", {meter} time"
    return capitalized(text + ".")


def p_title(f: Facts) -> str | None:
    """ "The Little Heathy Hill: an Irish air in G minor." """
    if not f.title:
        return None
    key = f.labels.get("key")
    text = f"{f.title}: {article(_kind_with_origin(f))}"
    if key:
        text += f" in {key}"
    return text + "."


def p_length_range(f: Facts) -> str | None:
    """ "A 16-bar tune in 3/4 whose melody spans D4 to B5." """
    if not f.bars:
        return None
    meter = f.labels.get("meter")
    text = article(f"{f.bars}-bar {f.kind}")
    if meter:
        text += f" in {meter}"
    if f.low and f.high and f.low != f.high:
        text += f" whose {'parts span' if f.n_parts > 1 else 'melody spans'} {f.low} to {f.high}"
    return capitalized(text + ".")


def p_mode(f: Facts) -> str | None:
    """ "Written in the dorian mode on A, for fiddle." """
    key = f.labels.get("key")
    mode = f.labels.get("mode")
    if not key or not mode:
        return None
    tonic = key[: -len(mode)].strip()
    if mode in ("major", "minor"):
        text = f"{capitalized(f.kind)} in a {mode} key ({key})"
    else:
        text = f"{capitalized(f.kind)} in the {mode} mode on {tonic}"
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
        text = f"{article(period + ' ' + f.kind)}"
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
    lead = f"{capitalized(adjective)}, in {meter} time" if adjective else f"In {meter} time"
    return f"{lead}: {article(_kind_with_origin(f))}."


def p_instrument(f: Facts) -> str | None:
    """ "A fiddle tune: a hornpipe in G major from Ryan's Mammoth Collection." """
    if not f.instrument:
        return None
    collection = f.labels.get("collection")
    text = f"{article(f.instrument + ' tune')}: {article(f.kind)}"
    if key := f.labels.get("key"):
        text += f" in {key}"
    if collection:
        text += f" from {with_the(collection)}"
    return capitalized(text + ".")


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
