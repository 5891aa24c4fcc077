"""Evaluation tasks over embeddings: zero-shot classification, semantic search, linear probe,
and the baselines that need no training (chance, majority class)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from clamp.eval.metrics import accuracy, confusion_matrix, hit_rate, macro_f1, mrr, ranks_of_targets


def zero_shot(music: np.ndarray, prompt_embeddings: list[np.ndarray]) -> np.ndarray:
    """Predicted class per item: the nearest mean prompt embedding (renormalized)."""
    centroids = np.stack([p.mean(0) for p in prompt_embeddings])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return (music @ centroids.T).argmax(1)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    return {
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred, n_classes),
        "confusion": confusion_matrix(y_true, y_pred, n_classes),
    }


def search_metrics(queries: np.ndarray, targets: np.ndarray) -> dict:
    """Query i's target is item i. Returns MRR, HitRate@1/10/100 and the ranks."""
    ranks = ranks_of_targets(queries @ targets.T, np.arange(len(queries)))
    return {
        "mrr": mrr(ranks),
        "hit@1": hit_rate(ranks, 1),
        "hit@10": hit_rate(ranks, 10),
        "hit@100": hit_rate(ranks, 100),
        "ranks": ranks,
    }


def linear_probe(features: np.ndarray, y: np.ndarray, n_classes: int, folds: int = 5, seed: int = 0) -> dict:
    """Logistic regression on standardized frozen embeddings, stratified k-fold (folds reduced
    to the smallest class size when needed)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    smallest = min(Counter(y.tolist()).values())
    k = max(2, min(folds, smallest))
    pred = np.zeros_like(y)
    for train, test in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(features, y):
        # standardized: L2-normalized embeddings of a young model sit in a narrow cone, where an
        # unscaled, regularized logistic regression falls back to the majority class
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        clf.fit(features[train], y[train])
        pred[test] = clf.predict(features[test])
    out = classification_metrics(y, pred, n_classes)
    out["folds"] = k
    return out


def baselines(y: np.ndarray, n_classes: int) -> dict:
    """Chance (uniform guessing) and majority-class accuracy and macro-F1.

    Chance macro-F1 is its expected value per class: precision = the class's share p, recall =
    1 / n_classes, so F1 = 2p / (n_classes p + 1), averaged over the classes.
    """
    counts = np.bincount(y, minlength=n_classes)
    majority = counts.argmax()
    pred = np.full_like(y, majority)
    share = counts / max(len(y), 1)
    return {
        "chance/accuracy": 1.0 / n_classes,
        "chance/macro_f1": float(np.mean(2 * share / (n_classes * share + 1))),
        "majority/accuracy": accuracy(y, pred),
        "majority/macro_f1": macro_f1(y, pred, n_classes),
    }


def search_baselines(n: int) -> dict:
    """What a random ranking of n candidates scores in expectation: MRR = (1 + 1/2 + ... + 1/n) / n,
    HitRate@k = min(k, n) / n."""
    if n < 1:
        return {}
    return {"mrr": float((1.0 / np.arange(1, n + 1)).sum() / n), **{f"hit@{k}": min(k, n) / n for k in (1, 10, 100)}}
