"""The README is a short guide whose figures come from committed report files under
docs/results/, each stating its date, machine and commit."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _block(module: ModuleType) -> str:
    return README[README.index(module.README_BEGIN) : README.index(module.README_END) + len(module.README_END)]


def _newest(pattern: str) -> Path:
    reports = sorted((ROOT / "docs" / "results").glob(pattern))
    assert reports, f"no committed report matches docs/results/{pattern}"
    return reports[-1]


@pytest.mark.parametrize(
    ("script", "pattern"),
    [
        ("quality_targets", "*-quality-cpu/report.json"),
        ("performance_report", "*-performance/report.json"),
        ("bench_crawl", "*-crawl/report.json"),
    ],
)
def test_the_readme_tables_are_generated_from_the_newest_committed_report(script, pattern):
    module = _script(script)
    newest = _newest(pattern)
    report = json.loads(newest.read_text())
    assert {"date", "commit", "machine"} <= report["provenance"].keys()
    assert _block(module) == module.readme_block(report, str(newest.parent.relative_to(ROOT)))


def test_every_performance_figure_is_the_median_of_its_runs():
    import statistics

    report = json.loads(_newest("*-performance/report.json").read_text())
    assert len(report["rows"]) >= 6
    for row in report["rows"]:
        assert len(row["runs"]) >= 3, row["what"]
        # the runs are rounded as the median is: an even count splits a rounding step
        assert row["median"] == pytest.approx(statistics.median(row["runs"]), rel=5e-3), row["what"]


def test_the_readme_is_a_short_guide_without_lab_notes():
    assert len(README.splitlines()) <= 250
    for name in ("Set-up", "Quality", "Performance"):
        assert re.search(rf"^## {name}", README, re.M), name
    # no temporary folders of the machine that measured something, no session narrative
    for text in [README, *(p.read_text() for p in (ROOT / "docs").glob("*.md"))]:
        assert "/tmp/" not in text
        assert "this session" not in text.lower()
