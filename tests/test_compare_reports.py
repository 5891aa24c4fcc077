"""benchmarks/compare_reports.py: two multi-seed quality reports paired by seed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("compare_reports", ROOT / "benchmarks" / "compare_reports.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _report(values: dict[str, list[float]]) -> dict:
    return {"runs": [{"seed": s, "trained": {k: v[s] for k, v in values.items()}} for s in range(3)]}


def test_two_reports_pair_by_seed_with_a_t_interval_over_the_differences():
    cr = _module()
    a, b, gone = "corpus-tune_type/user_prompts/accuracy", "corpus-key/user_prompts/accuracy", "x/accuracy"
    old = _report({a: [0.5, 0.6, 0.7], b: [0.9, 0.9, 0.9], gone: [0.1, 0.1, 0.1]})
    new = _report({a: [0.7, 0.7, 0.9], b: [0.8, 0.9, 1.0]})
    rows = {r["metric"]: r for r in cr.paired_rows(old, new, [a, b, gone])}
    assert gone not in rows  # only in one report: not compared
    # differences 0.2, 0.1, 0.2: mean 0.1667, sd 0.0577, t(2) 4.303: half-width 0.1434
    assert rows[a]["difference"] == pytest.approx(1 / 6)
    assert rows[a]["low"] == pytest.approx(1 / 6 - 0.14344, abs=1e-4)
    assert (rows[a]["old"], rows[a]["new"], rows[a]["verdict"]) == (
        pytest.approx(0.6),
        pytest.approx(0.7667, abs=1e-4),
        "better",
    )
    # differences -0.1, 0, +0.1: mean 0, the interval covers it
    assert rows[b]["difference"] == pytest.approx(0.0, abs=1e-12) and rows[b]["verdict"] == "not separable"
    md = cr.markdown(list(rows.values()), "old", "new")
    assert "| corpus-tune_type | 3 | 0.600 | 0.767 | +0.167 [+0.023, +0.310] | better |" in md
