"""Compare two multi-seed quality reports (`benchmarks/quality_targets.py --seeds N`) seed by seed.

Two recipes trained with the same seeds on the same dataset shards and judged on the same items
pair up by seed: per metric, the difference (new minus old) of each seed, its mean and its 95%
t-interval across seeds. "better" or "worse" when the interval clears 0, else "not separable".
This is evidence about a change already decided on the valid split, never how it is decided.

    python benchmarks/compare_reports.py docs/results/2026-12-05-quality-cpu \\
        docs/results/2026-12-06-quality-cpu --out docs/results/2026-12-06-quality-cpu/against-2026-12-05.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_cells import verdict  # noqa: E402
from quality_targets import SUMMARY_TASKS  # noqa: E402

INPUTS = ["", ".notes-only", ".midi-route"]
OTHER = [
    "vgmidi/user_prompts/macro_f1",
    "wikimt/text_to_music/mrr",
    "corpus-probe/user/p_at_10",
    "corpus-probe/key/p_at_10",
    "corpus-probe/meter/p_at_10",
]


def metrics_compared() -> list[str]:
    return [f"{t}{i}/user_prompts/accuracy" for t in SUMMARY_TASKS for i in INPUTS] + OTHER


def paired_rows(old: dict, new: dict, names: list[str]) -> list[dict]:
    """Per metric both reports have for every shared seed: the means and the paired difference."""
    from clamp.eval.metrics import t_interval

    by_seed_old = {r["seed"]: r["trained"] for r in old["runs"]}
    by_seed_new = {r["seed"]: r["trained"] for r in new["runs"]}
    seeds = sorted(set(by_seed_old) & set(by_seed_new), key=str)
    rows = []
    for name in names:
        if not seeds or any(name not in by_seed_old[s] or name not in by_seed_new[s] for s in seeds):
            continue
        before = [by_seed_old[s][name] for s in seeds]
        after = [by_seed_new[s][name] for s in seeds]
        mean, low, high = t_interval([a - b for a, b in zip(after, before, strict=True)])
        rows.append(
            {
                "metric": name,
                "seeds": len(seeds),
                "old": sum(before) / len(seeds),
                "new": sum(after) / len(seeds),
                "difference": mean,
                "low": low,
                "high": high,
                "verdict": verdict(low, high),
            }
        )
    return rows


def markdown(rows: list[dict], old: str, new: str) -> str:
    lines = [
        f"# {new} against {old}, paired by seed",
        "",
        "User-style prompts; accuracy unless the metric says otherwise. The difference is new minus old, "
        "with its 95% t-interval across seeds (`benchmarks/compare_reports.py`).",
        "",
        "| metric | seeds | old | new | difference [95% over seeds] | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        interval = "" if r["low"] is None else f" [{r['low']:+.3f}, {r['high']:+.3f}]"
        name = r["metric"].removesuffix("/user_prompts/accuracy")
        lines.append(
            f"| {name} | {r['seeds']} | {r['old']:.3f} | {r['new']:.3f} | {r['difference']:+.3f}{interval} | "
            f"{r['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", help="the earlier report's folder (its report.json)")
    parser.add_argument("new", help="the later report's folder")
    parser.add_argument("--out", help="write the table here (Markdown); otherwise print it")
    args = parser.parse_args()
    reports = []
    for folder in (args.old, args.new):
        path = Path(folder) / "report.json"
        if not path.is_file():
            parser.error(f"no report.json in {folder}")
        reports.append(json.loads(path.read_text()))
    text = markdown(paired_rows(reports[0], reports[1], metrics_compared()), args.old, args.new)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)


if __name__ == "__main__":
    main()
