"""The quality targets of the CPU recipe (docs/evaluation.md, "Targets"), judged on one run or
on several seeds.

Each target compares a value with a bar, both read from the evaluation's metrics (the trained
model's, `m`, and its fair twin's, `t`): the target holds when value - bar clears 0. Over several
seeds the margin's 95% t-interval across seeds decides (its lower bound must clear 0); on one run
the value's bootstrap interval does. On tasks under `SMALL_TASK` items the point estimate decides
and the interval is only shown. A margin whose interval contains 0 is reported as "not separable".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from clamp.eval.metrics import t_interval

Metrics = dict[str, float]
SMALL_TASK = 100  # items: below it the point estimate decides (the interval is shown)

# The CLaMP 3 paper's linear-probe figures (macro-F1, accuracy) for the ABC models beside ours
# (docs/evaluation.md, "Linear probe beside the published figures").
PUBLISHED_PROBE: dict[str, dict[str, tuple[float, float]]] = {
    "M3 (ABC)": {"wikimt": (0.2349, 0.4010), "vgmidi": (0.6016, 0.6341), "pianist8": (0.7395, 0.7590)},
    "CLaMP (ABC)": {"wikimt": (0.3452, 0.4267), "vgmidi": (0.6453, 0.6866), "pianist8": (0.7067, 0.7152)},
}


@dataclass(frozen=True)
class Target:
    name: str
    metric: str  # the trained model's metric that is judged
    bar: Callable[[Metrics, Metrics], float | None]
    items: str  # the metric that counts the items the value is measured on
    strict: bool = False  # value must exceed the bar (not only reach it)
    kind: str = "target"  # "target", or "report": shown, not judged

    def value(self, m: Metrics, t: Metrics) -> float | None:
        return m.get(self.metric)

    def margin(self, m: Metrics, t: Metrics) -> float | None:
        v, b = self.value(m, t), self.bar(m, t)
        return None if v is None or b is None else v - b


def _get(name: str) -> Callable[[Metrics, Metrics], float | None]:
    return lambda m, t: m.get(name)


def _twin(name: str) -> Callable[[Metrics, Metrics], float | None]:
    return lambda m, t: t.get(name)


def _plus(name: str, add: float) -> Callable[[Metrics, Metrics], float | None]:
    return lambda m, t: None if m.get(name) is None else m[name] + add


def _const(x: float) -> Callable[[Metrics, Metrics], float | None]:
    return lambda m, t: x


TT = "corpus-tune_type"
UP = "user_prompts"
CONTROLS_WITHIN = {
    "chords-added": 0.05,
    "chords-removed": 0.05,
    "unit-1-4": 0.05,
    "unit-1-16": 0.05,
    "midi-route": 0.10,
}
NOTES_ONLY_WITHIN = {"notes-only-chords-added": "chords added", "notes-only-unit-1-4": "in L:1/4"}
PROMPT_TASKS = ("tune_type", "key", "meter", "rhythm", "collection", "composer_all", "reel_hornpipe")


def _tune_type_within(control: str, within: float, reference: str, said: str, label: str | None = None) -> Target:
    """Tune type under an input control at most `within` below the same items read as `reference`
    (a control suffix: "" for the unchanged input)."""
    cb = f"{TT}.{control}"
    return Target(
        f"tune type, {label or control}: within {within:.2f} of {said}",
        f"{cb}/{UP}/accuracy",
        _plus(f"{TT}{reference}/{UP}/accuracy", -within),
        f"{cb}/items",
    )


def cpu_targets() -> list[Target]:
    out = [
        Target(
            "tune type >= header-only baseline + 0.10",
            f"{TT}/{UP}/accuracy",
            _plus(f"{TT}/baseline/header/accuracy", 0.10),
            f"{TT}/items",
        ),
        Target(
            "tune type >= majority + 0.25",
            f"{TT}/{UP}/accuracy",
            _plus(f"{TT}/baseline/majority/accuracy", 0.25),
            f"{TT}/items",
        ),
        Target(
            "tune type, notes only >= majority + 0.10",
            f"{TT}.notes-only/{UP}/accuracy",
            _plus(f"{TT}/baseline/majority/accuracy", 0.10),
            f"{TT}.notes-only/items",
        ),
        Target(
            "tune type macro-F1, notes only >= 0.5",
            f"{TT}.notes-only/{UP}/macro_f1",
            _const(0.5),
            f"{TT}.notes-only/items",
        ),
    ]
    out += [
        _tune_type_within(control, within, "", "the unchanged input") for control, within in CONTROLS_WITHIN.items()
    ]
    # on full input the header holds these steady (and the canonical form rewrites the change
    # away): the same changes with the header dropped show whether the notes themselves are read
    out += [
        _tune_type_within(control, 0.05, ".notes-only", "notes only", f"notes only, {label}")
        for control, label in NOTES_ONLY_WITHIN.items()
    ]
    out += [
        Target(
            "held-out collection tune type >= its header-only baseline + 0.05",
            f"unseen-tune_type/{UP}/accuracy",
            _plus("unseen-tune_type/baseline/header/accuracy", 0.05),
            "unseen-tune_type/items",
        ),
        Target(
            "reel vs hornpipe macro-F1 >= 0.75",
            f"corpus-reel_hornpipe/{UP}/macro_f1",
            _const(0.75),
            "corpus-reel_hornpipe/items",
        ),
        Target(
            "held-out collection: reel vs hornpipe macro-F1 >= 0.75",
            f"unseen-reel_hornpipe/{UP}/macro_f1",
            _const(0.75),
            "unseen-reel_hornpipe/items",
        ),
    ]
    for task in PROMPT_TASKS:
        b = f"corpus-{task}"
        out.append(
            Target(
                f"{task}: user prompts within 0.05 of training-style prompts",
                f"{b}/{UP}/accuracy",
                _plus(f"{b}/zero_shot/accuracy", -0.05),
                f"{b}/items",
            )
        )
    for ref in ("majority", "fair twin"):
        bar = _get("vgmidi/baseline/majority/macro_f1") if ref == "majority" else _twin(f"vgmidi/{UP}/macro_f1")
        out.append(Target(f"VGMIDI macro-F1 > {ref}", f"vgmidi/{UP}/macro_f1", bar, "vgmidi/items", strict=True))
    for bench in ("pianist8", "wikimt"):
        for ref in ("majority", "fair twin"):
            bar = _get(f"{bench}/baseline/majority/accuracy") if ref == "majority" else _twin(f"{bench}/{UP}/accuracy")
            out.append(
                Target(
                    f"{bench} accuracy vs {ref} (reported)",
                    f"{bench}/{UP}/accuracy",
                    bar,
                    f"{bench}/items",
                    strict=True,
                    kind="report",
                )
            )
    out.append(
        Target(
            "wikimt text-to-music MRR vs fair twin (reported)",
            "wikimt/text_to_music/mrr",
            _twin("wikimt/text_to_music/mrr"),
            "wikimt/items",
            strict=True,
            kind="report",
        )
    )
    return out


def gpu_targets() -> list[Target]:
    return [
        Target("tune type >= 0.85", f"{TT}/{UP}/accuracy", _const(0.85), f"{TT}/items"),
        Target(
            "WikiMT MRR >= 5x random",
            "wikimt/text_to_music/mrr",
            lambda m, t: None if "wikimt/baseline/chance/mrr" not in m else 5 * m["wikimt/baseline/chance/mrr"],
            "wikimt/items",
        ),
    ]


def _value_ci(target: Target, m: Metrics) -> tuple[float | None, float | None]:
    """The bootstrap interval of a single run's value."""
    return m.get(f"{target.metric}_ci_low"), m.get(f"{target.metric}_ci_high")


