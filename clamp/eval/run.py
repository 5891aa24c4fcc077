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

from clamp.eval.benchmarks import Benchmark, HeldoutItems
from clamp.eval.config import EvalConfig
from clamp.eval.embed import embed_music, embed_text
from clamp.eval.metrics import RESAMPLES, accuracy_ci, hit_rate_ci, macro_f1_ci, mrr_ci
from clamp.eval.tasks import (
    baselines,
    classification_metrics,
    linear_probe,
    prompts_for,
    search_baselines,
    search_metrics,
    zero_shot,
)
from clamp.model.geometry import COLLAPSE_COSINE, mean_pairwise_cosine, uniformity

log = logging.getLogger("clamp.eval")



@dataclass
class EvalResult:
    model: str
    benchmark: str
    metrics: dict[str, float]
    artifacts: list[Path]
    rows: list[dict] | None = None  # per-query rows of the retrieval probes


def _put_ci(metrics: dict[str, float], name: str, ci: tuple[float, float] | None) -> None:
    """`<name>_ci_low` / `<name>_ci_high` (docs/evaluation.md, "Intervals")."""
    if ci is not None:
        metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = ci


def embedding_spread(music: np.ndarray) -> dict[str, float]:
    """Mean pairwise cosine and uniformity (Wang & Isola 2020) of a benchmark's music embeddings."""
    if len(music) < 2:
        return {}
    return {"mean_cosine": mean_pairwise_cosine(music), "uniformity": uniformity(music)}


def evaluate_benchmark(model, model_name: str, bench: Benchmark, out_dir: Path, templates: dict | None = None,
                       probe: bool = True, music: np.ndarray | None = None, resamples: int = RESAMPLES,
                       seed: int = 0) -> EvalResult:
    """Zero-shot, linear probe and (with texts) search on one benchmark, with 95% bootstrap intervals
    from `resamples` resamples of the items (0: none). `music`: the items' embeddings, when known."""
    out_dir.mkdir(parents=True, exist_ok=True)
    b, task = bench.name, bench.task
    classes = bench.classes
    y = np.array([classes.index(label) for label in bench.labels])
    music = embed_music(model, bench.abc) if music is None else music
    prompt_sets = prompts_for(classes, task, templates)
    prompt_emb = [embed_text(model, p) for p in prompt_sets]
    pred = zero_shot(music, prompt_emb)
    zs = classification_metrics(y, pred, len(classes))
    metrics: dict[str, float] = {
        f"{b}/zero_shot/accuracy": zs["accuracy"],
        f"{b}/zero_shot/macro_f1": zs["macro_f1"],
        f"{b}/items": float(len(bench)),
        f"{b}/classes": float(len(classes)),
        f"{b}/conversion_failures": float(len(bench.failures)),
    }
    _put_ci(metrics, f"{b}/zero_shot/accuracy", accuracy_ci(y, pred, resamples, seed))
    _put_ci(metrics, f"{b}/zero_shot/macro_f1", macro_f1_ci(y, pred, len(classes), resamples, seed))
    metrics.update({f"{b}/baseline/{k}": v for k, v in baselines(y, len(classes)).items()})
    metrics.update({f"{b}/embedding/{k}": v for k, v in embedding_spread(music).items()})
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
            _put_ci(metrics, f"{b}/{direction}/mrr", mrr_ci(res["ranks"], resamples, seed))
            for k in (1, 10):
                _put_ci(metrics, f"{b}/{direction}/hit_at_{k}", hit_rate_ci(res["ranks"], k, resamples, seed))
        metrics.update({f"{b}/baseline/chance/{k.replace('@', '_at_')}": v for k, v in search_baselines(len(bench)).items()})
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


def evaluate_probes(model, model_name: str, items: HeldoutItems, probes: list, out_dir: Path,
                    music: np.ndarray | None = None, resamples: int = RESAMPLES, seed: int = 0) -> EvalResult:
    """The retrieval probes (`clamp.eval.probes`) over every held-out item; metrics under `corpus-probe/`."""
    from clamp.eval.probes import PROBE_BENCHMARK, probe_results

    out_dir.mkdir(parents=True, exist_ok=True)
    music = embed_music(model, items.abc) if music is None else music
    queries = embed_text(model, [p.query for p in probes])
    metrics, rows = probe_results(queries, music, probes, items.labels, items.ids, resamples, seed)
    metrics[f"{PROBE_BENCHMARK}/items"] = float(len(items))
    path = out_dir / f"{PROBE_BENCHMARK}-queries.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["query", "group", "target", "matches", "random", "p_at_10", "ci_low", "ci_high", "top_10"])
        w.writeheader()
        w.writerows(rows)
    return EvalResult(model_name, PROBE_BENCHMARK, metrics, [path], rows)


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
    device = next(model.parameters()).device
    return ClampModel(model.config, text, model.tokenizer).to(device).eval()


