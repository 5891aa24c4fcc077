"""Tune groups for the split: settings of one tune land in one split (docs/shard-schema.md,
"Split assignment").

Two rows belong to one group when they share a title key (`title_key`) or their melody
signatures (`melody_signature`: MinHash of the diatonic steps between successive notes, so a
transposition keeps it) reach `threshold` in an LSH search (`melody_links`); groups are the
connected components (`group_rows`). A group's split is `split_of` of its representative's
content hash (`representative_key`), or `heldout` when any of its rows belongs to a held-out
collection (`assign_splits`).
Pure functions over lists and numpy arrays; `clamp.data.build.plan_shards` reads the rows.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clamp.data.dedup import NUM_PERM, band_keys, minhash_ids, shingle_ids
from clamp.text.labels import TUNE_TYPES

# Bump when the keys or the grouping rule change: it is part of the shard and dataset fingerprints.
GROUPING_VERSION = 1
SPLIT_VALUES = ("train", "valid", "test", "heldout")

TITLE_GROUP_CAP = 30  # a title key shared by more rows than this is too generic to group by
MIN_MELODY_NOTES = 16  # fewer notes: no melody key (too little to tell tunes apart)
MELODY_SHINGLE = 5  # steps per shingle (6 notes)
MELODY_BANDS = 16  # LSH: 16 bands of 4 signature values; a pair at Jaccard 0.6 is a candidate with p ~ 0.9
BUCKET_CAP = 64  # an LSH bucket larger than this is compared with its anchor only, not all pairs


def split_of(content_hash: str, valid_fraction: float, test_fraction: float) -> str:
    """Deterministic split from the content hash: the same music always lands in the same split."""
    u = int(content_hash[:8], 16) / 0x100000000
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"


# --- title key ----------------------------------------------------------------------------
_ARTICLES = frozenset({"the", "a", "an"})
_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
_NUMBER_WORDS = frozenset({"no", "nr", "num", "number"})
_SETTING_WORDS = frozenset(
    {"setting", "version", "variant", "variation", "variations", "another", "other", "alternative"}
)
_ORDINALS = frozenset({"first", "second", "third", "fourth", "fifth", "1st", "2nd", "3rd", "4th", "5th"})
# tune types ("reel", "slip jig", ...), longest first: a trailing one is cut off ("The Alhambra -- Reel")
_TYPE_PHRASES = sorted({tuple(k.split()) for k in TUNE_TYPES if k.isascii()}, key=len, reverse=True)
# titles that name no tune: they would merge unrelated tunes
STOP_TITLES = frozenset(
    {
        "untitled",
        "no title",
        "title",
        "unknown",
        "anon",
        "anonymous",
        "tune",
        "melody",
        "song",
        "air",
        "dance",
        "chorale",
        "choral",
        "lied",
        "volkslied",
        "hymn",
        "psalm",
        "carol",
        "march",
        "first section",
        "second section",
    }
    | {" ".join(p) for p in _TYPE_PHRASES}
)


def row_title(texts: Sequence[str], source_format: str = "abc") -> str | None:
    """A row's title: its first `Title: ...` text candidate (the cleaned first `T:` field;
    placeholder titles were dropped in preparation). None when it has none, and for converted
    scores (`source_format` not `abc`): their titles are mostly movement and section names
    (`Crucifixus`, `Agnus I`, `String Quartet No. 1 in F major, Op.`) shared by unrelated works,
    so scores are grouped by melody only."""
    if source_format != "abc":
        return None
    for text in texts:
        if text.startswith("Title:"):
            return text[len("Title:") :].strip() or None
    return None


def title_key(title: str | None) -> str | None:
    """The grouping key of a title, or None when it names no particular tune.

    German umlauts spelled out (`Östreich` -> `oestreich`, as the Essen tunes write them), other
    accents folded, case folded, apostrophes dropped (`O'Neill's` -> `oneills`), bracketed parts
    (`(reel)`, `[2nd setting]`), page references (`S. 80`, `p. 12`) and other punctuation
    removed; then cut from the end,
    repeatedly: numbers (`No. 2`, `number 3`, `25`), ordinals and setting words (`2nd setting`,
    `variant`), a trailing `the` (`Garden of Daisies, The`) and a tune type (`-- Reel`,
    `Slip Jig`) that is not the whole title; then one leading article (`the`, `a`, `an`).
    Empty keys, numbers and `STOP_TITLES` give None.
    """
    if not title:
        return None
    s = unicodedata.normalize("NFC", title).casefold()
    s = s.translate(_UMLAUTS)
    s = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
    s = re.sub(r"['’`´]", "", s)
    s = re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:s|p|pp|page|seite)\.?\s*\d+\s*$", " ", s.strip())
    words = re.sub(r"[\W_]+", " ", s).split()
    while words:
        last = words[-1]
        if (
            last.isdigit()
            or last in _NUMBER_WORDS
            or last in _SETTING_WORDS
            or last in _ORDINALS
            or (last == "the" and len(words) > 1)
        ):
            words.pop()
            continue
        phrase = next((p for p in _TYPE_PHRASES if len(words) > len(p) and tuple(words[-len(p) :]) == p), None)
        if phrase is None:
            break
        del words[-len(phrase) :]
    if len(words) > 1 and words[0] in _ARTICLES:
        words = words[1:]
    key = " ".join(words)
    if not key or key in STOP_TITLES or key.isdigit() or key in _ARTICLES:
        return None
    return key


# --- melody key ---------------------------------------------------------------------------
_FIELD_LINE = re.compile(r"^\s*([A-Za-z]):(.*)$")
_REMOVE = re.compile(r'"[^"]*"|![^!\n]*!|\+[a-z][^+\s]*\+|\{[^}]*\}')
_INLINE_FIELD = re.compile(r"\[([A-Za-z]):([^\]]*)\]")
_NOTE = re.compile(r"([A-Ga-g])([',]*)")
_DIATONIC = {c: i for i, c in enumerate("CDEFGAB")}


def melody_positions(abc: str) -> list[int]:
    """The diatonic positions of the notes of the tune's first voice, in order.

    Reads the lines after the first `K:` line (all lines when there is none). Field lines,
    `%` comments, quoted chord symbols and annotations, `!...!` and `+...+` decorations, grace
    notes `{...}` and inline fields `[K:...]` are skipped; `V:` lines and `[V:...]` switch the
    voice, and only the first voice met counts. A note's position is its letter (C=0 ... B=6),
    plus 7 for a lower-case letter, plus 7 per `'`, minus 7 per `,`. Accidentals, the key
    signature, durations, rests and bar lines are ignored, so transposing a tune to another key
    shifts every position by the same number of steps.
    """
    lines = abc.split("\n")
    start = next((i + 1 for i, ln in enumerate(lines) if ln.lstrip().startswith("K:")), 0)
    first_voice: str | None = None
    voice: str | None = None
    out: list[int] = []

    def switch(value: str) -> None:
        nonlocal first_voice, voice
        name = value.split()[0] if value.split() else ""
        voice = name
        if first_voice is None:
            first_voice = name

    for line in lines[start:]:
        line = line.split("%", 1)[0]
        field = _FIELD_LINE.match(line)
        if field:
            if field.group(1) == "V":
                switch(field.group(2))
            continue
        line = _REMOVE.sub(" ", line)
        pos = 0
        for m in _INLINE_FIELD.finditer(line):
            if voice is None or voice == first_voice:
                out += _positions(line[pos : m.start()])
            if m.group(1) == "V":
                switch(m.group(2))
            pos = m.end()
        if voice is None or voice == first_voice:
            out += _positions(line[pos:])
    return out


def _positions(music: str) -> list[int]:
    return [
        _DIATONIC[m.group(1).upper()]
        + (7 if m.group(1).islower() else 0)
        + 7 * (m.group(2).count("'") - m.group(2).count(","))
        for m in _NOTE.finditer(music)
    ]


def melody_steps(abc: str) -> list[int]:
    """The diatonic steps between successive notes (`melody_positions`): transposition-invariant."""
    p = melody_positions(abc)
    return [b - a for a, b in zip(p, p[1:], strict=False)]


def melody_signature(abc: str) -> np.ndarray | None:
    """MinHash (uint32[NUM_PERM], the hash functions of `clamp.data.dedup`) of the tune's
    MELODY_SHINGLE-step shingles, or None for a tune of fewer than MIN_MELODY_NOTES notes."""
    steps = melody_steps(abc)
    if len(steps) + 1 < MIN_MELODY_NOTES:
        return None
    symbols = np.clip(np.asarray(steps, dtype=np.int64), -127, 127) + 128
    return minhash_ids(shingle_ids(symbols.astype(np.uint8), MELODY_SHINGLE))


def melody_links(
    signatures: np.ndarray, has: np.ndarray, order_keys: Sequence[str], threshold: float
) -> list[tuple[int, int, float]]:
    """Pairs (i, j, estimated Jaccard) of rows with a melody key whose signatures reach
    `threshold`, found by LSH (MELODY_BANDS bands). In a bucket of rows sharing a band key,
    every pair is compared; a bucket of more than BUCKET_CAP rows compares each row with its
    anchor only (the row with the smallest `order_keys` value), so the result does not depend
    on row order."""
    idx = np.flatnonzero(has)
    if len(idx) < 2:
        return []
    rank = np.empty(len(idx), dtype=np.int64)
    rank[np.argsort(np.asarray([order_keys[i] for i in idx], dtype=object), kind="stable")] = np.arange(len(idx))
    keys = band_keys(signatures[idx], MELODY_BANDS)
    cand: set[tuple[int, int]] = set()
    for band in range(MELODY_BANDS):
        order = np.lexsort((rank, keys[:, band]))
        k = keys[order, band]
        bounds = np.flatnonzero(np.r_[True, k[1:] != k[:-1], True])
        for a, b in zip(bounds[:-1], bounds[1:], strict=False):
            if b - a < 2:
                continue
            members = idx[order[a:b]]
            if b - a > BUCKET_CAP:
                cand.update((int(members[0]), int(m)) for m in members[1:])
            else:
                cand.update((int(x), int(y)) for n, x in enumerate(members) for y in members[n + 1 :])
    if not cand:
        return []
    pairs = np.array(sorted(cand), dtype=np.int64)
    sims = (signatures[pairs[:, 0]] == signatures[pairs[:, 1]]).mean(axis=1)
    hit = sims >= threshold
    return [(int(i), int(j), float(s)) for (i, j), s in zip(pairs[hit], sims[hit], strict=True)]


# --- groups -------------------------------------------------------------------------------
def representative_key(content_hash: str) -> str:
    """Which row represents its group: the one with the smallest SHA-256 of its content hash.

    Not the row with the smallest content hash itself: `split_of` reads the hash's first bits,
    and the smallest of k uniform hashes falls below `test_fraction` more often the larger the
    group (a 100-row group would be `test` with probability 1 - 0.95**100, 99 %). Ranking by a
    second hash picks a member independently of its `split_of` value, so a group of any size
    lands in `test` with probability `test_fraction`, and a single row keeps its own split."""
    return hashlib.sha256(content_hash.encode("ascii")).hexdigest()


@dataclass
class TuneGroups:
    labels: np.ndarray  # per row: the index of its group's representative (`representative_key`)
    title_keys_used: int  # title keys that joined rows (shared by 2 to `title_cap` rows)
    title_keys_capped: int  # title keys shared by more than `title_cap` rows: ignored
    melody_pairs: int  # pairs linked by the melody key


def _find(parent: list[int], i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        parent[i], i = root, parent[i]
    return root


def group_rows(
    hashes: Sequence[str],
    title_keys: Sequence[str | None],
    signatures: np.ndarray,
    has_melody: np.ndarray,
    threshold: float,
    title_cap: int = TITLE_GROUP_CAP,
) -> TuneGroups:
    """Union-find over rows sharing a title key (shared by at most `title_cap` rows) or linked
    by `melody_links`. Independent of row order: each row's label is the index of its group's
    representative, the row with the smallest `representative_key`."""
    n = len(hashes)
    parent = list(range(n))

    def union(i: int, j: int) -> None:
        ri, rj = _find(parent, i), _find(parent, j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    counts = Counter(k for k in title_keys if k is not None)
    first: dict[str, int] = {}
    for i, k in enumerate(title_keys):
        if k is not None and counts[k] <= title_cap:
            union(first.setdefault(k, i), i)
    links = melody_links(signatures, has_melody, hashes, threshold) if n else []
    for i, j, _ in links:
        union(i, j)
    roots = [_find(parent, i) for i in range(n)]
    rank = [representative_key(h) for h in hashes]
    best: dict[int, int] = {}
    for i, r in enumerate(roots):
        if r not in best or (rank[i], hashes[i]) < (rank[best[r]], hashes[best[r]]):
            best[r] = i
    labels = np.array([best[r] for r in roots], dtype=np.int64)
    return TuneGroups(
        labels=labels,
        title_keys_used=sum(1 for c in counts.values() if 2 <= c <= title_cap),
        title_keys_capped=sum(1 for c in counts.values() if c > title_cap),
        melody_pairs=len(links),
    )


def assign_splits(
    labels: np.ndarray,
    hashes: Sequence[str],
    heldout: np.ndarray,
    valid_fraction: float,
    test_fraction: float,
    split_by: str = "tune-group",
) -> list[str]:
    """Each row's split. `tune-group`: a group's rows all get `split_of` of the content hash of
    the group's representative (`labels`), or `heldout` when any row of the group is held out.
    `row`: each row its own `split_of`, or `heldout` when it is held out."""
    if split_by == "row":
        return ["heldout" if heldout[i] else split_of(h, valid_fraction, test_fraction) for i, h in enumerate(hashes)]
    held_groups = {int(labels[i]) for i in np.flatnonzero(heldout)}
    by_rep = {
        int(r): ("heldout" if int(r) in held_groups else split_of(hashes[int(r)], valid_fraction, test_fraction))
        for r in np.unique(labels)
    }
    return [by_rep[int(r)] for r in labels]


def grouping_stats(
    groups: TuneGroups,
    hashes: Sequence[str],
    splits: Sequence[str],
    heldout: np.ndarray,
    valid_fraction: float,
    test_fraction: float,
) -> dict[str, int]:
    """What the grouping did (summary.json `grouping`): groups of more than one row, their rows,
    the largest; how many of them the per-row rule (`split_of` of each row) split across
    train/valid/test (`crossed_before`) and how many `splits` splits (`crossed_after`); rows
    whose split differs from the per-row rule's; held-out rows, and those held out only because
    their group holds a row of a held-out collection."""
    old = [split_of(h, valid_fraction, test_fraction) for h in hashes]
    members: dict[int, list[int]] = {}
    for i, r in enumerate(groups.labels):
        members.setdefault(int(r), []).append(i)
    multi = [m for m in members.values() if len(m) > 1]
    return {
        "groups": len(multi),
        "grouped_rows": sum(len(m) for m in multi),
        "largest_group": max((len(m) for m in multi), default=1 if len(hashes) else 0),
        "title_keys": groups.title_keys_used,
        "title_keys_capped": groups.title_keys_capped,
        "melody_pairs": groups.melody_pairs,
        "crossed_before": sum(1 for m in multi if len({old[i] for i in m}) > 1),
        "crossed_after": sum(1 for m in multi if len({splits[i] for i in m}) > 1),
        "rows_moved": sum(1 for a, b in zip(old, splits, strict=True) if a != b),
        "heldout_rows": sum(1 for s in splits if s == "heldout"),
        "heldout_by_group": sum(1 for i, s in enumerate(splits) if s == "heldout" and not heldout[i]),
    }


__all__ = [
    "GROUPING_VERSION",
    "MIN_MELODY_NOTES",
    "NUM_PERM",
    "SPLIT_VALUES",
    "STOP_TITLES",
    "TITLE_GROUP_CAP",
    "TuneGroups",
    "assign_splits",
    "group_rows",
    "grouping_stats",
    "melody_links",
    "melody_positions",
    "melody_signature",
    "melody_steps",
    "row_title",
    "split_of",
    "title_key",
]
