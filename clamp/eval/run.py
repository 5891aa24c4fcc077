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
from clamp.eval.metrics import RESAMPLES, accuracy_ci, hit_rate_ci, macro_f1_ci, mrr_ci
from clamp.eval.tasks import (
    baselines,
    classification_metrics,
    linear_probe,
    search_baselines,
    search_metrics,
    zero_shot,
)
from clamp.inference.embed import embed_music, embed_text
from clamp.inference.prompts import prompts_for
from clamp.model.geometry import COLLAPSE_COSINE, mean_pairwise_cosine, uniformity

log = logging.getLogger("clamp.eval")



@dataclass
class EvalResult:
    model: str
    benchmark: str
    metrics: dict[str, float]
    artifacts: list[Path]
    rows: list[dict] | None = None  # per-query rows of the retrieval probes
    predictions: np.ndarray | None = None  # zero-shot classes with the user-style prompts (for the controls)


def _put_ci(metrics: dict[str, float], name: str, ci: tuple[float, float] | None) -> None:
    """`<name>_ci_low` / `<name>_ci_high` (docs/evaluation.md, "Intervals")."""
    if ci is not None:
        metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = ci


def embedding_spread(music: np.ndarray) -> dict[str, float]:
    """Mean pairwise cosine and uniformity (Wang & Isola 2020) of a benchmark's music embeddings."""
    if len(music) < 2:
        return {}
    return {"mean_cosine": mean_pairwise_cosine(music), "uniformity": uniformity(music)}


def classified(metrics: dict[str, float], name: str, y: np.ndarray, pred: np.ndarray, n_classes: int,
               resamples: int, seed: int) -> dict:
    """Accuracy and macro-F1 of `pred` under `name` (`<b>/zero_shot`), with their intervals."""
    out = classification_metrics(y, pred, n_classes)
    metrics[f"{name}/accuracy"], metrics[f"{name}/macro_f1"] = out["accuracy"], out["macro_f1"]
    _put_ci(metrics, f"{name}/accuracy", accuracy_ci(y, pred, resamples, seed))
    _put_ci(metrics, f"{name}/macro_f1", macro_f1_ci(y, pred, n_classes, resamples, seed))
    return out


def zero_shot_both(model, music: np.ndarray, classes: list[str], task: str, templates: dict | None = None
                   ) -> dict[str, np.ndarray]:
    """Zero-shot predictions with the training-style templates (`zero_shot`) and with the held-out
    user-style ones (`user_prompts`)."""
    out = {}
    for kind, style in (("zero_shot", "training"), ("user_prompts", "user")):
        prompt_emb = [embed_text(model, p) for p in prompts_for(classes, task, templates if style == "training" else None, style)]
        out[kind] = zero_shot(music, prompt_emb)
    return out


