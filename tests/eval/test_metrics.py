"""Every metric against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from clamp.eval.metrics import accuracy, confusion_matrix, hit_rate, macro_f1, mrr, ranks_of_targets
from clamp.eval.tasks import baselines, search_metrics, zero_shot


def test_accuracy_and_confusion():
    y = np.array([0, 0, 1, 2, 2, 2])
    p = np.array([0, 1, 1, 2, 0, 2])
    assert accuracy(y, p) == pytest.approx(4 / 6)
    assert confusion_matrix(y, p, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_macro_f1_by_hand():
    y = np.array([0, 0, 1, 2, 2, 2])
    p = np.array([0, 1, 1, 2, 0, 2])
    # class 0: tp 1, support 2, predicted 2 -> F1 2/4 = 0.5
    # class 1: tp 1, support 1, predicted 2 -> F1 2/3
    # class 2: tp 2, support 3, predicted 2 -> F1 4/5
    assert macro_f1(y, p, 3) == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)
    # a class neither true nor predicted is left out; one only predicted counts as F1 0
    assert macro_f1(np.array([0, 0]), np.array([0, 1]), 4) == pytest.approx((2 / 3 + 0.0) / 2)


def test_macro_f1_class_never_predicted_by_hand():
    y = np.array([0, 0, 1, 1, 2])
    p = np.array([0, 0, 0, 1, 1])
    # class 0: tp 2, support 2, predicted 3 -> F1 4/5
    # class 1: tp 1, support 2, predicted 2 -> F1 2/4 = 0.5
    # class 2: tp 0, support 1, never predicted -> F1 0 (zero_division gives 0, no warning)
    # class 3: neither true nor predicted -> left out of the mean
    assert macro_f1(y, p, 4) == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    assert confusion_matrix(y, p, 4).tolist() == [[2, 0, 0, 0], [1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]


def test_empty_inputs():
    empty = np.array([], dtype=np.int64)
    assert accuracy(empty, empty) == 0.0
    assert macro_f1(empty, empty, 3) == 0.0
    assert confusion_matrix(empty, empty, 3).tolist() == [[0, 0, 0]] * 3


def test_macro_f1_matches_scikit_learn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    assert macro_f1(y, p, 5) == pytest.approx(f1_score(y, p, average="macro"))


def test_ranks_mrr_and_hit_rate():
    sim = np.array(
        [
            [0.9, 0.1, 0.5],  # target 0 is best -> rank 1
            [0.8, 0.2, 0.3],  # target 1 is last -> rank 3
            [0.4, 0.4, 0.4],  # ties count against the target -> rank 3
        ]
    )
    ranks = ranks_of_targets(sim, np.array([0, 1, 2]))
    assert ranks.tolist() == [1, 3, 3]
    assert mrr(ranks) == pytest.approx((1 + 1 / 3 + 1 / 3) / 3)
    assert hit_rate(ranks, 1) == pytest.approx(1 / 3)
    assert hit_rate(ranks, 3) == 1.0
    res = search_metrics(np.eye(3), np.eye(3))
    assert res["mrr"] == 1.0 and res["hit@1"] == 1.0


def test_zero_shot_averages_prompts_per_label():
    music = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    prompts = [np.array([[1.0, 0.0], [0.8, 0.6]]), np.array([[0.0, 1.0], [0.0, 1.0]])]
    # centroid 0 = (0.9, 0.3)/0.949; item 2 (0.6, 0.8) scores 0.822 against it and 0.8 against (0, 1)
    assert zero_shot(music, prompts).tolist() == [0, 1, 0]


def test_baselines():
    y = np.array([0, 0, 0, 1])
    b = baselines(y, 2)
    assert b["chance/accuracy"] == 0.5
    assert b["majority/accuracy"] == 0.75
    assert b["majority/macro_f1"] == pytest.approx((2 * 3 / 7 + 0) / 2)


def test_linear_probe_separates_classes_in_a_narrow_cone():
    """Two classes that differ by a tiny offset on unit vectors (like a young model's
    embeddings) must still be separated: the probe standardizes its inputs."""
    from clamp.eval.tasks import linear_probe

    rng = np.random.default_rng(0)
    base = np.ones(16) / 4.0
    y = np.repeat([0, 1], 40)
    x = base + 1e-3 * rng.standard_normal((80, 16))
    x[:, 0] += 1e-3 * np.where(y == 1, 3.0, -3.0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    result = linear_probe(x, y, 2)
    assert result["accuracy"] > 0.9 and result["folds"] == 5
