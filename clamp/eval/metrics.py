"""Classification metrics from scikit-learn; retrieval metrics (ranks, MRR, HitRate@k) written
out here because their tie rule (ties count against the target) has no scikit-learn equivalent.

scikit-learn is imported inside the functions, as in `clamp.eval.tasks`, so that importing
this module (the CLI does, through `clamp.eval.tasks`) stays cheap.
"""

from __future__ import annotations

import warnings

import numpy as np


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """cm[i, j] = items of true class i predicted as j, for classes 0..n_classes-1."""
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    if not len(y_true):  # scikit-learn rejects empty input
        return np.zeros((n_classes, n_classes), dtype=np.int64)
    with warnings.catch_warnings():
        # scikit-learn warns about a 1x1 result even when `labels` fixes the shape (n_classes=1)
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        cm = sk_confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))
    return cm.astype(np.int64)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in y_true or y_pred.

    A class with no true and no predicted items is left out (its F1 is undefined); a class
    only predicted, or only true, counts as F1 0. `n_classes` is kept for a uniform signature
    with `confusion_matrix`; the classes actually scored are those that occur.
    """
    from sklearn.metrics import f1_score

    present = np.union1d(np.asarray(y_true), np.asarray(y_pred))
    if not len(present):
        return 0.0
    return float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))


def ranks_of_targets(similarity: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each query's target among all candidates (ties count against the target)."""
    sim = np.asarray(similarity)
    target_scores = sim[np.arange(len(sim)), targets]
    return (sim > target_scores[:, None]).sum(1) + (sim == target_scores[:, None]).sum(1)


def mrr(ranks: np.ndarray) -> float:
    return float(np.mean(1.0 / np.asarray(ranks))) if len(ranks) else 0.0


def hit_rate(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(np.asarray(ranks) <= k)) if len(ranks) else 0.0
