"""The geometry of an embedding space, numpy only (no torch), for evaluation and training to share.

`alignment` and `uniformity` are the two properties of contrastive representations of Wang &
Isola (ICML 2020), "Understanding contrastive representation learning through alignment and
uniformity on the hypersphere"; `mean_pairwise_cosine` is the simplest collapse check: near 1
when every embedding points the same way (docs/evaluation.md, "Collapse check"). Every function
L2-normalises its rows first, as the definitions assume points on the unit sphere.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "COLLAPSE_COSINE",
    "alignment",
    "hit_rate",
    "l2_normalize",
    "mean_pairwise_cosine",
    "mrr",
    "ranks_of_targets",
    "uniformity",
]

# Above this mean pairwise cosine the space has collapsed: every item looks alike to the model
# (training summary and evaluation warn; docs/evaluation.md, "Collapse check").
COLLAPSE_COSINE = 0.95

_BLOCK = 1024  # rows per block of the pairwise computations: memory O(block x n), not O(n^2)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float64; a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-d array of row vectors, got shape {x.shape}")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def mean_pairwise_cosine(x: np.ndarray) -> float:
    """Mean cosine similarity over all pairs i != j: 1 for identical directions, 0 for orthogonal.

    O(n d): sum_{i != j} x_i.x_j = |sum_i x_i|^2 - sum_i |x_i|^2 for unit rows.
    """
    u = l2_normalize(x)
    n = len(u)
    if n < 2:
        return float("nan")
    total = u.sum(0)
    return float((total @ total - (u * u).sum()) / (n * (n - 1)))


def uniformity(x: np.ndarray, t: float = 2.0) -> float:
    """log of the mean of exp(-t |x_i - x_j|^2) over pairs i < j (Wang & Isola's L_uniform, t = 2).

    0 when all points coincide (a collapsed space); lower is more uniform: -2t for an orthonormal
    set, about -4 for many points spread uniformly on a high-dimensional sphere (t = 2).
    Computed in row blocks with a log-sum-exp, so memory stays O(block x n).
    """
    u = l2_normalize(x)
    n = len(u)
    if n < 2:
        return float("nan")
    top, total, count = -np.inf, 0.0, 0  # running log-sum-exp: total = sum exp(value - top)
    for start in range(0, n - 1, _BLOCK):
        block = u[start : start + _BLOCK]
        sq = np.maximum(2.0 - 2.0 * (block @ u.T), 0.0)  # |a - b|^2 of unit vectors
        upper = np.arange(n)[None, :] > np.arange(start, start + len(block))[:, None]  # pairs i < j only
        values = -t * sq[upper]
        if not len(values):
            continue
        new_top = max(top, float(values.max()))
        total = total * np.exp(top - new_top) + float(np.exp(values - new_top).sum())
        top, count = new_top, count + len(values)
    return float(top + np.log(total / count))


def alignment(x: np.ndarray, y: np.ndarray, alpha: float = 2.0) -> float:
    """Mean |x_i - y_i|^alpha over positive pairs (row i of x with row i of y); 0 is perfect alignment."""
    a, b = l2_normalize(x), l2_normalize(y)
    if a.shape != b.shape:
        raise ValueError(f"x and y must have the same shape, got {a.shape} and {b.shape}")
    if not len(a):
        return float("nan")
    return float(np.mean(np.linalg.norm(a - b, axis=1) ** alpha))


# --- retrieval ---------------------------------------------------------------------------------
def ranks_of_targets(similarity: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each query's target among all candidates (ties count against the target,
    so a model that scores everything alike ranks every target last)."""
    sim = np.asarray(similarity)
    target_scores = sim[np.arange(len(sim)), targets]
    return (sim > target_scores[:, None]).sum(1) + (sim == target_scores[:, None]).sum(1)


def mrr(ranks: np.ndarray) -> float:
    return float(np.mean(1.0 / np.asarray(ranks))) if len(ranks) else 0.0


def hit_rate(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(np.asarray(ranks) <= k)) if len(ranks) else 0.0
