"""Classification metrics from scikit-learn; retrieval metrics (ranks, MRR, HitRate@k) written
out here because their tie rule (ties count against the target) has no scikit-learn equivalent.

scikit-learn is imported inside the functions, as in `clamp.eval.tasks`, so that importing
this module (the CLI does, through `clamp.eval.tasks`) stays cheap.
"""

from __future__ import annotations

import warnings

import numpy as np

# the retrieval metrics are shared with validation during training (clamp.train may not import clamp.eval)
from clamp.model.geometry import hit_rate as hit_rate
from clamp.model.geometry import mrr as mrr
from clamp.model.geometry import ranks_of_targets as ranks_of_targets


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


# --- Bootstrap intervals (docs/evaluation.md, "Intervals") --------------------------------------
# Percentile intervals from resampling items with replacement, numpy only and vectorised: a block of
# resamples is one (resamples, n) index array. A fixed seed makes every interval reproducible.

CI_LEVEL = 0.95
RESAMPLES = 1000
_MAX_CELLS = 1 << 22  # resample blocks hold at most this many indices (32 MiB of int64)


def _index_blocks(n: int, resamples: int, seed: int, width: int | None = None):
    """(block, n) arrays of indices drawn with replacement, `resamples` rows in all."""
    rng = np.random.default_rng(seed)
    block = max(1, _MAX_CELLS // max(width or n, 1))
    for start in range(0, resamples, block):
        yield rng.integers(0, n, size=(min(block, resamples - start), n))


def percentile_interval(samples: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """The central `level` interval of bootstrap samples (percentile method)."""
    lo, hi = np.quantile(np.asarray(samples, dtype=np.float64), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_mean_ci(
    values: np.ndarray, resamples: int = RESAMPLES, seed: int = 0, level: float = CI_LEVEL
) -> tuple[float, float] | None:
    """Interval of the mean of per-item values (correct 0/1 for accuracy, 1/rank for MRR, ...);
    None when there is nothing to resample."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values) or resamples < 1:
        return None
    means = np.concatenate([values[idx].mean(1) for idx in _index_blocks(len(values), resamples, seed)])
    return percentile_interval(means, level)


def accuracy_ci(
    y_true: np.ndarray, y_pred: np.ndarray, resamples: int = RESAMPLES, seed: int = 0, level: float = CI_LEVEL
) -> tuple[float, float] | None:
    return bootstrap_mean_ci(np.asarray(y_true) == np.asarray(y_pred), resamples, seed, level)


def macro_f1_rows(y_true: np.ndarray, y_pred: np.ndarray, idx: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro-F1 of each resample (row of `idx`), with `macro_f1`'s rule: classes present in the
    resample's truth or predictions, a class only true or only predicted counting as F1 0."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    k = max(n_classes, int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1)
    yt, yp = y_true[idx], y_pred[idx]
    rows = len(idx)
    offset = (np.arange(rows) * k)[:, None]
    true = np.bincount((yt + offset).ravel(), minlength=rows * k).reshape(rows, k)
    pred = np.bincount((yp + offset).ravel(), minlength=rows * k).reshape(rows, k)
    tp = np.bincount((yt + offset)[yt == yp], minlength=rows * k).reshape(rows, k)
    denom = true + pred
    present = denom > 0
    f1 = np.where(present, 2.0 * tp / np.maximum(denom, 1), 0.0)
    return f1.sum(1) / np.maximum(present.sum(1), 1)


def macro_f1_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> tuple[float, float] | None:
    n = len(y_true)
    if not n or resamples < 1:
        return None
    samples = np.concatenate(
        [macro_f1_rows(y_true, y_pred, idx, n_classes) for idx in _index_blocks(n, resamples, seed)]
    )
    return percentile_interval(samples, level)


def mrr_ci(
    ranks: np.ndarray, resamples: int = RESAMPLES, seed: int = 0, level: float = CI_LEVEL
) -> tuple[float, float] | None:
    """Interval of the MRR, resampling queries (the candidates stay fixed)."""
    return bootstrap_mean_ci(1.0 / np.asarray(ranks, dtype=np.float64), resamples, seed, level)


def hit_rate_ci(
    ranks: np.ndarray, k: int, resamples: int = RESAMPLES, seed: int = 0, level: float = CI_LEVEL
) -> tuple[float, float] | None:
    return bootstrap_mean_ci(np.asarray(ranks) <= k, resamples, seed, level)


# --- Precision@k of retrieval probes (docs/evaluation.md, "Retrieval probes") --------------------


def _ranked_relevance(similarity: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the candidates' order (best first, stable) and their relevance in that order,
    with each run of tied scores given its run's mean relevance (ties are neither won nor lost)."""
    sim = np.asarray(similarity, dtype=np.float64)
    rel = np.asarray(relevant, dtype=np.float64)
    q, n = sim.shape
    order = np.argsort(-sim, axis=1, kind="stable")
    s = np.take_along_axis(sim, order, 1)
    r = np.take_along_axis(rel, order, 1)
    group = np.concatenate([np.zeros((q, 1), dtype=np.int64), np.cumsum(s[:, 1:] != s[:, :-1], axis=1)], axis=1)
    group += (np.arange(q) * n)[:, None]
    sums = np.bincount(group.ravel(), weights=r.ravel(), minlength=q * n)
    sizes = np.bincount(group.ravel(), minlength=q * n)
    return order, (sums / np.maximum(sizes, 1))[group]


def precision_at_k(similarity: np.ndarray, relevant: np.ndarray, k: int = 10) -> np.ndarray:
    """Share of each query's top k candidates that are relevant ((queries, candidates) inputs).

    With fewer than k candidates, the share of all of them. Ties at the cut are counted at the
    tied group's share of relevant items (the expected value under random tie-breaking), so a
    model that scores every candidate the same gets exactly the random share.
    """
    sim = np.asarray(similarity)
    if sim.ndim != 2 or not sim.shape[1]:
        return np.zeros(len(sim))
    kk = min(k, sim.shape[1])
    _, r = _ranked_relevance(sim, relevant)
    return r[:, :kk].sum(1) / kk


def precision_at_k_resampled(
    similarity: np.ndarray, relevant: np.ndarray, k: int = 10, resamples: int = RESAMPLES, seed: int = 0
) -> np.ndarray:
    """(resamples, queries) precision@k over bootstrap resamples of the candidate pool.

    One resample of the pool (candidates drawn with replacement: a count per candidate) is shared
    by all queries, so the columns can be averaged into an aggregate. A candidate drawn c times
    fills up to c of the k slots.
    """
    sim = np.asarray(similarity)
    q, n = sim.shape
    if not n or not q or resamples < 1:
        return np.zeros((max(resamples, 0), q))
    kk = min(k, n)
    order, r = _ranked_relevance(sim, relevant)
    # a resample's top k lies among the first few ranked candidates unless it drew them too rarely:
    # work on the first `width` of each ranking and redo a block at full width when that happened
    width = min(n, 4 * kk + 64)
    rng = np.random.default_rng(seed)
    block = max(1, _MAX_CELLS // max(q * width, n))
    out = []
    for start in range(0, resamples, block):
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(block, resamples - start))  # (b, n)
        for w in (width, n):
            c = counts[:, order[:, :w]]  # (b, q, w): counts in each query's ranked order
            if w == n or (c.sum(2) >= kk).all():
                break
        before = np.cumsum(c, axis=2) - c
        take = np.clip(kk - before, 0, c)
        out.append((take * r[None, :, : c.shape[2]]).sum(2) / kk)
    return np.concatenate(out)


def mean_over_queries_ci(
    samples: np.ndarray, resamples_seed: int = 0, level: float = CI_LEVEL
) -> tuple[float, float] | None:
    """Interval of the mean over queries: each row of `samples` (one pool resample, see
    `precision_at_k_resampled`) is averaged over a resample of the queries drawn with replacement,
    so the interval covers both the pool and the choice of queries."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2 or not samples.size:
        return None
    b, q = samples.shape
    qidx = np.random.default_rng(resamples_seed).integers(0, q, size=(b, q))
    return percentile_interval(np.take_along_axis(samples, qidx, 1).mean(1), level)


# 97.5% quantiles of Student's t by degrees of freedom (beyond 9: the normal's 1.96)
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def t_interval(values: list[float]) -> tuple[float, float | None, float | None]:
    """The mean of `values` and its 95% Student-t interval (None bounds for a single value)."""
    import statistics

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None, None
    half = T_975.get(len(values) - 1, 1.96) * statistics.stdev(values) / len(values) ** 0.5
    return mean, mean - half, mean + half