def judge(target: Target, runs: list[tuple[Metrics, Metrics]]) -> dict:
    """One target over one or more runs (trained metrics, twin metrics): mean value, mean bar,
    the margin's interval (across seeds; with one run, the value's bootstrap interval minus the
    bar) and the verdict: `met`, `missed`, `not separable`, `missing` or `reported`."""
    margins = [target.margin(m, t) for m, t in runs]
    values = [target.value(m, t) for m, t in runs]
    bars = [target.bar(m, t) for m, t in runs]
    items = [m.get(target.items) for m, _ in runs]
    row: dict = {
        "target": target.name,
        "kind": target.kind,
        "seeds": len(runs),
        "value": None,
        "bar": None,
        "margin": None,
        "low": None,
        "high": None,
        "items": None,
        "verdict": "missing",
    }
    if any(x is None for x in margins):
        return row
    n_items = min(int(i) for i in items if i is not None) if any(i is not None for i in items) else 0
    mean_value, _, _ = t_interval([float(v) for v in values])  # type: ignore[arg-type]
    mean_bar, _, _ = t_interval([float(b) for b in bars])  # type: ignore[arg-type]
    margin, low, high = t_interval([float(x) for x in margins])  # type: ignore[arg-type]
    if len(runs) == 1:
        lo, hi = _value_ci(target, runs[0][0])
        low, high = (None, None) if lo is None else (lo - mean_bar, hi - mean_bar if hi is not None else None)
    row.update(value=mean_value, bar=mean_bar, margin=margin, low=low, high=high, items=n_items)
    above = (lambda x: x > 0) if target.strict else (lambda x: x >= 0)
    if n_items < SMALL_TASK or low is None:
        verdict = "met" if above(margin) else "missed"
    elif above(low):
        verdict = "met"
    elif high is not None and high < 0:
        verdict = "missed"
    else:
        verdict = "not separable"
    row["verdict"] = verdict if target.kind == "target" else f"reported: {verdict}"
    return row