def evaluate_benchmark(model, model_name: str, bench: Benchmark, out_dir: Path, templates: dict | None = None,
                       probe: bool = True, music: np.ndarray | None = None, resamples: int = RESAMPLES,
                       seed: int = 0, header_pred: np.ndarray | None = None) -> EvalResult:
    """Zero-shot (training-style and user-style prompts), linear probe and (with texts) search on
    one benchmark, with 95% bootstrap intervals from `resamples` resamples of the items (0: none).
    `music`: the items' embeddings, when known; `header_pred`: the header-only baseline's classes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    b, task = bench.name, bench.task
    classes = bench.classes
    y = np.array([classes.index(label) for label in bench.labels])
    music = embed_music(model, bench.abc) if music is None else music
    preds = zero_shot_both(model, music, classes, task, templates)
    pred = preds["zero_shot"]
    metrics: dict[str, float] = {
        f"{b}/items": float(len(bench)),
        f"{b}/classes": float(len(classes)),
        f"{b}/conversion_failures": float(len(bench.failures)),
    }
    zs = classified(metrics, f"{b}/zero_shot", y, pred, len(classes), resamples, seed)
    classified(metrics, f"{b}/user_prompts", y, preds["user_prompts"], len(classes), resamples, seed)
    metrics.update({f"{b}/baseline/{k}": v for k, v in baselines(y, len(classes)).items()})
    if header_pred is not None:
        classified(metrics, f"{b}/baseline/header", y, header_pred, len(classes), resamples, seed)
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
        w.writerow(["id", "label", "zero_shot_prediction", "user_prompts_prediction"])
        w.writerows(zip(bench.ids, bench.labels, [classes[i] for i in pred], [classes[i] for i in preds["user_prompts"]],
                        strict=True))
    artifacts.append(predictions)
    if bench.failures:
        failures = out_dir / f"{b}-conversion_failures.json"
        failures.write_text(json.dumps(bench.failures, indent=2))
        artifacts.append(failures)
    return EvalResult(model_name, b, metrics, artifacts, predictions=preds["user_prompts"])


def evaluate_controls(model, bench: Benchmark, full_pred: np.ndarray, controls: list[str], embed_control,
                      templates: dict | None = None, resamples: int = RESAMPLES, seed: int = 0) -> dict[str, float]:
    """The input controls of one benchmark (`clamp.eval.controls`): zero-shot with both prompt
    styles on the changed input, and `agreement`, the share of items whose user-prompt prediction
    is the one of the unchanged input. `embed_control(control, bench)` gives (embeddings, kept
    item indices): items a control could not produce (a failed MIDI rendering) are left out and
    counted under `<b>.<control>/items`."""
    from clamp.eval.controls import INPUT_CONTROLS, control_benchmark_name

    metrics: dict[str, float] = {}
    classes = bench.classes
    y_all = np.array([classes.index(label) for label in bench.labels])
    for name in controls:
        control = INPUT_CONTROLS[name]
        if control.heldout_only and not (bench.name.startswith(("corpus-", "unseen-", "valid-"))):
            continue
        music, kept = embed_control(control, bench)
        if len(kept) == 0:
            continue
        b = control_benchmark_name(bench.name, name)
        y = y_all[kept]
        preds = zero_shot_both(model, music, classes, bench.task, templates)
        classified(metrics, f"{b}/zero_shot", y, preds["zero_shot"], len(classes), resamples, seed)
        classified(metrics, f"{b}/user_prompts", y, preds["user_prompts"], len(classes), resamples, seed)
        metrics[f"{b}/agreement"] = float(np.mean(preds["user_prompts"] == full_pred[kept]))
        metrics[f"{b}/items"] = float(len(kept))
    return metrics


def evaluate_probes(model, model_name: str, items: HeldoutItems, probes: list, out_dir: Path,
                    music: np.ndarray | None = None, resamples: int = RESAMPLES, seed: int = 0,
                    benchmark: str | None = None) -> EvalResult:
    """The retrieval probes (`clamp.eval.probes`) over every held-out item; metrics under `corpus-probe/`."""
    from clamp.eval.probes import PROBE_BENCHMARK, probe_results

    out_dir.mkdir(parents=True, exist_ok=True)
    music = embed_music(model, items.abc) if music is None else music
    queries = embed_text(model, [p.query for p in probes])
    b = benchmark or PROBE_BENCHMARK
    metrics, rows = probe_results(queries, music, probes, items.labels, items.ids, resamples, seed, benchmark=b)
    metrics[f"{b}/items"] = float(len(items))
    path = out_dir / f"{b}-queries.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["query", "group", "target", "matches", "random", "p_at_10", "ci_low", "ci_high", "top_10"])
        w.writeheader()
        w.writerows(rows)
    return EvalResult(model_name, b, metrics, [path], rows)


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
    and the retrieval probes of `cfg.dataset_dir`, with the controls of docs/evaluation.md: the
    header-only baseline, the input controls (trained model only) and the held-out collection."""
    from clamp.data.benchmarks import BENCHMARKS
    from clamp.eval.benchmarks import SPLIT_PREFIX, heldout_benchmark, heldout_items, load_benchmark
    from clamp.eval.controls import fair_twin_like
    from clamp.eval.probes import PROBES, USER_PROBES, task_probes
    from clamp.model.clamp_model import ClampModel
    from clamp.model.device import pick_device

    model_dir = Path(cfg.model_dir)
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
    train_items: HeldoutItems | None = None
    if cfg.dataset_dir is not None:
        items = heldout_items(cfg.dataset_dir, cfg.heldout_split)
        prefix = SPLIT_PREFIX[cfg.heldout_split]
        pools = [(items, cfg.heldout_fields, prefix)]
        unseen = heldout_items(cfg.dataset_dir, "heldout") if cfg.unseen_fields else None
        if unseen is not None and len(unseen):
            pools.append((unseen, cfg.unseen_fields, SPLIT_PREFIX["heldout"]))
        for pool, fields, pre in pools:
            for field in fields:
                bench = heldout_benchmark(pool, field, prefix=pre)
                if len(bench.classes) >= 2:
                    loaded.append(bench)
                    heldout.add(bench.name)
                else:
                    log.info("no held-out task %s: %d class(es) with enough items", bench.name, len(bench.classes))
        if cfg.header_baseline and heldout:
            train_items = heldout_items(cfg.dataset_dir, "train")
    if cfg.max_items:
        loaded = [subsample(b, cfg.max_items) for b in loaded]
        items = subsample_items(items, cfg.max_items) if items is not None else None
    probes = (PROBES + task_probes(items) + USER_PROBES + task_probes(items, "user")
              if cfg.probes and items is not None and len(items) else [])
    header_preds = {b.name: header_predictions(b, train_items) for b in loaded if b.name in heldout and train_items is not None}
    lineage = _lineage(model_dir)
    built = _built_dataset(cfg.dataset_dir) if cfg.dataset_dir is not None else None
    inputs = {b.name: built if b.name in heldout else _benchmark_dataset(b) for b in loaded}
    twins = {"fair": ["fair"], "random": ["random"], "both": ["fair", "random"]}[cfg.twin] if cfg.include_untrained else []
    models = [(model_name, model)]
    for kind in twins:
        models.append((f"{model_name}-untrained" if kind == "fair" else f"{model_name}-untrained-random",
                       fair_twin_like(model) if kind == "fair" else random_init_like(model)))
    results: list[EvalResult] = []
    boot = {"resamples": cfg.bootstrap_resamples, "seed": cfg.bootstrap_seed}
    routed: dict[str, str | None] = {}  # MIDI route of each held-out tune, shared by the models
    for name, m in models:
        cache: dict[str, np.ndarray] = {}  # held-out embeddings by id: each test item is embedded once per model
        control_cache: dict[tuple[str, str], np.ndarray | None] = {}
        for bench in loaded:
            music = _embed_cached(m, bench.ids, bench.abc, cache) if bench.name in heldout else None
            result = evaluate_benchmark(m, name, bench, Path(cfg.out_dir) / name, templates, music=music,
                                        header_pred=header_preds.get(bench.name), **boot)
            if m is model and cfg.controls and result.predictions is not None:
                def embed_control(control, b, m=m, control_cache=control_cache):
                    return _embed_control(m, control, b, control_cache, routed, cfg.cache_dir)

                result.metrics.update(evaluate_controls(m, bench, result.predictions, list(cfg.controls), embed_control,
                                                        templates, **boot))
            results.append(result)
            _log_run(cfg, result, m, bench.provenance, lineage, inputs[bench.name])
        if probes and items is not None:
            music = _embed_cached(m, items.ids, items.abc, cache)
            result = evaluate_probes(m, name, items, probes, Path(cfg.out_dir) / name, music, **boot,
                                     benchmark=f"{SPLIT_PREFIX[cfg.heldout_split]}-probe")
            results.append(result)
            _log_run(cfg, result, m, items.provenance, lineage, built)
    return results  # collapse warnings: `results_table(results)["warnings"]`