def evaluate(cfg: EvalConfig, templates: dict | None = None) -> list[EvalResult]:
    """Evaluate a model folder (and its untrained twin) on the benchmarks found, the held-out tasks
    and the retrieval probes of `cfg.dataset_dir`."""
    from clamp.data.benchmarks import BENCHMARKS
    from clamp.eval.benchmarks import heldout_benchmark, heldout_items, load_benchmark
    from clamp.eval.probes import PROBES, task_probes
    from clamp.model.clamp_model import ClampModel

    model_dir = Path(cfg.model_dir)
    from clamp.model.device import pick_device

    model = ClampModel.from_pretrained(model_dir).to(pick_device(cfg.device)).eval()
    model_name = model_dir.resolve().parent.name if model_dir.name == "model" else model_dir.name
    loaded: list[Benchmark] = []
    for name in cfg.benchmarks or list(BENCHMARKS):
        try:
            loaded.append(load_benchmark(name, cfg.benchmarks_dir, cfg.cache_dir))
        except FileNotFoundError as exc:
            log.warning("skipping %s: %s", name, exc)
    items: HeldoutItems | None = None
    heldout: set[str] = set()
    if cfg.dataset_dir is not None:
        items = heldout_items(cfg.dataset_dir)
        for field in cfg.heldout_fields:
            bench = heldout_benchmark(items, field)
            if len(bench.classes) >= 2:
                loaded.append(bench)
                heldout.add(bench.name)
            else:
                log.info("no held-out task %s: %d class(es) with enough test items", bench.name, len(bench.classes))
    if cfg.max_items:
        loaded = [subsample(b, cfg.max_items) for b in loaded]
        items = subsample_items(items, cfg.max_items) if items is not None else None
    probes = (PROBES + task_probes(items)) if cfg.probes and items is not None and len(items) else []
    lineage = _lineage(model_dir)
    models = [(model_name, model)] + ([(f"{model_name}-untrained", random_init_like(model))] if cfg.include_untrained else [])
    results: list[EvalResult] = []
    boot = {"resamples": cfg.bootstrap_resamples, "seed": cfg.bootstrap_seed}
    for name, m in models:
        cache: dict[str, np.ndarray] = {}  # held-out embeddings by id: each test item is embedded once per model
        for bench in loaded:
            music = _embed_cached(m, bench.ids, bench.abc, cache) if bench.name in heldout else None
            result = evaluate_benchmark(m, name, bench, Path(cfg.out_dir) / name, templates, music=music, **boot)
            results.append(result)
            _log_run(cfg, result, m, bench.provenance, lineage)
        if probes and items is not None:
            music = _embed_cached(m, items.ids, items.abc, cache)
            result = evaluate_probes(m, name, items, probes, Path(cfg.out_dir) / name, music, **boot)
            results.append(result)
            _log_run(cfg, result, m, items.provenance, lineage)
    return results  # collapse warnings: `results_table(results)["warnings"]`


def _embed_cached(model, ids: list[str], abcs: list[str], cache: dict[str, np.ndarray]) -> np.ndarray:
    missing = list(dict.fromkeys(i for i in ids if i not in cache))
    if missing:
        abc_of = dict(zip(ids, abcs, strict=True))
        cache.update(zip(missing, embed_music(model, [abc_of[i] for i in missing]), strict=True))
    dim = model.config.projection_dim
    return np.stack([cache[i] for i in ids]) if ids else np.zeros((0, dim), dtype=np.float32)


