"""Data order: epochs are permutations, batches are pure functions of (seed, g), length grouping."""

from __future__ import annotations

from itertools import islice

import numpy as np

from clamp.train.loop import ResumableBatchSampler


def indices(batch: list[tuple[int, int]]) -> list[int]:
    return [i for i, _ in batch]


def test_each_epoch_is_a_permutation_and_batches_are_numbered():
    sampler = ResumableBatchSampler(10, 3, seed=5)  # 3 batches per epoch, 1 item left out
    first = list(islice(iter(sampler), 6))
    for epoch in (first[:3], first[3:]):
        seen = [i for b in epoch for i in indices(b)]
        assert len(seen) == len(set(seen)) == 9
    assert [g for b in first for _, g in b] == [g for g in range(6) for _ in range(3)]
    assert indices(first[0]) != indices(first[3])  # a new order each epoch


def test_a_restarted_sampler_continues_with_the_same_batches():
    lengths = np.random.default_rng(0).integers(1, 512, 500)
    for kw in ({}, {"lengths": lengths, "group_batches": 4}):
        whole = list(islice(iter(ResumableBatchSampler(500, 16, seed=2, **kw)), 70))
        resumed = list(islice(iter(ResumableBatchSampler(500, 16, seed=2, start_batch=45, **kw)), 25))
        assert resumed == whole[45:]


def test_ranks_split_each_global_batch():
    a = ResumableBatchSampler(40, 4, seed=1, rank=0, world=2)
    b = ResumableBatchSampler(40, 4, seed=1, rank=1, world=2)
    whole = ResumableBatchSampler(40, 8, seed=1)
    for g in range(10):
        assert indices(a.batch(g)) + indices(b.batch(g)) == indices(whole.batch(g))


def test_length_grouping_keeps_the_epochs_items_and_cuts_padding():
    rng = np.random.default_rng(0)
    n, batch = 4096, 16
    lengths = np.minimum(rng.lognormal(3.3, 1.0, n).astype(int) + 1, 512)  # most tunes short, some at the cap
    plain = ResumableBatchSampler(n, batch, seed=7)
    grouped = ResumableBatchSampler(n, batch, seed=7, lengths=lengths, group_batches=64)
    for epoch in range(2):
        g_plain = plain.epoch_batches(epoch)
        g_grouped = grouped.epoch_batches(epoch)
        # the same items each epoch, each once
        assert sorted(g_grouped.ravel()) == sorted(g_plain.ravel())
        padded_plain = (lengths[g_plain].max(1) * batch).sum()
        padded_grouped = (lengths[g_grouped].max(1) * batch).sum()
        real = lengths[g_plain].sum()
        assert real / padded_plain < 0.35  # without grouping most positions are padding
        assert real / padded_grouped > 0.85  # with it, little is
        # a group of 64 batches is sorted: each batch spans a narrow band of lengths
        spread = lengths[g_grouped].max(1) - lengths[g_grouped].min(1)
        assert np.median(spread) <= 2


def test_length_grouped_batch_is_a_sorted_slice_of_its_group():
    """n 8, batch 2, groups of 2 batches: each batch is the 2 shortest or 2 longest of its group of 4."""
    lengths = np.array([50, 10, 70, 30, 20, 80, 60, 40])
    sampler = ResumableBatchSampler(8, 2, seed=3, lengths=lengths, group_batches=2)
    perm = np.random.default_rng([3, 0]).permutation(8)
    groups = [set(perm[:4].tolist()), set(perm[4:].tolist())]
    batches = sampler.epoch_batches(0)
    for b in batches:
        group = next(g for g in groups if set(b.tolist()) <= g)
        ranked = sorted(group, key=lambda i: lengths[i])
        assert set(b.tolist()) in (set(ranked[:2]), set(ranked[2:]))
