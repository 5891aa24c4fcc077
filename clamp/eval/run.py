"""Run the evaluation protocol of docs/evaluation.md for one model over benchmarks; log to MLflow.

One MLflow run per (model, benchmark), named `<model>/<benchmark>`, with metrics named
`<benchmark>/<task>/<metric>` so runs line up column by column in the MLflow UI.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clamp.eval.benchmarks import Benchmark
from clamp.eval.config import EvalConfig
from clamp.eval.embed import embed_music, embed_text
from clamp.eval.tasks import (
    baselines,
    classification_metrics,
    linear_probe,
    prompts_for,
    search_metrics,
    zero_shot,
)

log = logging.getLogger("clamp.eval")


@dataclass
class EvalResult:
    model: str
    benchmark: str
    metrics: dict[str, float]
    artifacts: list[Path]


def evaluate_benchmark(model, model_name: str, bench: Benchmark, out_dir: Path, templates: dict | None = None,
                       probe: bool = True) -> EvalResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    b, task = bench.name, bench.task
    classes = bench.classes
    y = np.array([classes.index(label) for label in bench.labels])
    music = embed_music(model, bench.abc)
    prompt_sets = prompts_for(classes, task, templates)
    prompt_emb = [embed_text(model, p) for p in prompt_sets]
    pred = zero_shot(music, prompt_emb)
    zs = classification_metrics(y, pred, len(classes))
    metrics: dict[str, float] = {
        f"{b}/zero_shot/accuracy": zs["accuracy"],
        f"{b}/zero_shot/macro_f1": zs["macro_f1"],
        f"{b}/items": float(len(bench)),
        f"{b}/conversion_failures": float(len(bench.failures)),
    }
    metrics.update({f"{b}/baseline/{k}": v for k, v in baselines(y, len(classes)).items()})
    artifacts = [plot_confusion(zs["confusion"], classes, out_dir / f"{b}-zero_shot-confusion.png", f"{model_name} on {b}: zero-shot")]
    if probe and len(classes) > 1:
        lp = linear_probe(music, y, len(classes))
        metrics[f"{b}/linear_probe/accuracy"] = lp["accuracy"]
        metrics[f"{b}/linear_probe/macro_f1"] = lp["macro_f1"]
    if bench.texts:
        text = embed_text(model, bench.texts)
        t2m = search_metrics(text, music)
        m2t = search_metrics(music, text)
        for direction, res in (("text_to_music", t2m), ("music_to_text", m2t)):
            for k in ("mrr", "hit@1", "hit@10", "hit@100"):
                metrics[f"{b}/{direction}/{k.replace('@', '_at_')}"] = res[k]
        artifacts.append(plot_ranks(t2m["ranks"], out_dir / f"{b}-text_to_music-ranks.png", f"{model_name} on {b}: text-to-music ranks"))
    predictions = out_dir / f"{b}-predictions.csv"
    with predictions.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "label", "zero_shot_prediction"])
        w.writerows(zip(bench.ids, bench.labels, [classes[i] for i in pred], strict=True))
    artifacts.append(predictions)
    if bench.failures:
        failures = out_dir / f"{b}-conversion_failures.json"
        failures.write_text(json.dumps(bench.failures, indent=2))
        artifacts.append(failures)
    return EvalResult(model_name, b, metrics, artifacts)


def pyplot_agg():
    """matplotlib's pyplot on the file-only Agg backend (no display on servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Lay out, write as PNG and release a pyplot figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot_agg().close(fig)
    return path


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    plt = pyplot_agg()
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(classes), 0.8 + 0.6 * len(classes)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_ranks(ranks: np.ndarray, path: Path, title: str) -> Path:
    plt = pyplot_agg()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(ranks, bins=np.unique(np.geomspace(1, max(2, ranks.max()), 30).astype(int)))
    ax.set_xscale("log")
    ax.set_xlabel("rank of the matching score (1 = best)")
    ax.set_ylabel("queries")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def random_init_like(model):
    """The same architecture with fresh random weights in both towers: the untrained baseline."""
    import torch
    from transformers import AutoModel

    from clamp.model.clamp_model import ClampModel

    torch.manual_seed(0)
    text = AutoModel.from_config(model.text_encoder.config)
    return ClampModel(model.config, text, model.tokenizer)