def header_predictions(bench: Benchmark, train: HeldoutItems) -> np.ndarray:
    """The header-only baseline's classes for a held-out task: fit on the train split's items with
    the task's label (`clamp.eval.controls.header_baseline`)."""
    from clamp.eval.benchmarks import HELDOUT_TASKS, label_key
    from clamp.eval.controls import header_baseline

    task = HELDOUT_TASKS[bench.name.split("-", 1)[1]]
    labels = [lab.get(task.label, "") for lab in train.labels]
    # the train items' spellings are mapped onto the task's classes by label_key
    by_key = {label_key(c): c for c in bench.classes}
    mapped = [by_key.get(label_key(x), "") if x else "" for x in labels]
    return header_baseline(train.abc, mapped, bench.abc, bench.classes)


def _embed_control(model, control, bench: Benchmark, cache: dict, routed: dict[str, str | None],
                   cache_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of a benchmark's items under an input control, and which items it kept; each
    (control, item) is embedded once per model, and the MIDI route is converted once per tune."""
    from clamp.eval.controls import midi_routed

    if control.name == "midi-route":
        todo = [i for i in bench.ids if i not in routed]
        if todo:
            abc_of = dict(zip(bench.ids, bench.abc, strict=True))
            routed.update(zip(todo, midi_routed([abc_of[i] for i in todo], cache_dir or _default_cache()), strict=True))
    missing = [(i, a) for i, a in zip(bench.ids, bench.abc, strict=True) if (control.name, i) not in cache]
    if missing:
        texts: list[str | None] = []
        for i, a in missing:
            if control.name == "midi-route":
                texts.append(routed.get(i))
            else:
                texts.append(control.before(a) if control.before is not None else a)
        ok = [k for k, t in enumerate(texts) if t]
        emb = embed_music(model, [texts[k] for k in ok], after=control.after) if ok else np.zeros((0, 1))
        for i, _ in missing:
            cache[(control.name, i)] = None
        for row, k in enumerate(ok):
            cache[(control.name, missing[k][0])] = emb[row]
    kept = np.array([j for j, i in enumerate(bench.ids) if cache[(control.name, i)] is not None], dtype=np.int64)
    dim = model.config.projection_dim
    music = np.stack([cache[(control.name, bench.ids[j])] for j in kept]) if len(kept) else np.zeros((0, dim), np.float32)
    return music, kept


def _default_cache() -> str:
    from clamp.config import BuildConfig

    return str(BuildConfig.model_fields["cache_dir"].default)


def _embed_cached(model, ids: list[str], abcs: list[str], cache: dict[str, np.ndarray]) -> np.ndarray:
    missing = list(dict.fromkeys(i for i in ids if i not in cache))
    if missing:
        abc_of = dict(zip(ids, abcs, strict=True))
        cache.update(zip(missing, embed_music(model, [abc_of[i] for i in missing]), strict=True))
    dim = model.config.projection_dim
    return np.stack([cache[i] for i in ids]) if ids else np.zeros((0, dim), dtype=np.float32)


def _built_dataset(dataset_dir: str | Path) -> tuple[str, str, str]:
    """(name, digest, folder) of a built dataset: its manifest's name and fingerprint."""
    from clamp.data.shards import load_manifest

    manifest = load_manifest(dataset_dir)
    return manifest.get("name") or Path(dataset_dir).name, manifest.get("fingerprint", ""), str(dataset_dir)


def _benchmark_dataset(bench: Benchmark) -> tuple[str, str, str]:
    """(name, digest, location) of a benchmark: the digest of what was read (ids, labels, ABC)."""
    from clamp.tracking import content_digest

    return bench.name, content_digest(bench.ids, bench.labels, bench.abc), bench.location or "."


def _log_run(cfg: EvalConfig, result: EvalResult, model, provenance: str, lineage: dict[str, str],
             dataset: tuple[str, str, str] | None = None) -> None:
    """One MLflow run per (model, benchmark): `<model>/<benchmark>`, with what it read as its
    evaluation dataset input."""
    if not cfg.mlflow:
        return
    from clamp.tracking import dataset_input, mlflow_run

    name, bench = result.model, result.benchmark
    with mlflow_run(cfg.experiment, f"{name}/{bench}", Path(cfg.tracking_dir) if cfg.tracking_dir else None) as run:
        import mlflow

        origin = getattr(model.config, "origin", None)  # an imported checkpoint's format (clamp.model.imports)
        mlflow.set_tags({"kind": "evaluation", "model": name, "benchmark": bench,
                         "untrained": str(name.endswith("-untrained")), **({"origin": origin} if origin else {}),
                         **lineage})
        mlflow.log_params({"model_dir": cfg.model_dir, "benchmark_provenance": provenance[:250],
                           "patch_mode": model.config.music.patch_mode, "input_kind": model.config.music.input_kind,
                           "bootstrap_resamples": cfg.bootstrap_resamples, "bootstrap_seed": cfg.bootstrap_seed})
        mlflow.log_metrics(result.metrics)
        if dataset is not None:
            mlflow.MlflowClient().log_inputs(run.info.run_id, datasets=[dataset_input(*dataset, context="evaluation")])
        for a in result.artifacts:
            mlflow.log_artifact(str(a))


def subsample(bench: Benchmark, n: int) -> Benchmark:
    if len(bench) <= n:
        return bench
    keep = np.linspace(0, len(bench) - 1, n).astype(int)
    pick = lambda xs: [xs[i] for i in keep]  # noqa: E731
    return Benchmark(bench.name, bench.task, pick(bench.ids), pick(bench.abc), pick(bench.labels),
                     pick(bench.texts) if bench.texts else None, bench.failures, bench.provenance + f" (subset of {n})",
                     location=bench.location)


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
                            "user prompts acc": _metric(m, f"{b}/user_prompts/accuracy"),
                            "user F1": _metric(m, f"{b}/user_prompts/macro_f1"),
                            "training prompts acc": _metric(m, f"{b}/zero_shot/accuracy"),
                            "linear probe acc": _metric(m, f"{b}/linear_probe/accuracy"),
                            "t2m MRR": _metric(m, f"{b}/text_to_music/mrr", 3),
                            "t2m hit@10": _metric(m, f"{b}/text_to_music/hit_at_10"),
                            "mean cos": format_ci(cos) if cos is not None else "-"})
        for base, label in (("header", "header-only LR"), ("chance", "chance"), ("majority", "majority")):
            if f"{b}/baseline/{base}/accuracy" not in m0:
                continue
            quality.append({**common, "model": label,
                            "user prompts acc": _metric(m0, f"{b}/baseline/{base}/accuracy"),
                            "user F1": _metric(m0, f"{b}/baseline/{base}/macro_f1"), "training prompts acc": "-",
                            "linear probe acc": "-",
                            "t2m MRR": _metric(m0, f"{b}/baseline/chance/mrr", 3) if has_texts and base == "chance" else "-",
                            "t2m hit@10": _metric(m0, f"{b}/baseline/chance/hit_at_10") if has_texts and base == "chance" else "-",
                            "mean cos": "-"})
    return {"quality": quality, "controls": controls_table(results), "targets": targets_table(results),
            "probes": probes_table(probe_results), "warnings": collapse_warnings(results)}


