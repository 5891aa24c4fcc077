"""Figures of an evaluation: confusion matrices and rank histograms, drawn with matplotlib's
Agg backend (no display) and saved atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot_agg():
    """matplotlib's pyplot on the file-only Agg backend (no display on servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Lay out, write as PNG and release a pyplot figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot_agg().close(fig)
    return path


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    plt = pyplot_agg()
    # room for the class names too: the y labels widen it, the rotated x labels heighten it (a
    # figure sized by the class count alone could not fit long composer names: no layout at all)
    longest = max((len(c) for c in classes), default=0)
    side = 0.6 * len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + side + 0.08 * longest, 0.8 + side + 0.06 * longest))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_ranks(ranks: np.ndarray, path: Path, title: str) -> Path:
    plt = pyplot_agg()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(ranks, bins=np.unique(np.geomspace(1, max(2, ranks.max()), 30).astype(int)))
    ax.set_xscale("log")
    ax.set_xlabel("rank of the matching score (1 = best)")
    ax.set_ylabel("queries")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
