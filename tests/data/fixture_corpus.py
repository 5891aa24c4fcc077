"""A local source directory holding one record of every kind the pipeline must handle."""

from __future__ import annotations

import json
from pathlib import Path

BARS = [
    "GABc dedB",
    "dBAG FGAB",
    "c2ec B2dB",
    "ABAG EFGA",
    "G2BG dGBG",
    "A2cA eAcA",
    "B2dB gBdB",
    "c2ec agfe",
    "d2fd afdf",
    "e2ge bgeg",
    "fgaf gfed",
    "cBAG FEDC",
    "DEFG ABcd",
    "edcB AGFE",
    "G4 A4",
    "B4 c4",
]


def long_tune(title: str, variant: int = 0) -> str:
    bars = [b.replace(" ", "") for b in BARS] * 2
    if variant:
        bars[5] = "z8"  # one bar of 32 changed: a near duplicate
    body = "\n".join("|" + "|".join(bars[i : i + 4]) + "|" for i in range(0, len(bars), 4))
    return f"X:1\nT:{title}\nR:reel\nM:4/4\nL:1/8\nK:G\n{body}\n"


def make_fixture(root: Path, wikimt_music: str) -> dict[str, int]:
    """Write the fixture; returns the expected counts by outcome."""
    root.mkdir(parents=True, exist_ok=True)
    two_tunes = (
        "% a file header comment\nL:1/8\n\n"
        "X:1\nT:The First Jig\nR:jig\nO:Ireland\nM:6/8\nK:D\n|:dAF DFA|dAF GFE|dAF DFA|GFE D3:|\n\n"
        "X:2\nT:The Second Reel\nR:reel\nM:4/4\nK:G\n|:GABc dBGB|cBAG FGAB|GABc dBGB|AGFA G4:|\n"
    )
    (root / "two_tunes.abc").write_text(two_tunes, encoding="utf-8")
    (root / "two_tunes.json").write_text(json.dumps({"texts": ["Two tunes from a session"], "license": "CC0"}))
    # same music as the first jig, another title: an exact duplicate on normalized ABC
    (root / "z_copy.abc").write_text(
        "X:7\nT:Copied Jig\nL:1/8\nM:6/8\nK:D\n|:dAF DFA|dAF GFE|dAF DFA|GFE D3:|\n", encoding="utf-8"
    )
    (root / "long.abc").write_text(long_tune("A Long Reel"), encoding="utf-8")
    (root / "long_variant.abc").write_text(long_tune("A Long Reel, variant", variant=1), encoding="utf-8")
    # benchmark music under a new title: must be decontaminated
    x_line, _, rest = wikimt_music.partition("\n")
    (root / "leak.abc").write_text(f"{x_line}\nT:Not WikiMT at all\n{rest}", encoding="utf-8")
    (root / "accents.abc").write_text(
        "X:1\nT:Caf\\'e Waltz\nC:Jos\u00e9\nR:waltz\nM:3/4\nK:C\n|:C2 E2 G2|c6|B2 G2 E2|C6:|\n", encoding="cp1252"
    )
    (root / "texts.csv").write_text(
        "file,text,region\naccents.abc,A slow waltz for a caf\u00e9,south\n", encoding="utf-8"
    )
    # the bad records, one of each kind
    (root / "empty.abc").write_text("   \n", encoding="utf-8")
    (root / "binary.abc").write_bytes(b"X:1\nT:bin\x00\x01\x02\nK:C\nCDEF|\n")
    (root / "undecodable.abc").write_bytes(b"X:1\nT:\x81\x8d\x8f\x90\x9d\nK:C\nCDEF|\n")
    (root / "header_only.abc").write_text("X:1\nT:Only a header\nM:4/4\nK:C\n", encoding="utf-8")
    (root / "huge.abc").write_text("X:1\nT:Huge\nK:C\n" + "CDEF GABc|" * 110_000 + "\n", encoding="utf-8")
    (root / "controls.abc").write_text("X:1\nT:Noise\nK:C\n" + "\x07\x08\x0b\x0c" * 50 + "CDEF|\n", encoding="utf-8")
    (root / "broken.xml").write_text("<?xml version='1.0'?><score-partwise><part><measure>", encoding="utf-8")
    (root / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    return {
        "records_in": 16,  # 15 local files (two tunes in one) + the .mxl the test adds
        "written": 5,  # two tunes, long reel, accents waltz, and the .mxl added by the test
        "duplicates_exact": 1,
        "duplicates_near": 1,
        "decontaminated": 1,
        "quarantined": 8,
    }
