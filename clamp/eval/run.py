"""Run the evaluation protocol of docs/evaluation.md for one model over benchmarks; log to MLflow.

One MLflow run per (model, benchmark), named `<model>/<benchmark>`, with metrics named
`<benchmark>/<task>/<metric>` so runs line up column by column in the MLflow UI.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from clamp.eval.benchmarks import Benchmark, HeldoutItems
from clamp.eval.config import EvalConfig
from clamp.eval.metrics import RESAMPLES, accuracy_ci, hit_rate_ci, macro_f1_ci, mrr_ci
from clamp.eval.plots import plot_confusion, plot_ranks
from clamp.eval.result import EvalResult
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
from clamp.model.geometry import mean_pairwise_cosine, uniformity

log = logging.getLogger("clamp.eval")


def _put_ci(metrics: dict[str, float], name: str, ci: tuple[float, float] | None) -> None:
    """`<name>_ci_low` / `<name>_ci_high` (docs/evaluation.md, "Intervals")."""
    if ci is not None:
        metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = ci


def embedding_spread(music: np.ndarray) -> dict[str, float]:
    """Mean pairwise cosine and uniformity (Wang & Isola 2020) of a benchmark's music embeddings."""
    if len(music) < 2:
        return {}
    return {"mean_cosine": mean_pairwise_cosine(music), "uniformity": uniformity(music)}


def classified(
    metrics: dict[str, float], name: str, y: np.ndarray, pred: np.ndarray, n_classes: int, resamples: int, seed: int
) -> dict:
    """Accuracy and macro-F1 of `pred` under `name` (`<b>/zero_shot`), with their intervals."""
    out = classification_metrics(y, pred, n_classes)
    metrics[f"{name}/accuracy"], metrics[f"{name}/macro_f1"] = out["accuracy"], out["macro_f1"]
    _put_ci(metrics, f"{name}/accuracy", accuracy_ci(y, pred, resamples, seed))
    _put_ci(metrics, f"{name}/macro_f1", macro_f1_ci(y, pred, n_classes, resamples, seed))
    return out


def zero_shot_both(
    model, music: np.ndarray, classes: list[str], task: str, templates: dict | None = None
) -> dict[str, np.ndarray]:
    """Zero-shot predictions with the training-style templates (`zero_shot`) and with the held-out
    user-style ones (`user_prompts`)."""
    out = {}
    for kind, style in (("zero_shot", "training"), ("user_prompts", "user")):
        prompt_emb = [
            embed_text(model, p) for p in prompts_for(classes, task, templates if style == "training" else None, style)
        ]
        out[kind] = zero_shot(music, prompt_emb)
    return out


def evaluate_benchmark(
    model,
    model_name: str,
    bench: Benchmark,
    out_dir: Path,
    templates: dict | None = None,
    probe: bool = True,
    music: np.ndarray | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    header_pred: np.ndarray | None = None,
) -> EvalResult:
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
    artifacts = [
        plot_confusion(
            zs["confusion"], classes, out_dir / f"{b}-zero_shot-confusion.png", f"{model_name} on {b}: zero-shot"
        )
    ]
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
        metrics.update(
            {f"{b}/baseline/chance/{k.replace('@', '_at_')}": v for k, v in search_baselines(len(bench)).items()}
        )
        artifacts.append(
            plot_ranks(
                t2m["ranks"], out_dir / f"{b}-text_to_music-ranks.png", f"{model_name} on {b}: text-to-music ranks"
            )
        )
    predictions = write_predictions(
        out_dir / f"{b}-predictions.csv",
        list(bench.ids),
        list(bench.labels),
        [classes[i] for i in pred],
        [classes[i] for i in preds["user_prompts"]],
    )
    artifacts.append(predictions)
    if bench.failures:
        failures = out_dir / f"{b}-conversion_failures.json"
        failures.write_text(json.dumps(bench.failures, indent=2))
        artifacts.append(failures)
    return EvalResult(model_name, b, metrics, artifacts, predictions=preds["user_prompts"])


