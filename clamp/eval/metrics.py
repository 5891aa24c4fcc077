"""Metrics, written out so each can be checked by hand."""

from __future__ import annotations

import numpy as np


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if len(y_true) else 0.0


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """cm[i, j] = items of true class i predicted as j."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in y_true or y_pred.

    A class with no true and no predicted items is left out (its F1 is undefined), as in
    scikit-learn's default `labels=None` behaviour.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(cm).astype(float)
    support = cm.sum(1)
    predicted = cm.sum(0)
    present = (support + predicted) > 0
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1[present].mean()) if present.any() else 0.0


def ranks_of_targets(similarity: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each query's target among all candidates (ties count against the target)."""
    sim = np.asarray(similarity)
    target_scores = sim[np.arange(len(sim)), targets]
    return (sim > target_scores[:, None]).sum(1) + (sim == target_scores[:, None]).sum(1)


def mrr(ranks: np.ndarray) -> float:
    return float(np.mean(1.0 / np.asarray(ranks))) if len(ranks) else 0.0


def hit_rate(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(np.asarray(ranks) <= k)) if len(ranks) else 0.0