def targets_table(results: list[EvalResult]) -> list[dict]:
    """The CPU recipe's quality targets (`clamp.eval.targets`) judged on this one run, when it has
    the held-out tasks they read (a dataset was given)."""
    from clamp.eval.targets import cpu_targets, format_targets, judge_all

    trained: dict[str, float] = {}
    twin: dict[str, float] = {}
    for r in results:
        (twin if r.model.endswith("-untrained") else trained if "-untrained" not in r.model else {}).update(r.metrics)
    if not any(k.startswith("corpus-tune_type/") for k in trained):
        return []
    return format_targets(judge_all(cpu_targets(), [(trained, twin)]))


def controls_table(results: list[EvalResult]) -> list[dict]:
    """The input controls of the trained model: per benchmark, the unchanged input, then each
    control's user-prompt accuracy and macro-F1 [95% interval], training-prompt accuracy and
    agreement with the unchanged input's predictions."""
    from clamp.eval.controls import INPUT_CONTROLS, control_benchmark_name

    rows: list[dict] = []
    for r in results:
        if r.rows is not None:
            continue
        m, b = r.metrics, r.benchmark
        found = [c for c in INPUT_CONTROLS if f"{control_benchmark_name(b, c)}/user_prompts/accuracy" in m]
        if not found:
            continue
        rows.append({"benchmark": b, "input": "as given", "items": str(int(m.get(f"{b}/items", 0))),
                     "user prompts acc": _metric(m, f"{b}/user_prompts/accuracy"),
                     "user F1": _metric(m, f"{b}/user_prompts/macro_f1"),
                     "training prompts acc": _metric(m, f"{b}/zero_shot/accuracy"), "agreement": "-"})
        for c in found:
            cb = control_benchmark_name(b, c)
            rows.append({"benchmark": b, "input": c, "items": str(int(m.get(f"{cb}/items", 0))),
                         "user prompts acc": _metric(m, f"{cb}/user_prompts/accuracy"),
                         "user F1": _metric(m, f"{cb}/user_prompts/macro_f1"),
                         "training prompts acc": _metric(m, f"{cb}/zero_shot/accuracy"),
                         "agreement": format_ci(m.get(f"{cb}/agreement"))})
    return rows