def evaluate_controls(
    model,
    bench: Benchmark,
    full_pred: np.ndarray,
    controls: list[str],
    embed_control,
    templates: dict | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    out_dir: Path | None = None,
) -> dict[str, float]:
    """The input controls of one benchmark (`clamp.eval.controls`): zero-shot with both prompt
    styles on the changed input, and `agreement`, the share of items whose user-prompt prediction
    is the one of the unchanged input. `embed_control(control, bench)` gives (embeddings, kept
    item indices): items a control could not produce (a failed MIDI rendering) are left out and
    counted under `<b>.<control>/items`. With `out_dir`, each control's predictions go to
    `<b>.<control>-predictions.csv`, as the unchanged input's do (paired comparisons of two models
    item by item read them)."""
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
        if out_dir is not None:
            write_predictions(
                out_dir / f"{b}-predictions.csv",
                [bench.ids[k] for k in kept],
                [bench.labels[k] for k in kept],
                [classes[i] for i in preds["zero_shot"]],
                [classes[i] for i in preds["user_prompts"]],
            )
    return metrics


def write_predictions(
    path: Path, ids: list[str], labels: list[str], zero_shot: list[str], user_prompts: list[str]
) -> Path:
    """One row per item: id, label, and the class each prompt style predicted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "label", "zero_shot_prediction", "user_prompts_prediction"])
        w.writerows(zip(ids, labels, zero_shot, user_prompts, strict=True))
    return path


def evaluate_probes(
    model,
    model_name: str,
    items: HeldoutItems,
    probes: list,
    out_dir: Path,
    music: np.ndarray | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    benchmark: str | None = None,
) -> EvalResult:
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
        w = csv.DictWriter(
            fh, fieldnames=["query", "group", "target", "matches", "random", "p_at_10", "ci_low", "ci_high", "top_10"]
        )
        w.writeheader()
        w.writerows(rows)
    return EvalResult(model_name, b, metrics, [path], rows)


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
    for name in list(BENCHMARKS) if cfg.benchmarks is None else cfg.benchmarks:  # []: none, held-out tasks only
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
    probes = (
        PROBES + task_probes(items) + USER_PROBES + task_probes(items, "user")
        if cfg.probes and items is not None and len(items)
        else []
    )
    header_preds = {
        b.name: header_predictions(b, train_items) for b in loaded if b.name in heldout and train_items is not None
    }
    lineage = _lineage(model_dir)
    built = _built_dataset(cfg.dataset_dir) if cfg.dataset_dir is not None else None
    inputs = {b.name: built if b.name in heldout else _benchmark_dataset(b) for b in loaded}
    twins = (
        {"fair": ["fair"], "random": ["random"], "both": ["fair", "random"]}[cfg.twin] if cfg.include_untrained else []
    )
    models = [(model_name, model)]
    for kind in twins:
        models.append(
            (
                f"{model_name}-untrained" if kind == "fair" else f"{model_name}-untrained-random",
                fair_twin_like(model) if kind == "fair" else random_init_like(model),
            )
        )
    results: list[EvalResult] = []
    boot = {"resamples": cfg.bootstrap_resamples, "seed": cfg.bootstrap_seed}
    routed: dict[str, str | None] = {}  # MIDI route of each held-out tune, shared by the models
    for name, m in models:
        cache: dict[str, np.ndarray] = {}  # held-out embeddings by id: each test item is embedded once per model
        control_cache: dict[tuple[str, str], np.ndarray | None] = {}
        for bench in loaded:
            music = _embed_cached(m, bench.ids, bench.abc, cache) if bench.name in heldout else None
            result = evaluate_benchmark(
                m,
                name,
                bench,
                Path(cfg.out_dir) / name,
                templates,
                music=music,
                header_pred=header_preds.get(bench.name),
                **boot,
            )
            if m is model and cfg.controls and result.predictions is not None:

                def embed_control(control, b, m=m, control_cache=control_cache):
                    return _embed_control(m, control, b, control_cache, routed, cfg.cache_dir)

                result.metrics.update(
                    evaluate_controls(
                        m,
                        bench,
                        result.predictions,
                        list(cfg.controls),
                        embed_control,
                        templates,
                        **boot,
                        out_dir=Path(cfg.out_dir) / name,
                    )
                )
            results.append(result)
            _log_run(cfg, result, m, bench.provenance, lineage, inputs[bench.name])
        if probes and items is not None:
            music = _embed_cached(m, items.ids, items.abc, cache)
            result = evaluate_probes(
                m,
                name,
                items,
                probes,
                Path(cfg.out_dir) / name,
                music,
                **boot,
                benchmark=f"{SPLIT_PREFIX[cfg.heldout_split]}-probe",
            )
            results.append(result)
            _log_run(cfg, result, m, items.provenance, lineage, built)
    write_evaluation(cfg, results)
    return results  # collapse warnings: `results_table(results)["warnings"]`


def write_evaluation(cfg: EvalConfig, results: list[EvalResult]) -> Path:
    """`<out_dir>/evaluation.json`: the metrics of every (model, benchmark) pair and the report's
    tables, which `clamp report` renders."""
    import datetime as dt

    from clamp.eval.report import EVALUATION_FILE
    from clamp.eval.tables import results_table
    from clamp.io import write_json_atomic

    path = Path(cfg.out_dir) / EVALUATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "model_dir": str(cfg.model_dir),
        "dataset_dir": cfg.dataset_dir and str(cfg.dataset_dir),
        "date": dt.date.today().isoformat(),
        "tables": results_table(results),
        "results": [
            {
                "model": r.model,
                "benchmark": r.benchmark,
                "metrics": r.metrics,
                "artifacts": [str(a) for a in r.artifacts],
            }
            for r in results
        ],
    }
    write_json_atomic(record, path, sort_keys=False)  # the tables' columns keep their order
    return path


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


def _embed_control(
    model, control, bench: Benchmark, cache: dict, routed: dict[str, str | None], cache_dir: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of a benchmark's items under an input control, and which items it kept; each
    (control, item) is embedded once per model, and the MIDI route is converted once per tune."""
    from clamp.abc.midi_route import midi_routed

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
    music = (
        np.stack([cache[(control.name, bench.ids[j])] for j in kept]) if len(kept) else np.zeros((0, dim), np.float32)
    )
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