def _log_run(cfg: EvalConfig, result: EvalResult, model, provenance: str, lineage: dict[str, str]) -> None:
    """One MLflow run per (model, benchmark): `<model>/<benchmark>`."""
    if not cfg.mlflow:
        return
    from clamp.tracking import mlflow_run

    name, bench = result.model, result.benchmark
    with mlflow_run(cfg.experiment, f"{name}/{bench}", Path(cfg.tracking_dir) if cfg.tracking_dir else None):
        import mlflow

        origin = getattr(model.config, "origin", None)  # an imported checkpoint's format (clamp.model.imports)
        mlflow.set_tags({"kind": "evaluation", "model": name, "benchmark": bench,
                         "untrained": str(name.endswith("-untrained")), **({"origin": origin} if origin else {}),
                         **lineage})
        mlflow.log_params({"model_dir": cfg.model_dir, "benchmark_provenance": provenance[:250],
                           "patch_mode": model.config.music.patch_mode, "input_kind": model.config.music.input_kind,
                           "bootstrap_resamples": cfg.bootstrap_resamples, "bootstrap_seed": cfg.bootstrap_seed})
        mlflow.log_metrics(result.metrics)
        for a in result.artifacts:
            mlflow.log_artifact(str(a))


def subsample(bench: Benchmark, n: int) -> Benchmark:
    if len(bench) <= n:
        return bench
    keep = np.linspace(0, len(bench) - 1, n).astype(int)
    pick = lambda xs: [xs[i] for i in keep]  # noqa: E731
    return Benchmark(bench.name, bench.task, pick(bench.ids), pick(bench.abc), pick(bench.labels),
                     pick(bench.texts) if bench.texts else None, bench.failures, bench.provenance + f" (subset of {n})")


def subsample_items(items: HeldoutItems, n: int) -> HeldoutItems:
    """An evenly spaced subset of the held-out pool, as `subsample` does for a benchmark."""
    if len(items) <= n:
        return items
    keep = np.linspace(0, len(items) - 1, n).astype(int)
    return HeldoutItems([items.ids[i] for i in keep], [items.abc[i] for i in keep], [items.labels[i] for i in keep],
                        items.provenance + f" (subset of {n})", items.names)


def _lineage(model_dir: Path) -> dict[str, str]:
    """Training run id and dataset fingerprint, from the run folder's MLflow-free record."""
    record = model_dir / "lineage.json"
    if record.is_file():
        return {k: str(v) for k, v in json.loads(record.read_text()).items()}
    return {}


def collapse_warnings(results: list[EvalResult], threshold: float = COLLAPSE_COSINE) -> list[str]:
    """One line per (trained model, benchmark) whose music embeddings have collapsed: mean pairwise
    cosine above `threshold`. The untrained twin's narrow cone is expected and not reported."""
    lines = []
    for r in results:
        cos = r.metrics.get(f"{r.benchmark}/embedding/mean_cosine")
        if cos is not None and cos > threshold and not r.model.endswith("-untrained"):
            shown = f"{cos:.2f}" if round(cos, 2) > threshold else f"{cos:.3f}"  # never "0.95" for 0.953
            lines.append(f"embeddings have collapsed on {r.benchmark}: mean pairwise cosine {shown} ({r.model})")
    return lines


