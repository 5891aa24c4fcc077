"""Check the main recipe against its quality targets (clamp/eval/targets.py), on one model or
trained again over several seeds, and write the report the README's Quality table is made from.

    # judge a trained model (its own run: bootstrap intervals)
    python benchmarks/quality_targets.py --model outputs/music21-corpus/clamp-small/model \\
        --dataset data/datasets/music21-corpus
    # train the CPU recipe with seeds 0, 1, 2 on the dataset, evaluate each, judge across seeds
    python benchmarks/quality_targets.py --seeds 3 --dataset data/datasets/music21-corpus \\
        --report docs/results/2026-12-05-quality-cpu

Every evaluation runs with the controls of docs/evaluation.md (input controls, notes only,
header-only baseline, user prompts, fair twin, held-out collection). Nothing here is chosen on
the results: the recipe is `recipes/cpu-clamp.yaml` as it is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_files import ROOT, git_commit, replace_block  # noqa: E402


def evaluate_model(model_dir: str, dataset: str, out: Path, twin: bool) -> tuple[dict, dict, dict]:
    """(trained metrics, fair-twin metrics, the results tables) of one model folder.

    `evaluate` keeps what it measured in `out/evaluation.json`; a rerun reads it back, so an
    interrupted multi-seed run does not evaluate a finished seed again (the slow half)."""
    from clamp.eval.config import EvalConfig
    from clamp.eval.report import EVALUATION_FILE
    from clamp.eval.run import evaluate

    done = out / EVALUATION_FILE
    kept = json.loads(done.read_text()) if done.is_file() else {}
    if kept.get("model_dir") != model_dir or (
        twin and not any(r["model"].endswith("-untrained") for r in kept["results"])
    ):
        evaluate(
            EvalConfig(model_dir=model_dir, dataset_dir=dataset, out_dir=str(out), mlflow=False, include_untrained=twin)
        )
        kept = json.loads(done.read_text())
    trained: dict[str, float] = {}
    fair: dict[str, float] = {}
    for r in kept["results"]:
        (fair if r["model"].endswith("-untrained") else trained).update(r["metrics"])
    return trained, fair, kept["tables"]


def train_seed(recipe: Path, dataset: str, out: Path, seed: int, steps: int | None) -> str:
    from clamp.train.config import TrainConfig
    from clamp.train.run import train

    model_dir = out / "model"
    if (model_dir / "config.json").is_file():  # a finished seed is not trained again
        return str(model_dir)
    cfg = TrainConfig.load(
        recipe,
        dataset_dir=dataset,
        output_dir=str(out),
        seed=seed,
        mlflow=False,
        run_name=f"quality-seed{seed}",
        steps=steps,
    )
    return train(cfg)["model_dir"]


def markdown(report: dict) -> str:
    """The report as Markdown: provenance, the targets, the controls of the first seed, the probe."""
    from clamp.eval.targets import format_targets

    def table(rows: list[dict]) -> list[str]:
        if not rows:
            return []
        cols = list(rows[0])
        return [
            "| " + " | ".join(cols) + " |",
            "|" + "---|" * len(cols),
            *["| " + " | ".join(str(r.get(c, "")).replace("|", "\\|") for c in cols) + " |" for r in rows],
        ]

    p = report["provenance"]
    seeds = f"{p['seeds']} seed(s)" + (
        f" of {p['seeds_planned']} planned" if p.get("seeds_planned", p["seeds"]) > p["seeds"] else ""
    )
    lines = [
        f"# Quality targets: {p['recipe']}, {seeds}",
        "",
        f"Date {p['date']}, commit {p['commit']}, machine: {p['machine']}. Dataset fingerprint "
        f"`{p['dataset_fingerprint']}`. Test split, held-out collection and benchmarks; user-style prompts "
        "(held out from training's captions).",
        "",
        *_grouping_lines(p.get("grouping")),
        f"{report['met']} of {report['judged']} targets met (by the lower bound of the 95% interval across seeds; "
        "tasks under 100 items by the point estimate).",
        "",
        "## Targets",
        "",
        *table(format_targets(report["targets"])),
        "",
        "## Linear probe beside the published figures",
        "",
        "macro-F1 / accuracy; protocol in docs/evaluation.md (ours: 5-fold CV on frozen, standardised "
        "embeddings; the paper's: its own splits).",
        "",
        *table(report["probe"]),
        "",
    ]
    for i, seed in enumerate(report["runs"]):
        lines += [
            f"## Seed {seed['seed']}: quality",
            "",
            *table(seed["tables"]["quality"]),
            "",
            f"## Seed {seed['seed']}: input controls",
            "",
            *table(seed["tables"].get("controls", [])),
            "",
        ]
        if i == 0:
            lines += ["## Retrieval probes (seed 0)", "", *table(seed["tables"].get("probes", [])), ""]
    return "\n".join(lines)


README_BEGIN = "<!-- quality-report:begin (benchmarks/quality_targets.py --readme writes this block) -->"
README_END = "<!-- quality-report:end -->"
SUMMARY_TASKS = [
    "corpus-tune_type",
    "corpus-reel_hornpipe",
    "corpus-key",
    "corpus-meter",
    "unseen-tune_type",
    "unseen-reel_hornpipe",
    "unseen-key",
    "unseen-meter",
]
# the composite controls change how the notes are written and drop the header: on full input the
# header alone can hold an answer steady, so only these show whether the notes are read
SUMMARY_INPUTS = [
    "notes-only",
    "notes-only-chords-added",
    "notes-only-unit-1-4",
    "chords-added",
    "unit-1-4",
    "unit-1-16",
    "midi-route",
]


def _mean(values: list[float | None]) -> str:
    from clamp.eval.metrics import t_interval

    got = [v for v in values if v is not None]
    if not got:
        return "-"
    mean, low, high = t_interval(got)
    return f"{mean:.2f}" if low is None else f"{mean:.2f} ± {(high - low) / 2:.2f}"


def readme_block(report: dict, report_path: str) -> str:
    """The README's Quality tables, made from a report: the targets, the held-out tasks under every
    control beside their baselines, the benchmarks against majority and twin, the linear probe."""
    from clamp.eval.targets import format_targets

    runs = [r["trained"] for r in report["runs"]]
    twin = report["twin"]
    p = report["provenance"]
    lines = [
        README_BEGIN,
        "",
        f"The CPU recipe (`{p['recipe']}`), {p['seeds']} seed(s)"
        + (f" of {p['seeds_planned']} planned" if p.get("seeds_planned", p["seeds"]) > p["seeds"] else "")
        + ", on the test split, the held-out collection "
        f"and the benchmarks, with user-style prompts held out from training ({p['date']}, commit {p['commit']}, "
        f"{p['machine']}; [{report_path}]({report_path}/report.md)). Values are means over seeds ± half "
        "the 95% t-interval.",
        "",
        *_grouping_lines(p.get("grouping")),
        f"**{report['met']} of {report['judged']} targets met** (by the lower bound of the margin's 95% interval "
        "across seeds; tasks under 100 items by the point estimate):",
        "",
        "| target | value | bar | margin [95% interval] | items | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in format_targets(report["targets"]):
        lines.append(f"| {r['target']} | {r['value']} | {r['bar']} | {r['margin']} | {r['items']} | {r['verdict']} |")
    lines += [
        "",
        "Accuracy of each held-out task as given and under each control, beside the baselines "
        "(`corpus-`: test split; `unseen-`: the held-out collection, O'Neill's):",
        "",
        "| task | as given | " + " | ".join(SUMMARY_INPUTS) + " | header-only | majority | fair twin |",
        "|---|" + "---|" * (len(SUMMARY_INPUTS) + 4),
    ]
    for b in SUMMARY_TASKS:
        if not any(f"{b}/user_prompts/accuracy" in m for m in runs):
            continue
        cells = [_mean([m.get(f"{b}/user_prompts/accuracy") for m in runs])]
        cells += [_mean([m.get(f"{b}.{c}/user_prompts/accuracy") for m in runs]) for c in SUMMARY_INPUTS]
        cells += [
            _mean([m.get(f"{b}/baseline/header/accuracy") for m in runs]),
            _mean([m.get(f"{b}/baseline/majority/accuracy") for m in runs]),
            _mean([twin.get(f"{b}/user_prompts/accuracy")]),
        ]
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Benchmarks (zero-shot, user-style prompts; WikiMT search MRR):",
        "",
        "| benchmark | accuracy | macro-F1 | majority acc / F1 | fair twin acc / F1 | t2m MRR (twin, random) |",
        "|---|---|---|---|---|---|",
    ]
    for b in ("wikimt", "vgmidi", "pianist8"):
        if not any(f"{b}/user_prompts/accuracy" in m for m in runs):
            continue
        mrr = "-"
        if f"{b}/text_to_music/mrr" in runs[0]:
            mrr = (
                f"{_mean([m.get(f'{b}/text_to_music/mrr') for m in runs])} "
                f"({twin.get(f'{b}/text_to_music/mrr', 0):.3f}, {runs[0].get(f'{b}/baseline/chance/mrr', 0):.3f})"
            )
        lines.append(
            f"| {b} | {_mean([m.get(f'{b}/user_prompts/accuracy') for m in runs])} | "
            f"{_mean([m.get(f'{b}/user_prompts/macro_f1') for m in runs])} | "
            f"{runs[0].get(f'{b}/baseline/majority/accuracy', 0):.2f} / "
            f"{runs[0].get(f'{b}/baseline/majority/macro_f1', 0):.2f} | "
            f"{twin.get(f'{b}/user_prompts/accuracy', 0):.2f} / {twin.get(f'{b}/user_prompts/macro_f1', 0):.2f} | "
            f"{mrr} |"
        )
    lines += [
        "",
        "Linear probe (macro-F1 / accuracy; ours: 5-fold CV on frozen embeddings, docs/evaluation.md):",
        "",
        "| model | WikiMT | VGMIDI | Pianist8 |",
        "|---|---|---|---|",
    ]
    for r in report["probe"]:
        lines.append(f"| {r['model']} | {r.get('wikimt', '-')} | {r.get('vgmidi', '-')} | {r.get('pianist8', '-')} |")
    lines += ["", README_END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a trained model folder to judge (instead of --seeds)")
    parser.add_argument("--dataset", help="the built dataset (its test split, held-out collection)")
    parser.add_argument("--seeds", type=int, default=0, help="train the recipe with seeds 0..N-1 and judge across them")
    parser.add_argument("--recipe", default="recipes/cpu-clamp.yaml")
    parser.add_argument("--steps", type=int, help="override the recipe's steps (quick looks only)")
    parser.add_argument("--targets", choices=["cpu", "gpu", "both"], default="cpu")
    parser.add_argument("--out", default="outputs/quality-targets", help="models and evaluation plots")
    parser.add_argument(
        "--report", help="a folder for report.json and report.md (e.g. docs/results/<date>-quality-cpu)"
    )
    parser.add_argument(
        "--readme", action="store_true", help="only rewrite the README's Quality block from the report in --report"
    )
    args = parser.parse_args()
    if args.readme:
        if not args.report:
            parser.error("--readme needs --report FOLDER")
        report = json.loads((Path(args.report) / "report.json").read_text())
        replace_block(ROOT / "README.md", README_BEGIN, README_END, readme_block(report, args.report))
        print(f"README.md: Quality block rewritten from {args.report}/report.json")
        return
    if bool(args.model) == bool(args.seeds) or not args.dataset:
        parser.error("give --dataset and one of --model or --seeds N")

    from clamp.environment import apply_defaults

    apply_defaults()
    from clamp.eval.tables import print_results_table
    from clamp.eval.targets import format_targets

    out = Path(args.out)
    start = time.perf_counter()
    runs: list[dict] = []
    pairs: list[tuple[dict, dict]] = []
    twin: dict = {}
    for seed in range(args.seeds) if args.seeds else [None]:
        model_dir = args.model or train_seed(Path(args.recipe), args.dataset, out / f"seed{seed}", seed, args.steps)
        # the fair twin has fixed weights (seed 0): evaluated once, shared by every seed
        trained, fair, tables = evaluate_model(model_dir, args.dataset, out / f"eval-seed{seed}", twin=not twin)
        twin = twin or fair
        pairs.append((trained, twin))
        runs.append(
            {
                "seed": seed if seed is not None else "given",
                "model_dir": model_dir,
                "tables": tables,
                "trained": trained,
            }
        )
        print_results_table(tables, f"seed {seed}" if seed is not None else "model")
        # written after every seed: an interrupted run keeps the seeds it finished
        report = write_report(args, runs, pairs, twin, start)
    print_results_table(format_targets(report["targets"]), "quality targets")
    print(f"{report['met']} of {report['judged']} targets met")


def write_report(
    args: argparse.Namespace, runs: list[dict], pairs: list[tuple[dict, dict]], twin: dict, start: float
) -> dict:
    from clamp.data.shards import load_manifest
    from clamp.eval.targets import cpu_targets, gpu_targets, judge_all, probe_table

    targets = {"cpu": cpu_targets(), "gpu": gpu_targets(), "both": cpu_targets() + gpu_targets()}[args.targets]
    rows = judge_all(targets, pairs)
    judged = [r for r in rows if r["kind"] == "target"]
    report = {
        "provenance": {
            "date": dt.date.today().isoformat(),
            "commit": git_commit(),
            "recipe": args.recipe,
            "seeds": len(pairs),
            "seeds_planned": args.seeds or 1,
            "machine": f"{platform.machine()}, {_cores()} cores",
            "dataset_fingerprint": load_manifest(args.dataset).get("fingerprint", ""),
            "grouping": dataset_grouping(args.dataset),
            "wall_minutes": round((time.perf_counter() - start) / 60, 1),
        },
        "targets": rows,
        "met": sum(r["verdict"] == "met" for r in judged),
        "judged": len(judged),
        "probe": probe_table(pairs),
        "runs": runs,
        "twin": twin,
    }
    if args.report:
        folder = Path(args.report)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        (folder / "report.md").write_text(markdown(report))
        print(f"report in {folder}")
    return report


def dataset_grouping(dataset: str) -> dict | None:
    """The build's split by tune group (summary.json `grouping`): how many groups of tunes would
    cross the splits under a per-row split, and how many do."""
    summary = Path(dataset) / "summary.json"
    return json.loads(summary.read_text()).get("grouping") if summary.is_file() else None


def _grouping_lines(grouping: dict | None) -> list[str]:
    if not grouping:
        return []
    return [
        f"The split is by tune group: {grouping['groups']:,} groups of 2 or more tunes ({grouping['grouped_rows']:,} "
        "tunes, joined by a shared normalised title or a transposition-invariant melody), each in one split. "
        f"Split tune by tune, {grouping['crossed_before']:,} of those groups would cross the splits; "
        f"{grouping['crossed_after']:,} do.",
        "",
    ]


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