def _log_run(
    cfg: EvalConfig,
    result: EvalResult,
    model,
    provenance: str,
    lineage: dict[str, str],
    dataset: tuple[str, str, str] | None = None,
) -> None:
    """One MLflow run per (model, benchmark): `<model>/<benchmark>`, with what it read as its
    evaluation dataset input."""
    if not cfg.mlflow:
        return
    from clamp.tracking import dataset_input, mlflow_run

    name, bench = result.model, result.benchmark
    with mlflow_run(cfg.experiment, f"{name}/{bench}", Path(cfg.tracking_dir) if cfg.tracking_dir else None) as run:
        import mlflow

        origin = getattr(model.config, "origin", None)  # an imported checkpoint's format (clamp.model.imports)
        mlflow.set_tags(
            {
                "kind": "evaluation",
                "model": name,
                "benchmark": bench,
                "untrained": str(name.endswith("-untrained")),
                **({"origin": origin} if origin else {}),
                **lineage,
            }
        )
        mlflow.log_params(
            {
                "model_dir": cfg.model_dir,
                "benchmark_provenance": provenance[:250],
                "patch_mode": model.config.music.patch_mode,
                "input_kind": model.config.music.input_kind,
                "bootstrap_resamples": cfg.bootstrap_resamples,
                "bootstrap_seed": cfg.bootstrap_seed,
            }
        )
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
    return Benchmark(
        bench.name,
        bench.task,
        pick(bench.ids),
        pick(bench.abc),
        pick(bench.labels),
        pick(bench.texts) if bench.texts else None,
        bench.failures,
        bench.provenance + f" (subset of {n})",
        location=bench.location,
    )


def subsample_items(items: HeldoutItems, n: int) -> HeldoutItems:
    """An evenly spaced subset of the held-out pool, as `subsample` does for a benchmark."""
    if len(items) <= n:
        return items
    keep = np.linspace(0, len(items) - 1, n).astype(int)
    return HeldoutItems(
        [items.ids[i] for i in keep],
        [items.abc[i] for i in keep],
        [items.labels[i] for i in keep],
        items.provenance + f" (subset of {n})",
        items.names,
    )


def _lineage(model_dir: Path) -> dict[str, str]:
    """Training run id and dataset fingerprint, from the run folder's MLflow-free record."""
    record = model_dir / "lineage.json"
    if record.is_file():
        return {k: str(v) for k, v in json.loads(record.read_text()).items()}
    return {}