def probes_table(results: list[EvalResult]) -> list[dict]:
    """The retrieval probes: fixed queries, then the per-task means; P@10 per model beside the random share."""
    if not results:
        return []
    models = list(dict.fromkeys(r.model for r in results))
    first = results[0]
    rows: list[dict] = []
    for q in first.rows or []:
        if q["group"] not in ("fixed", "user"):
            continue
        row = {"probe": q["query"], "target": q["target"], "matches": str(q["matches"]), "random": format_ci(q["random"])}
        for r in results:
            mine = next((x for x in r.rows or [] if x["query"] == q["query"] and x["group"] == q["group"]), None)
            row[f"{r.model} P@10"] = format_ci(mine["p_at_10"], mine["ci_low"], mine["ci_high"]) if mine else "-"
        rows.append(row)
    groups = list(dict.fromkeys(q["group"] for q in first.rows or []))
    for group in groups:
        name = f"{first.benchmark}/{group}"
        m0 = first.metrics
        label = {"fixed": "all fixed probes", "user": "all user-phrased probes (held out)"}.get(
            group, f"{group}: one query per class")
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
    console.print(table_of(report.get("quality", []), f"{title}: value [95% bootstrap interval]; user prompts are "
                                                      "held out from training's captions", "benchmark"))
    if report.get("controls"):
        console.print(table_of(report["controls"], "input controls (trained model): the same items with the music written "
                                                   "another way, or without its K:/M:/L: lines; agreement = share of "
                                                   "unchanged predictions", "benchmark"))
    if report.get("targets"):
        console.print(table_of(report["targets"], "quality targets of the CPU recipe, this run (margin = value - bar "
                                                  "[95% bootstrap interval]; docs/evaluation.md, \"Targets\")"))
    if report.get("probes"):
        console.print(table_of(report["probes"], "retrieval probes: precision@10 over the held-out items "
                                                 "[95% interval]; random = share of the items that match"))
    for line in report.get("warnings", []):
        console.print(f"warning: {line}", markup=False, highlight=False)