def judge_all(targets: list[Target], runs: list[tuple[Metrics, Metrics]]) -> list[dict]:
    return [judge(t, runs) for t in targets]


def format_targets(rows: list[dict]) -> list[dict]:
    """Rows for a table: value, bar, margin [interval], items, verdict, as strings."""

    def f(x: float | None, digits: int = 3) -> str:
        return "-" if x is None else f"{x:.{digits}f}"

    out = []
    for r in rows:
        interval = f" [{f(r['low'])}, {f(r['high'])}]" if r["low"] is not None else ""
        out.append(
            {
                "target": r["target"],
                "value": f(r["value"]),
                "bar": f(r["bar"]),
                "margin": f(r["margin"]) + interval,
                "items": str(r["items"] or "-"),
                "seeds": str(r["seeds"]),
                "verdict": r["verdict"],
            }
        )
    return out


def probe_table(runs: list[tuple[Metrics, Metrics]]) -> list[dict]:
    """The linear probe on the three benchmarks (mean over runs) beside the published ABC models."""
    rows = []
    for label, pick in (("this model", 0), ("fair twin", 1)):
        row = {"model": label}
        for bench in ("wikimt", "vgmidi", "pianist8"):
            f1 = [r[pick].get(f"{bench}/linear_probe/macro_f1") for r in runs]
            acc = [r[pick].get(f"{bench}/linear_probe/accuracy") for r in runs]
            ok = [(a, b) for a, b in zip(f1, acc, strict=True) if a is not None and b is not None]
            row[bench] = (
                "-" if not ok else (f"{sum(a for a, _ in ok) / len(ok):.4f} / {sum(b for _, b in ok) / len(ok):.4f}")
            )
        rows.append(row)
    for name, figures in PUBLISHED_PROBE.items():
        rows.append({"model": f"{name}, CLaMP 3 paper", **{b: f"{f:.4f} / {a:.4f}" for b, (f, a) in figures.items()}})
    return rows