def format_ci(value: float | None, low: float | None = None, high: float | None = None, digits: int = 2) -> str:
    """"0.62 [0.55, 0.69]": a metric with its 95% interval; "0.62" without one; "-" for none."""
    if value is None:
        return "-"
    if low is None or high is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _metric(metrics: dict[str, float], name: str, digits: int = 2) -> str:
    return format_ci(metrics.get(name), metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high"), digits)


def results_table(results: list[EvalResult]) -> dict[str, list]:
    """The quality report (docs/evaluation.md, "Results tables"), JSON-ready:

    - `quality`: per benchmark, one row for each model (the trained one and its untrained twin),
      then `chance` and `majority`; zero-shot accuracy and macro-F1, text-to-music MRR and
      HitRate@10, each "value [95% interval]", the linear probe's accuracy and the embeddings'
      mean pairwise cosine;
    - `probes`: the retrieval probes, one row per fixed query and per task mean, precision@10 of
      each model beside the random share;
    - `warnings`: the collapse lines (`collapse_warnings`).
    """
    quality: list[dict] = []
    by_bench: dict[str, list[EvalResult]] = {}
    probe_results = [r for r in results if r.rows is not None]
    for r in results:
        if r.rows is None:
            by_bench.setdefault(r.benchmark, []).append(r)
    for b, rs in by_bench.items():
        m0 = rs[0].metrics
        common = {"benchmark": b, "classes": str(int(m0.get(f"{b}/classes", 0))), "items": str(int(m0.get(f"{b}/items", 0)))}
        has_texts = f"{b}/text_to_music/mrr" in m0
        for r in rs:
            m = r.metrics
            cos = m.get(f"{b}/embedding/mean_cosine")
            quality.append({**common, "model": r.model,
                            "zero-shot acc": _metric(m, f"{b}/zero_shot/accuracy"),
                            "macro-F1": _metric(m, f"{b}/zero_shot/macro_f1"),
                            "linear probe acc": _metric(m, f"{b}/linear_probe/accuracy"),
                            "t2m MRR": _metric(m, f"{b}/text_to_music/mrr", 3),
                            "t2m hit@10": _metric(m, f"{b}/text_to_music/hit_at_10"),
                            "mean cos": format_ci(cos) if cos is not None else "-"})
        quality.append({**common, "model": "chance",
                        "zero-shot acc": _metric(m0, f"{b}/baseline/chance/accuracy"),
                        "macro-F1": _metric(m0, f"{b}/baseline/chance/macro_f1"), "linear probe acc": "-",
                        "t2m MRR": _metric(m0, f"{b}/baseline/chance/mrr", 3) if has_texts else "-",
                        "t2m hit@10": _metric(m0, f"{b}/baseline/chance/hit_at_10") if has_texts else "-", "mean cos": "-"})
        quality.append({**common, "model": "majority",
                        "zero-shot acc": _metric(m0, f"{b}/baseline/majority/accuracy"),
                        "macro-F1": _metric(m0, f"{b}/baseline/majority/macro_f1"), "linear probe acc": "-",
                        "t2m MRR": "-", "t2m hit@10": "-", "mean cos": "-"})
    return {"quality": quality, "probes": probes_table(probe_results), "warnings": collapse_warnings(results)}


def probes_table(results: list[EvalResult]) -> list[dict]:
    """The retrieval probes: fixed queries, then the per-task means; P@10 per model beside the random share."""
    from clamp.eval.probes import PROBE_BENCHMARK

    if not results:
        return []
    models = list(dict.fromkeys(r.model for r in results))
    first = results[0]
    rows: list[dict] = []
    for q in first.rows or []:
        if q["group"] != "fixed":
            continue
        row = {"probe": q["query"], "target": q["target"], "matches": str(q["matches"]), "random": format_ci(q["random"])}
        for r in results:
            mine = next((x for x in r.rows or [] if x["query"] == q["query"] and x["group"] == "fixed"), None)
            row[f"{r.model} P@10"] = format_ci(mine["p_at_10"], mine["ci_low"], mine["ci_high"]) if mine else "-"
        rows.append(row)
    groups = list(dict.fromkeys(q["group"] for q in first.rows or []))
    for group in groups:
        name = f"{PROBE_BENCHMARK}/{group}"
        m0 = first.metrics
        label = "all fixed probes" if group == "fixed" else f"{group}: one query per class"
        row = {"probe": f"mean: {label}", "target": _queries(int(m0.get(f"{name}/queries", 0))), "matches": "-",
               "random": format_ci(m0.get(f"{name}/random"))}
        for r in results:
            row[f"{r.model} P@10"] = _metric(r.metrics, f"{name}/p_at_10")
        rows.append(row)
    for row in rows:  # every row has every model's column
        for model in models:
            row.setdefault(f"{model} P@10", "-")
    return rows


def _queries(n: int) -> str:
    return f"{n} query" if n == 1 else f"{n} queries"


def print_results_table(report: dict | list[dict], title: str = "evaluation") -> None:
    """The results tables on the terminal (wide enough for their columns even when piped): the
    quality report, the retrieval probes and the collapse warnings of `results_table`. A plain list
    of rows is printed as one table."""
    import shutil

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(width=max(200, shutil.get_terminal_size().columns))

    def table_of(rows: list[dict], caption: str, section_key: str | None = None) -> Table:
        table = Table(title=caption)
        for col in rows[0] if rows else []:
            table.add_column(col, no_wrap=col not in ("probe", "target"))
        for i, r in enumerate(rows):
            last_of_section = section_key is not None and i + 1 < len(rows) and rows[i + 1][section_key] != r[section_key]
            table.add_row(*[Text(f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v))) for v in r.values()],
                          end_section=last_of_section)
        return table

    if isinstance(report, list):
        console.print(table_of(report, title))
        return
    console.print(table_of(report.get("quality", []), f"{title}: value [95% bootstrap interval]", "benchmark"))
    if report.get("probes"):
        console.print(table_of(report["probes"], "retrieval probes: precision@10 over the held-out items "
                                                 "[95% interval]; random = share of the items that match"))
    for line in report.get("warnings", []):
        console.print(f"warning: {line}", markup=False, highlight=False)
