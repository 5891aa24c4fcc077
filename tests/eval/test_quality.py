"""Bootstrap intervals, precision@10 of the retrieval probes and the collapse metrics, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from clamp.eval.metrics import (
    accuracy_ci,
    bootstrap_mean_ci,
    hit_rate_ci,
    macro_f1,
    macro_f1_ci,
    macro_f1_rows,
    mean_over_queries_ci,
    mrr_ci,
    precision_at_k,
    precision_at_k_resampled,
)
from clamp.eval.tasks import baselines, search_baselines
from clamp.model.geometry import alignment, mean_pairwise_cosine, uniformity

# ------------------------------------------------------------------ bootstrap intervals


def test_accuracy_interval_of_a_known_vector():
    y = np.zeros(100, dtype=np.int64)
    pred = np.r_[np.zeros(60), np.ones(40)].astype(np.int64)  # accuracy 0.6
    lo, hi = accuracy_ci(y, pred, resamples=1000, seed=0)
    # the binomial standard error is sqrt(0.6 * 0.4 / 100) = 0.049: the 95% interval is about 0.6 +- 0.096
    assert lo < 0.6 < hi
    assert 0.48 <= lo <= 0.53 and 0.67 <= hi <= 0.72
    assert accuracy_ci(y, pred, resamples=1000, seed=0) == (lo, hi)  # a fixed seed reproduces it
    assert accuracy_ci(y, pred, resamples=1000, seed=1) != (lo, hi)


def test_interval_of_a_constant_is_the_constant_and_empty_gives_none():
    assert accuracy_ci(np.ones(30), np.ones(30)) == (1.0, 1.0)
    assert bootstrap_mean_ci(np.array([])) is None
    assert bootstrap_mean_ci(np.ones(5), resamples=0) is None


def test_mrr_and_hit_rate_intervals_resample_the_queries():
    ranks = np.array([1, 1, 2, 4, 20, 1, 3, 50])
    lo, hi = mrr_ci(ranks, resamples=500, seed=0)
    point = float(np.mean(1 / ranks))
    assert lo <= point <= hi and lo > 0 and hi <= 1
    lo10, hi10 = hit_rate_ci(ranks, 10, resamples=500, seed=0)
    assert lo10 <= 6 / 8 <= hi10
    assert hit_rate_ci(np.array([1, 1, 1]), 1) == (1.0, 1.0)


def test_vectorised_macro_f1_matches_the_scikit_learn_one_on_every_resample():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 80), rng.integers(0, 4, 80)
    idx = rng.integers(0, 80, size=(25, 80))
    got = macro_f1_rows(y, p, idx, 4)
    want = [macro_f1(y[i], p[i], 4) for i in idx]
    assert got == pytest.approx(want)
    assert macro_f1_rows(y, p, np.arange(80)[None], 4)[0] == pytest.approx(macro_f1(y, p, 4))
    lo, hi = macro_f1_ci(y, p, 4, resamples=300, seed=0)
    assert lo <= macro_f1(y, p, 4) <= hi


def test_chance_baselines_by_hand():
    b = baselines(np.array([0, 0, 0, 1]), 2)
    # shares 3/4 and 1/4: 2p / (2p + 1) = (1.5 / 2.5 + 0.5 / 1.5) / 2
    assert b["chance/macro_f1"] == pytest.approx((0.6 + 1 / 3) / 2)
    assert baselines(np.array([0, 1, 2]), 3)["chance/macro_f1"] == pytest.approx(1 / 3)  # balanced: 1 / classes
    s = search_baselines(4)
    assert s["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert s["hit@1"] == 0.25 and s["hit@10"] == 1.0


# ------------------------------------------------------------------ precision@10


def test_precision_at_10_by_hand():
    # 12 candidates; query 0 ranks them 0..11, query 1 ranks them 11..0
    sim = np.array([np.arange(12, 0, -1), np.arange(1, 13)], dtype=float)
    relevant = np.zeros((2, 12), dtype=bool)
    relevant[:, [0, 1, 2, 10, 11]] = True
    # query 0's top 10 = candidates 0..9, 3 relevant (0, 1, 2); query 1's = 11..2, 3 relevant (11, 10, 2)
    p = precision_at_k(sim, relevant, 10)
    assert p.tolist() == pytest.approx([0.3, 0.3])
    relevant[1] = False
    relevant[1, [11, 10, 9, 0]] = True  # query 1's top 10 holds 11, 10, 9, not 0
    assert precision_at_k(sim, relevant, 10)[1] == pytest.approx(0.3)
    assert precision_at_k(sim, relevant, 2)[1] == pytest.approx(1.0)


def test_precision_with_fewer_candidates_and_ties():
    # 4 candidates, 2 relevant: the top "10" is all of them
    assert precision_at_k(np.array([[0.9, 0.1, 0.5, 0.3]]), np.array([[1, 0, 1, 0]], dtype=bool))[0] == 0.5
    # every score tied: the random share, whatever the order of the candidates
    rel = np.zeros((1, 40), dtype=bool)
    rel[0, :4] = True
    assert precision_at_k(np.zeros((1, 40)), rel)[0] == pytest.approx(0.1)
    # 8 clear winners (4 relevant), then a tie of 4 candidates (1 relevant) for the last 2 slots
    sim = (
        np.array([[9, 9, 9, 9, 9, 9, 9, 9, 1, 1, 1, 1, 0, 0]], dtype=float)
        + np.r_[np.arange(8, 0, -1) * 0.1, np.zeros(6)]
    )
    rel = np.array([[1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1]], dtype=bool)
    assert precision_at_k(sim, rel)[0] == pytest.approx((4 + 2 * 0.25) / 10)


def test_pool_resamples_centre_on_the_point_and_aggregate_over_queries():
    rng = np.random.default_rng(0)
    sim = rng.standard_normal((4, 200))
    rel = rng.random((4, 200)) < 0.3
    samples = precision_at_k_resampled(sim, rel, 10, resamples=400, seed=0)
    assert samples.shape == (400, 4)
    assert np.array_equal(samples, precision_at_k_resampled(sim, rel, 10, resamples=400, seed=0))
    point = precision_at_k(sim, rel, 10)
    assert np.abs(samples.mean(0) - point).max() < 0.1
    lo, hi = mean_over_queries_ci(samples)
    assert lo <= point.mean() <= hi


def test_probe_results_name_their_metrics():
    from clamp.eval.probes import Probe, probe_results

    labels = [{"key": "G major", "tune_type": "jig", "meter": "6/8"}] * 5 + [
        {"key": "D major", "tune_type": "reel"}
    ] * 15
    music = np.eye(20)
    probes = [
        Probe("a jig in 6/8", {"tune_type": ("jig",), "meter": ("6/8",)}),
        Probe("a polka", {"tune_type": ("polka",)}),  # no item matches: left out
        Probe("a tune in D major", {"key": ("D major",)}, group="key"),
    ]
    queries = np.zeros((3, 20))
    queries[0, :5] = 1.0  # finds the five jigs first
    queries[2, 5:15] = 1.0  # ten D major tunes first
    metrics, rows = probe_results(queries, music, probes, labels, [f"t{i}" for i in range(20)], resamples=200)
    assert metrics["corpus-probe/a_jig_in_6-8/p_at_10"] == pytest.approx(0.5)
    assert metrics["corpus-probe/a_jig_in_6-8/random"] == pytest.approx(0.25)
    assert metrics["corpus-probe/key/a_tune_in_d_major/p_at_10"] == pytest.approx(1.0)
    assert metrics["corpus-probe/key/p_at_10"] == pytest.approx(1.0)
    assert metrics["corpus-probe/key/queries"] == 1.0
    assert "corpus-probe/fixed/p_at_10_ci_low" in metrics
    assert not any("polka" in k for k in metrics)
    assert [r["query"] for r in rows] == ["a jig in 6/8", "a tune in D major"]
    assert rows[0]["top_10"].split()[:5] == ["t0", "t1", "t2", "t3", "t4"]


# ------------------------------------------------------------------ collapse metrics


def test_collapse_metrics_on_hand_made_vectors():
    same = np.tile([[3.0, 4.0, 0.0]], (6, 1))
    assert mean_pairwise_cosine(same) == pytest.approx(1.0)
    assert uniformity(same) == pytest.approx(0.0)  # log mean exp(0)
    ortho = np.eye(5) * 7.0  # rows are normalised first
    assert mean_pairwise_cosine(ortho) == pytest.approx(0.0)
    assert uniformity(ortho) == pytest.approx(-4.0)  # |x - y|^2 = 2 for every pair: log exp(-2 * 2)
    opposite = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert mean_pairwise_cosine(opposite) == pytest.approx(-1.0)
    assert uniformity(opposite) == pytest.approx(-8.0)
    assert alignment(ortho, ortho) == pytest.approx(0.0)
    assert alignment(np.eye(2), np.eye(2)[::-1]) == pytest.approx(2.0)  # |e1 - e2|^2 = 2


def test_uniformity_in_blocks_matches_the_direct_formula():
    from clamp.model import geometry

    x = np.random.default_rng(0).standard_normal((2500, 6))  # more rows than one block
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    i, j = np.triu_indices(len(u), 1)
    direct = np.log(np.mean(np.exp(-2 * ((u[i] - u[j]) ** 2).sum(1))))
    assert len(u) > geometry._BLOCK
    assert uniformity(x) == pytest.approx(direct)
    assert mean_pairwise_cosine(x) == pytest.approx(float((u @ u.T)[i, j].mean()))


def test_prompts_of_the_new_tasks():
    from clamp.inference.prompts import prompts_for

    assert prompts_for(["air", "reel"], "tune_type") == [
        ["This is an air.", "A traditional air tune.", "Tune type: air"],
        ["This is a reel.", "A traditional reel tune.", "Tune type: reel"],
    ]
    assert prompts_for(["B flat major"], "key")[0][1] == "Music in the key of B flat major."
    assert prompts_for(["6/8"], "meter")[0][0] == "A tune in 6/8 time."
    assert prompts_for(["Johann Sebastian Bach"], "composer")[0][2] == "Music by Johann Sebastian Bach."
    assert prompts_for(["jig"], "rhythm")[0] == [
        "This is a jig.",
        "Rhythm: jig",
        "A traditional jig tune.",
    ]  # unchanged
