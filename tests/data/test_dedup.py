"""MinHash near-duplicate detection and decontamination against reference items."""

from __future__ import annotations

import random

import numpy as np
import pytest

from clamp.abc.normalize import normalize_abc
from clamp.data import dedup
from clamp.data.clean import content_hash
from clamp.data.dedup import NUM_PERM, ReferenceIndex, find_near_duplicates, minhash, similarity


def make_tune(seed: int, n_bars: int = 64, key: str = "D") -> str:
    """A long, deterministic pseudo-random reel (about 900 characters of music)."""
    rng = random.Random(seed)
    bars = [
        "".join(rng.choice("CDEFGABcdefgab") + rng.choice(["", "2", "/2"]) for _ in range(6)) for _ in range(n_bars)
    ]
    lines = ["|".join(bars[i : i + 4]) + "|" for i in range(0, n_bars, 4)]
    return f"X:{seed}\nT:Tune {seed}\nM:4/4\nL:1/8\nK:{key}\n" + "\n".join(lines) + "\n"


def tiny_edit(tune: str) -> str:
    """Change one note in the middle of the body."""
    i = tune.index("K:") + 300
    while tune[i] not in "CDEFGABcdefgab":
        i += 1
    return tune[:i] + ("C" if tune[i] != "C" else "D") + tune[i + 1 :]


def sig(tune: str) -> np.ndarray:
    return minhash(normalize_abc(tune))


A, B, C = make_tune(1), make_tune(2), make_tune(3)
A_EDIT = tiny_edit(A)


def test_tiny_edit_really_changes_the_music():
    assert A_EDIT != A
    assert content_hash(normalize_abc(A_EDIT)) != content_hash(normalize_abc(A))


# ----------------------------------------------------------------------------------------- minhash


def test_minhash_shape_dtype_deterministic():
    s = sig(A)
    assert s.dtype == np.uint32 and s.shape == (NUM_PERM,)
    assert np.array_equal(s, sig(A))


def test_minhash_identical_music_identical_signature():
    # only the music body counts: title, number, key and whitespace do not
    renamed = A.replace("T:Tune 1", "T:Another title").replace("X:1", "X:99").replace("K:D", "K:G")
    spaced = A.replace("|", " | ")
    assert np.array_equal(sig(A), sig(renamed))
    assert np.array_equal(sig(A), sig(spaced))


def test_minhash_matches_multiply_shift_definition():
    # body "abcdef" has two 5-grams, read little-endian; hash = ((g * a + b) mod 2**64) >> 32
    grams = [int.from_bytes(b"abcde", "little"), int.from_bytes(b"bcdef", "little")]
    expected = [
        min(((g * int(a) + int(b)) % 2**64) >> 32 for g in grams) for a, b in zip(dedup._A, dedup._B, strict=True)
    ]
    assert minhash("K:C\nabcdef\n").tolist() == expected


def test_minhash_short_body_does_not_crash():
    assert minhash("K:C\nab\n").shape == (NUM_PERM,)
    assert minhash("K:C\n").shape == (NUM_PERM,)


def test_similarity_tiny_edit_high_unrelated_low():
    s_edit = similarity(sig(A), sig(A_EDIT))
    assert 0.85 <= s_edit < 1.0
    assert similarity(sig(A), sig(A)) == 1.0
    for x, y in [(A, B), (A, C), (B, C)]:
        assert similarity(sig(x), sig(y)) < 0.2


# ----------------------------------------------------------------------------------------- find_near_duplicates


SIGS = np.stack([sig(A), sig(B), sig(A_EDIT), sig(C), sig(A)])


def test_later_near_copy_points_to_first_occurrence():
    res = find_near_duplicates(SIGS, np.ones(5, dtype=bool))
    assert res.duplicate_of.tolist() == [-1, -1, 0, -1, 0]
    assert res.similarity[4] == pytest.approx(1.0)
    assert 0.85 <= res.similarity[2] < 1.0
    assert res.similarity[[0, 1, 3]].tolist() == [0.0, 0.0, 0.0]


def test_first_occurrence_wins_regardless_of_which_is_edited():
    sigs = np.stack([sig(A_EDIT), sig(A)])
    assert find_near_duplicates(sigs, np.ones(2, dtype=bool)).duplicate_of.tolist() == [-1, 0]


def test_ineligible_rows_are_ignored():
    eligible = np.array([False, True, True, True, True])
    res = find_near_duplicates(SIGS, eligible)
    # row 0 is out, so the edited copy (row 2) is now the first occurrence
    assert res.duplicate_of.tolist() == [-1, -1, -1, -1, 2]
    # an ineligible later copy is never marked
    eligible = np.array([True, True, True, True, False])
    assert find_near_duplicates(SIGS, eligible).duplicate_of.tolist() == [-1, -1, 0, -1, -1]


def test_threshold():
    res = find_near_duplicates(SIGS, np.ones(5, dtype=bool), threshold=1.0)
    assert res.duplicate_of.tolist() == [-1, -1, -1, -1, 0]


def test_fewer_than_two_eligible_rows():
    res = find_near_duplicates(SIGS, np.array([True, False, False, False, False]))
    assert res.duplicate_of.tolist() == [-1] * 5
    assert res.duplicate_of.dtype == np.int64


# ----------------------------------------------------------------------------------------- ReferenceIndex


@pytest.fixture(scope="module")
def index() -> ReferenceIndex:
    refs = {"bench/a": A, "bench/b": B}
    hashes = [content_hash(normalize_abc(t)) for t in refs.values()]
    return ReferenceIndex.build(list(refs), hashes, np.stack([sig(t) for t in refs.values()]))


def test_reference_exact_match(index):
    spaced = B.replace("|", " |")  # whitespace does not change the content hash
    assert index.match(content_hash(normalize_abc(spaced)), sig(spaced)) == ("bench/b", "exact", 1.0)


def test_reference_near_match(index):
    name, kind, s = index.match(content_hash(normalize_abc(A_EDIT)), sig(A_EDIT))
    assert (name, kind) == ("bench/a", "near")
    assert 0.85 <= s < 1.0


def test_reference_no_match(index):
    assert index.match(content_hash(normalize_abc(C)), sig(C)) is None
    # a near copy below a strict threshold is no match either
    assert index.match(content_hash(normalize_abc(A_EDIT)), sig(A_EDIT), threshold=1.0) is None


def test_empty_reference_index():
    empty = ReferenceIndex.build([], [], np.zeros((0, NUM_PERM), dtype=np.uint32))
    assert empty.match(content_hash(normalize_abc(A)), sig(A)) is None
