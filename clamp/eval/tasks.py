"""Evaluation tasks over embeddings: zero-shot classification, semantic search, linear probe,
and the baselines that need no training (chance, majority class)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from clamp.eval.metrics import accuracy, confusion_matrix, hit_rate, macro_f1, mrr, ranks_of_targets

DEFAULT_TEMPLATES = {
    "genre": ["This is a {label} piece.", "A {label} song.", "Music in the {label} genre."],
    "emotion": ["This music sounds {label}.", "A {label} piece of video game music.", "The mood of this piece is {label}."],
    "pianist": ["A piano piece played by {label}.", "This is music by {label}.", "{label} at the piano."],
    "rhythm": ["This is a {label}.", "Rhythm: {label}", "A traditional {label} tune."],
    "origin": ["A folk song from {label}.", "Origin: {label}", "Traditional music of {label}."],
    "composer": ["A piece composed by {label}.", "Composer: {label}", "Music by {label}."],
    "tune_type": ["This is {article} {label}.", "A traditional {label} tune.", "Tune type: {label}"],
    "key": ["A tune in {label}.", "Music in the key of {label}.", "Key: {label}"],
    "meter": ["A tune in {label} time.", "Music in {label} time.", "Meter: {label}"],
    "collection": ["A tune from {label}.", "A tune collected in {label}.", "Collection: {label}"],
}
GENERIC_TEMPLATES = ["This is a {label} piece.", "{label}"]

# Held-out prompts: phrased as users type queries, never as the training captions are written
# (a test checks that none equals or contains a caption of the training rows). The quality
# targets and the README use these; `DEFAULT_TEMPLATES` (the training style) are shown beside.
# `{spoken}` is a meter in words ("3/4" -> "three-four").
USER_TEMPLATES = {
    "genre": ["{label}", "{label} music", "a {label} track"],
    "emotion": ["{label} music", "something that sounds {label}", "a {label} mood"],
    "pianist": ["{label}", "{label} playing piano", "a recording of {label}"],
    "rhythm": ["{article} {label}", "looking for {article} {label}", "some {label} music"],
    "origin": ["music from {label}", "folk tunes of {label}", "something from {label}"],
    "composer": ["{label}", "something by {label}", "works of {label}"],
    "tune_type": ["{article} {label}", "looking for {article} {label}", "some {label} music"],
    "key": ["{label}", "the key of {label}", "{label} tonality"],
    "meter": ["{label} meter", "{spoken} time", "music with a {spoken} meter"],
    "collection": ["{label}", "tunes out of {label}", "something from {label}"],
}
GENERIC_USER_TEMPLATES = ["{label}", "something {label}"]
_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                 "twelve", "thirteen", "fourteen", "fifteen", "sixteen"]


def spoken(label: str) -> str:
    """A meter in words, as people say it: "3/4" -> "three-four", "12/8" -> "twelve-eight";
    anything else as it is."""
    top, _, bottom = label.partition("/")
    if top.isdigit() and bottom.isdigit() and int(top) < len(_NUMBER_WORDS) and int(bottom) < len(_NUMBER_WORDS):
        return f"{_NUMBER_WORDS[int(top)]}-{_NUMBER_WORDS[int(bottom)]}"
    return label


def article(word: str) -> str:
    """"a" or "an" before a word ("an air", "a reel", "an 8-bar tune")."""
    w = word.strip().lower()
    return "an" if w[:1] in tuple("aeio8") or w.startswith(("11", "18", "hour", "honest")) else "a"


def prompts_for(labels: Sequence[str], task: str, templates: dict[str, list[str]] | None = None,
                style: str = "training") -> list[list[str]]:
    """Each label filled into the task's templates; `{label}` is the label, `{article}` "a" or "an",
    `{spoken}` a meter in words. `style` "training" starts from `DEFAULT_TEMPLATES`, "user" from
    `USER_TEMPLATES`; `templates` overrides either."""
    base, generic = (USER_TEMPLATES, GENERIC_USER_TEMPLATES) if style == "user" else (DEFAULT_TEMPLATES, GENERIC_TEMPLATES)
    table = {**base, **(templates or {})}
    return [[t.format(label=label, article=article(label), spoken=spoken(label)) for t in table.get(task, generic)]
            for label in labels]


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
    return {"mrr": mrr(ranks), "hit@1": hit_rate(ranks, 1), "hit@10": hit_rate(ranks, 10),
            "hit@100": hit_rate(ranks, 100), "ranks": ranks}


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
    return {"mrr": float((1.0 / np.arange(1, n + 1)).sum() / n),
            **{f"hit@{k}": min(k, n) / n for k in (1, 10, 100)}}
