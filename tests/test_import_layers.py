"""The import layers of docs/architecture.md, as import-linter contracts in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert {c["type"] for c in contracts} == {"layers", "forbidden", "acyclic_siblings"}
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in out.stdout


def _lint_with(tmp_path: Path, module: str, line: str) -> str:
    """lint-imports on a copy of the packages where `module` (a path under clamp/) gets `line`."""
    import shutil

    for name in ("clamp", "flows"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bad = tmp_path / "clamp" / module
    bad.write_text(bad.read_text() + f"\n{line}  # noqa: E402,F401\n")
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run(
        [str(lint), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 1, out.stdout[-3000:]
    return out.stdout


def test_a_forbidden_import_breaks_the_contract(tmp_path):
    """The checker really checks: a copy of the package where `clamp.train` imports `clamp.eval`
    (the cycle this layering removed) is reported broken."""
    assert "clamp.train.run -> clamp.eval.run" in _lint_with(
        tmp_path, "train/run.py", "from clamp.eval.run import evaluate"
    )


def test_an_import_cycle_inside_a_package_breaks_the_contract(tmp_path):
    """The pool importing `convert` again (the cycle the converters module removed)."""
    assert "No cycles are allowed in clamp.abc." in _lint_with(tmp_path, "abc/pool.py", "from clamp.abc import convert")


def test_no_module_of_clamp_is_over_600_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted((ROOT / "clamp").rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > 600
    }
    assert long == {}
