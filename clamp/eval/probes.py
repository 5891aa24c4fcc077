"""Retrieval probes (docs/evaluation.md, "Retrieval probes"): fixed text queries, each with the
labels it asks for, ranked against every item of the held-out split; precision@10 is the share
of the top 10 that satisfy the query, next to the share of the whole pool that does (what a
random ranking gets in expectation).

Besides the fixed list, one query per class of the `key`, `meter` and `tune_type` held-out tasks
("a tune in G major", "a tune in 6/8 time", "a reel") gives a per-task mean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from clamp.eval.benchmarks import HeldoutItems, heldout_benchmark, label_key
from clamp.eval.metrics import (
    mean_over_queries_ci,
    percentile_interval,
    precision_at_k,
    precision_at_k_resampled,
)
from clamp.inference.prompts import article

PROBE_BENCHMARK = "corpus-probe"
K = 10

_BACH = ("Johann Sebastian Bach", "J.S. Bach", "Bach, Johann Sebastian", "JS Bach", "Bach")
_PALESTRINA = (
    "Giovanni Pierluigi da Palestrina",
    "Palestrina, Giovanni Perluigi da",
    "Palestrina, Giovanni Pierluigi da",
    "Palestrina",
)
_ESSEN = ("Essen Folksong Collection", "Essen Folk Song Collection", "Essen", "essenFolksong")


@dataclass
class Probe:
    """A text query and what it targets: every listed label must take one of its values
    (compared by `label_key`: case and punctuation ignored)."""

    query: str
    where: dict[str, tuple[str, ...]]
    group: str = "fixed"  # "fixed", or the held-out task whose classes made it
    _keys: dict[str, set[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._keys = {name: {label_key(v) for v in values} for name, values in self.where.items()}

    @property
    def slug(self) -> str:
        """The query in a metric name: "a jig in 6/8" -> "a_jig_in_6-8" (a task's query under its task)."""
        s = re.sub(r"[^a-z0-9-]+", "_", self.query.lower().replace("/", "-")).strip("_")
        return s if self.group == "fixed" else f"{self.group}/{s}"

    @property
    def target(self) -> str:
        def one(name: str, values: tuple[str, ...]) -> str:
            if len(values) == 1:
                return f"{name} = {values[0]}"
            if len(values) == 2:
                return f"{name} in {{{values[0]}, {values[1]}}}"
            return f"{name} = {values[0]} (or {len(values) - 1} other spellings)"

        return " & ".join(one(name, values) for name, values in self.where.items())

    def matches(self, labels: dict[str, str]) -> bool:
        return all(name in labels and label_key(labels[name]) in keys for name, keys in self._keys.items())


# The fixed probes: tune types, keys and meters of the folk collections, and the corpus's composers
# and collections. A probe no pool item satisfies is left out of that pool's results.
PROBES: list[Probe] = [
    Probe("a tune in G major", {"key": ("G major",)}),
    Probe("a tune in D major", {"key": ("D major",)}),
    Probe("a tune in E minor", {"key": ("E minor",)}),
    Probe("a tune in A dorian", {"key": ("A dorian",)}),
    Probe("a reel in D major", {"tune_type": ("reel",), "key": ("D major",)}),
    Probe("a jig in 6/8", {"tune_type": ("jig", "double jig"), "meter": ("6/8",)}),
    Probe("a slip jig in 9/8", {"tune_type": ("slip jig",), "meter": ("9/8",)}),
    Probe("a waltz in 3/4", {"tune_type": ("waltz",), "meter": ("3/4",)}),
    Probe("a hornpipe", {"tune_type": ("hornpipe",)}),
    Probe("a strathspey", {"tune_type": ("strathspey",)}),
    Probe("a polka", {"tune_type": ("polka",)}),
    Probe("a march", {"tune_type": ("march",)}),
    Probe("a slow air", {"tune_type": ("air", "slow air")}),
    Probe("a tune in 2/4 time", {"meter": ("2/4",)}),
    Probe("a tune in a minor key", {"mode": ("minor",)}),
    Probe("a mixolydian tune", {"mode": ("mixolydian",)}),
    Probe("a chorale by Bach", {"composer": _BACH}),
    Probe("a piece by Palestrina", {"composer": _PALESTRINA}),
    Probe("a German folk song", {"collection": _ESSEN}),
    Probe("a Baroque piece", {"period": ("Baroque",)}),
]

# Held-out probes, phrased as users search (group "user"): none equals or contains a training
# caption (tests/eval/test_user_prompts.py), so they show what a user's own wording gets.
USER_PROBES: list[Probe] = [
    Probe("a fast reel", {"tune_type": ("reel",)}, group="user"),
    Probe("D major reels", {"tune_type": ("reel",), "key": ("D major",)}, group="user"),
    Probe("a waltz in three-four time", {"tune_type": ("waltz",), "meter": ("3/4",)}, group="user"),
    Probe("E minor tunes", {"key": ("E minor",)}, group="user"),
    Probe("G major melodies", {"key": ("G major",)}, group="user"),
    Probe("hornpipes", {"tune_type": ("hornpipe",)}, group="user"),
    Probe("a jig to dance to", {"tune_type": ("jig", "double jig")}, group="user"),
    Probe("slip jigs in nine-eight", {"tune_type": ("slip jig",), "meter": ("9/8",)}, group="user"),
    Probe("polkas", {"tune_type": ("polka",)}, group="user"),
    Probe("marches", {"tune_type": ("march",)}, group="user"),
    Probe("minor-key music", {"mode": ("minor",)}, group="user"),
    Probe("something dorian", {"mode": ("dorian",)}, group="user"),
    Probe("Bach chorales", {"composer": _BACH}, group="user"),
    Probe("old German folk songs", {"collection": _ESSEN}, group="user"),
]

# one query per class of these held-out tasks; {label} is the class, {article} "a" or "an",
# {spoken} a meter in words. The `user-` groups are phrased as users search.
TASK_PROBES = {"key": "a tune in {label}", "meter": "a tune in {label} time", "tune_type": "{article} {label}"}
USER_TASK_PROBES = {"key": "{label} tunes", "meter": "{spoken} time", "tune_type": "looking for {article} {label}"}


def task_probes(items: HeldoutItems, style: str = "training") -> list[Probe]:
    """One probe per class of the `key`, `meter` and `tune_type` tasks (the classes those tasks
    keep); `style` "user" phrases them as users search, in groups `user-key`, ..."""
    from clamp.inference.prompts import spoken

    table, prefix = (USER_TASK_PROBES, "user-") if style == "user" else (TASK_PROBES, "")
    out = []
    for task, template in table.items():
        for label in heldout_benchmark(items, task).classes:
            query = template.format(label=label, article=article(label), spoken=spoken(label))
            out.append(Probe(query, {task: (label,)}, group=prefix + task))
    return out


def relevance(probes: list[Probe], labels: list[dict[str, str]]) -> np.ndarray:
    """(probes, items) bool: which items satisfy each probe."""
    return np.array([[p.matches(lab) for lab in labels] for p in probes], dtype=bool).reshape(len(probes), len(labels))


def probe_results(
    query_embeddings: np.ndarray,
    music: np.ndarray,
    probes: list[Probe],
    labels: list[dict[str, str]],
    ids: list[str] | None = None,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    benchmark: str = PROBE_BENCHMARK,
) -> tuple[dict[str, float], list[dict]]:
    """Metrics and per-probe rows of the probes over a pool (rows of `music`, labels per item).

    Per probe: precision@10 with a 95% interval from resampling the pool, the random share (the
    share of the pool that satisfies it) and the count. Per group (`fixed`, `key`, `meter`,
    `tune_type`): the mean over its probes, with an interval from resampling the pool and the
    probes together. Probes that no item satisfies are left out.
    """
    rel = relevance(probes, labels)
    keep = np.flatnonzero(rel.any(1))
    probes, rel, q_emb = [probes[i] for i in keep], rel[keep], np.asarray(query_embeddings)[keep]
    metrics: dict[str, float] = {}
    rows: list[dict] = []
    if not probes:
        return metrics, rows
    sim = q_emb @ np.asarray(music).T
    p = precision_at_k(sim, rel, K)
    samples = precision_at_k_resampled(sim, rel, K, resamples, seed) if resamples > 0 else None
    random = rel.mean(1)
    top = np.argsort(-sim, axis=1, kind="stable")[:, :K]
    b = benchmark
    for i, probe in enumerate(probes):
        name = f"{b}/{probe.slug}"
        metrics[f"{name}/p_at_10"] = float(p[i])
        metrics[f"{name}/random"] = float(random[i])
        metrics[f"{name}/matches"] = float(rel[i].sum())
        row = {
            "query": probe.query,
            "group": probe.group,
            "target": probe.target,
            "matches": int(rel[i].sum()),
            "random": float(random[i]),
            "p_at_10": float(p[i]),
            "ci_low": None,
            "ci_high": None,
            "top_10": " ".join(ids[j] for j in top[i]) if ids is not None else "",
        }
        if samples is not None:
            lo, hi = percentile_interval(samples[:, i], level)
            metrics[f"{name}/p_at_10_ci_low"], metrics[f"{name}/p_at_10_ci_high"] = lo, hi
            row["ci_low"], row["ci_high"] = lo, hi
        rows.append(row)
    for group in dict.fromkeys(pr.group for pr in probes):
        cols = [i for i, pr in enumerate(probes) if pr.group == group]
        name = f"{b}/{group}"
        metrics[f"{name}/p_at_10"] = float(p[cols].mean())
        metrics[f"{name}/random"] = float(random[cols].mean())
        metrics[f"{name}/queries"] = float(len(cols))
        if samples is not None:
            ci = mean_over_queries_ci(samples[:, cols], seed + 1, level)
            if ci is not None:
                metrics[f"{name}/p_at_10_ci_low"], metrics[f"{name}/p_at_10_ci_high"] = ci
    return metrics, rows