def evaluate(cfg: EvalConfig, templates: dict | None = None) -> list[EvalResult]:
    """Evaluate a model folder (and its untrained twin) on the benchmarks found."""
    from clamp.data.benchmarks import BENCHMARKS
    from clamp.eval.benchmarks import load_benchmark, load_heldout
    from clamp.model.clamp_model import ClampModel
    from clamp.tracking import mlflow_run

    model_dir = Path(cfg.model_dir)
    model = ClampModel.from_pretrained(model_dir)
    model_name = model_dir.resolve().parent.name if model_dir.name == "model" else model_dir.name
    loaded: list[Benchmark] = []
    for name in cfg.benchmarks or list(BENCHMARKS):
        try:
            loaded.append(load_benchmark(name, cfg.benchmarks_dir, cfg.cache_dir))
        except FileNotFoundError as exc:
            log.warning("skipping %s: %s", name, exc)
    if cfg.dataset_dir is not None:
        for field in cfg.heldout_fields:
            bench = load_heldout(cfg.dataset_dir, field)
            if len(bench.classes) >= 2:
                loaded.append(bench)
    if cfg.max_items:
        loaded = [subsample(b, cfg.max_items) for b in loaded]
    lineage = _lineage(model_dir)
    models = [(model_name, model)] + ([(f"{model_name}-untrained", random_init_like(model))] if cfg.include_untrained else [])
    results: list[EvalResult] = []
    for name, m in models:
        for bench in loaded:
            result = evaluate_benchmark(m, name, bench, Path(cfg.out_dir) / name, templates)
            results.append(result)
            if cfg.mlflow:
                with mlflow_run(cfg.experiment, f"{name}/{bench.name}", Path(cfg.tracking_dir) if cfg.tracking_dir else None):
                    import mlflow

                    mlflow.set_tags({"kind": "evaluation", "model": name, "benchmark": bench.name,
                                     "untrained": str(name.endswith("-untrained")), **lineage})
                    mlflow.log_params({"model_dir": str(model_dir), "benchmark_provenance": bench.provenance[:250],
                                       "patch_mode": m.config.music.patch_mode, "input_kind": m.config.music.input_kind})
                    mlflow.log_metrics(result.metrics)
                    for a in result.artifacts:
                        mlflow.log_artifact(str(a))
    return results


def subsample(bench: Benchmark, n: int) -> Benchmark:
    if len(bench) <= n:
        return bench
    keep = np.linspace(0, len(bench) - 1, n).astype(int)
    pick = lambda xs: [xs[i] for i in keep]  # noqa: E731
    return Benchmark(bench.name, bench.task, pick(bench.ids), pick(bench.abc), pick(bench.labels),
                     pick(bench.texts) if bench.texts else None, bench.failures, bench.provenance + f" (subset of {n})")


def _lineage(model_dir: Path) -> dict[str, str]:
    """Training run id and dataset fingerprint, from the run folder's MLflow-free record."""
    record = model_dir / "lineage.json"
    if record.is_file():
        return {k: str(v) for k, v in json.loads(record.read_text()).items()}
    return {}


def print_results_table(rows: list[dict], title: str = "evaluation") -> None:
    """The results table on the terminal (wide enough for its columns even when piped)."""
    import shutil

    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in rows[0] if rows else []:
        table.add_column(col)
    for r in rows:
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v)) for v in r.values()])
    Console(width=max(140, shutil.get_terminal_size().columns)).print(table)


def results_table(results: list[EvalResult]) -> list[dict]:
    rows = []
    for r in results:
        b = r.benchmark
        rows.append({
            "model": r.model, "benchmark": b, "items": int(r.metrics.get(f"{b}/items", 0)),
            "zero-shot acc": r.metrics.get(f"{b}/zero_shot/accuracy"),
            "zero-shot F1": r.metrics.get(f"{b}/zero_shot/macro_f1"),
            "probe acc": r.metrics.get(f"{b}/linear_probe/accuracy"),
            "majority acc": r.metrics.get(f"{b}/baseline/majority/accuracy"),
            "t2m MRR": r.metrics.get(f"{b}/text_to_music/mrr"),
        })
    return rows
