"""requirements.lock, the hashed lock file that infra/bootstrap.sh installs from, agrees with
pyproject.toml, and the environment the tests run in is the lock's (CI installs it first)."""

from __future__ import annotations

import importlib.metadata as md
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._\-]*)==(\S+)((?: \\\n\s+--hash=sha256:[0-9a-f]{64})*)", re.M)


def pins(text: str) -> dict[str, tuple[str, int]]:
    """{canonical name: (version, number of hashes)} of a lock file's text."""
    return {canonicalize_name(name): (version, hashes.count("--hash=")) for name, version, hashes in PIN.findall(text)}


def disagreements(pyproject: dict, lock: dict[str, tuple[str, int]]) -> list[str]:
    """What in pyproject.toml (its dependencies and the dev extra) the lock does not satisfy."""
    project = pyproject["project"]
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    out = []
    for req in wanted:
        name = canonicalize_name(req.name)
        if name not in lock:
            out.append(f"{req.name}: not in requirements.lock")
        elif not req.specifier.contains(lock[name][0], prereleases=True):
            out.append(f"{req.name}: locked {lock[name][0]}, pyproject.toml wants {req.specifier}")
    out += [f"{name}: no hash" for name, (_, n) in lock.items() if n == 0]
    return out


def test_the_lock_satisfies_pyproject_and_hashes_every_pin():
    lock = pins((ROOT / "requirements.lock").read_text())
    assert len(lock) > 150 and lock["torch"][0] == "2.13.0+cpu"
    assert disagreements(tomllib.loads((ROOT / "pyproject.toml").read_text()), lock) == []


def test_a_disagreement_is_named():
    pyproject = {
        "project": {
            "dependencies": ["numpy>=2.0", "torch>=2.13.0,<2.14", "rich>=13"],
            "optional-dependencies": {"dev": ["pytest>=8"]},
        }
    }
    lock = pins(
        "numpy==1.26.4 \\\n    --hash=sha256:" + "a" * 64 + "\ntorch==2.13.0+cpu\npytest==8.3.0 \\\n"
        "    --hash=sha256:" + "b" * 64 + " \\\n    --hash=sha256:" + "c" * 64 + "\n"
    )
    assert lock == {"numpy": ("1.26.4", 1), "torch": ("2.13.0+cpu", 0), "pytest": ("8.3.0", 2)}
    assert disagreements(pyproject, lock) == [
        "numpy: locked 1.26.4, pyproject.toml wants >=2.0",
        "rich: not in requirements.lock",
        "torch: no hash",
    ]


def test_the_environment_is_the_lock():
    lock = pins((ROOT / "requirements.lock").read_text())
    differ = {}
    for name, (version, _) in lock.items():
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            have = None
        if have != version:
            differ[name] = (version, have)
    assert differ == {}, f"run `bash infra/bootstrap.sh`: installed packages differ from requirements.lock: {differ}"
