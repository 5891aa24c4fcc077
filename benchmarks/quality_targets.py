"""Check a trained model against the quality targets of the CPU (or GPU) recipe.

Evaluates the model and its untrained twin (fixed bootstrap seed, no MLflow) on the built
dataset's held-out test split, the retrieval probes and the benchmarks, then prints each target
with the measured value, its 95% interval, the baselines and PASS / FAIL.

    python benchmarks/quality_targets.py --model outputs/music21-corpus/clamp-small/model \\
        --dataset data/datasets/music21-corpus [--targets cpu|gpu|both] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass


@dataclass
class Target:
    name: str
    metric: str  # a metric of the trained model's evaluation
    threshold: str  # a number, or "majority+0.25", "untrained", "chance"

    def bound(self, m: dict[str, float], twin: dict[str, float]) -> float:
        bench = self.metric.split("/")[0]
        if self.threshold == "majority+0.25":
            return m[f"{bench}/baseline/majority/accuracy"] + 0.25
        if self.threshold == "untrained":
            return twin[self.metric]
        if self.threshold == "chance":
            kind = "mrr" if self.metric.endswith("mrr") else "accuracy"
            return m[f"{bench}/baseline/chance/{kind}"]
        if self.threshold.startswith("random*"):
            return m[f"{bench}/baseline/chance/mrr"] * float(self.threshold.split("*")[1])
        return float(self.threshold)


CPU = [
    Target("tune type zero-shot accuracy >= majority + 0.25", "corpus-tune_type/zero_shot/accuracy", "majority+0.25"),
    Target("tune type zero-shot macro-F1 >= 0.5", "corpus-tune_type/zero_shot/macro_f1", "0.5"),
    Target("key retrieval P@10 >= 0.5", "corpus-probe/key/p_at_10", "0.5"),
    Target("meter retrieval P@10 >= 0.7", "corpus-probe/meter/p_at_10", "0.7"),
    Target("composer zero-shot accuracy >= 0.95", "corpus-composer_all/zero_shot/accuracy", "0.95"),
    *[Target(f"{b} zero-shot accuracy > {ref}", f"{b}/zero_shot/accuracy", ref)
      for b in ("wikimt", "vgmidi", "pianist8") for ref in ("untrained", "chance")],
    *[Target(f"wikimt text-to-music MRR > {ref}", "wikimt/text_to_music/mrr", ref) for ref in ("untrained", "chance")],
]
GPU = [
    Target("tune type zero-shot accuracy >= 0.85", "corpus-tune_type/zero_shot/accuracy", "0.85"),
    Target("key retrieval P@10 >= 0.9", "corpus-probe/key/p_at_10", "0.9"),
    Target("meter retrieval P@10 >= 0.9", "corpus-probe/meter/p_at_10", "0.9"),
    Target("WikiMT MRR >= 5x random", "wikimt/text_to_music/mrr", "random*5"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a trained model folder")
    parser.add_argument("--dataset", required=True, help="the built dataset it was trained on (held-out test split)")
    parser.add_argument("--targets", choices=["cpu", "gpu", "both"], default="cpu")
    parser.add_argument("--out", default="outputs/quality-targets", help="folder for the evaluation's plots")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    from clamp.environment import apply_defaults

    apply_defaults()
    from clamp.eval.config import EvalConfig
    from clamp.eval.run import evaluate

    results = evaluate(EvalConfig(model_dir=args.model, dataset_dir=args.dataset, out_dir=args.out, mlflow=False))
    trained: dict[str, float] = {}
    twin: dict[str, float] = {}
    for r in results:
        (twin if r.model.endswith("-untrained") else trained).update(r.metrics)
    rows = []
    for t in {"cpu": CPU, "gpu": GPU, "both": CPU + GPU}[args.targets]:
        if t.metric not in trained:
            rows.append({"target": t.name, "value": None, "bound": None, "result": "MISSING"})
            continue
        value, bound = trained[t.metric], t.bound(trained, twin)
        strict = t.threshold in ("untrained", "chance")
        ok = value > bound if strict else value >= bound
        low, high = trained.get(f"{t.metric}_ci_low"), trained.get(f"{t.metric}_ci_high")
        rows.append({"target": t.name, "value": value, "ci": [low, high], "bound": bound,
                     "untrained": twin.get(t.metric), "result": "PASS" if ok else "FAIL"})
    width = max(len(r["target"]) for r in rows)
    for r in rows:
        if r["value"] is None:
            print(f"{r['target']:<{width}}  MISSING")
            continue
        ci = f" [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]" if r["ci"][0] is not None else ""
        twin_v = f"  untrained {r['untrained']:.3f}" if r["untrained"] is not None else ""
        print(f"{r['target']:<{width}}  {r['value']:.3f}{ci}  bound {r['bound']:.3f}{twin_v}  {r['result']}")
    passed = sum(r["result"] == "PASS" for r in rows)
    print(f"{passed} of {len(rows)} targets met")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"targets": rows, "trained": trained, "untrained": twin}, fh, indent=2)


if __name__ == "__main__":
    main()
