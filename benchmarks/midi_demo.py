"""`clamp classify` and `clamp search --like` on test tunes given as ABC and as MIDI.

Picks the first test-split tune of each tune type asked for, writes it as `.abc` and as a MIDI
file rendered by abc2midi (what a user's MIDI of the tune looks like), runs both commands on
both files and writes what they print to `<out>/demo.md`.

    python benchmarks/midi_demo.py --model outputs/quality-seeds/seed0/model \\
        --dataset data/datasets/music21-corpus --out docs/results/2026-12-05-quality-cpu/midi-demo
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--types", default="jig,reel,hornpipe,waltz")
    args = parser.parse_args()

    from clamp.abc.render import abc_to_midi
    from clamp.eval.benchmarks import heldout_items

    items = heldout_items(args.dataset, "test")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    types = args.types.split(",")
    clamp = str(Path(sys.executable).parent / "clamp")
    lines = [
        "# `clamp classify` and `clamp search --like` on test tunes, as ABC and as MIDI",
        "",
        f"Model `{args.model}`, index `{args.dataset}`. Each MIDI file is the tune rendered by abc2midi; "
        "the commands read it through midi2abc, as any user's MIDI file.",
        "",
    ]
    for kind in types:
        pick = next((i for i, lab in enumerate(items.labels) if lab.get("tune_type") == kind), None)
        if pick is None:
            continue
        abc, title = items.abc[pick], items.ids[pick]
        stem = out / kind
        stem.with_suffix(".abc").write_text(abc)
        stem.with_suffix(".mid").write_bytes(abc_to_midi(abc))
        lines += [f"## A {kind} from the test split (`{title}`)", ""]
        for suffix in (".abc", ".mid"):
            path = stem.with_suffix(suffix)
            got = subprocess.run(
                [
                    clamp,
                    "classify",
                    str(path),
                    "--labels",
                    args.types,
                    "--task",
                    "tune_type",
                    "--model",
                    args.model,
                    "--json",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            ranked = json.loads(got.stdout)[0]["labels"]
            like = subprocess.run(
                [
                    clamp,
                    "search",
                    "--like",
                    str(path),
                    "--index",
                    args.dataset,
                    "--model",
                    args.model,
                    "--top",
                    "3",
                    "--json",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            hits = json.loads(like.stdout)
            lines += [
                f"`clamp classify {path.name} --labels {args.types} --task tune_type`: "
                + ", ".join(f"{r['label']} {r['score']:.3f}" for r in ranked),
                "",
                f"`clamp search --like {path.name} --top 3`: "
                + "; ".join(f"{h['rank']}. {h['title']} ({h['score']:.3f})" for h in hits),
                "",
            ]
    (out / "demo.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
