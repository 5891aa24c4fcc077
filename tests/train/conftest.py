"""A small real dataset for training tests, built by the real pipeline from generated tunes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

RHYTHMS = {"jig": ("6/8", "dAF DFA"), "reel": ("4/4", "GABc dBGB"), "waltz": ("3/4", "C2 E2 G2")}
NOTES = "CDEFGABcdefg"


def write_tunes(root: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rhythm = list(RHYTHMS)[i % 3]
        meter, motif = RHYTHMS[rhythm]
        bars = ["".join(rng.choice(NOTES) for _ in range(6)) for _ in range(8 + i % 5)]
        body = "|" + "|".join([motif.replace(" ", "")] + bars) + "|"
        (root / f"tune{i:03d}.abc").write_text(
            f"X:1\nT:Tune number {i}\nR:{rhythm}\nM:{meter}\nL:1/8\nK:G\n{body}\n", encoding="utf-8"
        )


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    from clamp.config import BuildConfig, SourceSpec
    from clamp.data.build import build_dataset

    root = tmp_path_factory.mktemp("train-data")
    write_tunes(root / "src", 72)
    cfg = BuildConfig(name="tiny", output_dir=root, cache_dir=root / "cache", sources=[SourceSpec(kind="local", path=str(root / "src"))],
                      shard_size=32, decontaminate=False, data_docs=False, valid_fraction=0.0, test_fraction=0.0)
    summary = build_dataset(cfg)
    assert summary.rows_written == 72
    return cfg.dataset_dir
