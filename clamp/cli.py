"""The `clamp` command. Every sub-command has `--help`; user errors print one line and exit 2
(`--debug` shows their traceback; see clamp/cli_common.py)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from clamp import cli_common
from clamp.cli_common import field_help
from clamp.cli_import import import_app
from clamp.config import DEFAULT_DATASET_DIR, DEFAULT_MODEL_DIR
from clamp.environment import apply_defaults
from clamp.errors import UserError
from clamp.eval.config import EvalConfig
from clamp.serve.settings import ServeSettings
from clamp.train.config import TrainConfig
from clamp.workflows.ablations import AblationConfig

apply_defaults()

app = cli_common.make_group_app(
    "CLaMP pipeline: build music-text datasets, train, evaluate, search and classify scores."
)
dataset_app = typer.Typer(help="Inspect built datasets.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")
app.add_typer(import_app, name="import")


@app.command()
def build(
    config: cli_common.ConfigOption = None,
    name: cli_common.NameOption = None,
    output_dir: cli_common.OutputDirOption = None,
    limit: cli_common.LimitOption = None,
    patch_mode: cli_common.PatchModeOption = None,
    midi_views: cli_common.MidiViewsOption = None,
    chord_views: cli_common.ChordViewsOption = None,
    workers: cli_common.WorkersOption = None,
    overwrite: cli_common.OverwriteOption = False,
    as_json: cli_common.JsonOption = False,
) -> None:
    """Build a dataset in-process with a pool of worker processes, no Prefect and no Dask
    (`python -m flows.build_dataset` runs the same stages as Prefect tasks on Dask)."""
    from clamp.config import BuildConfig
    from clamp.data.build import build_dataset
    from clamp.data.executors import PoolExecutor
    from clamp.data.report import print_summary

    overrides = cli_common.build_overrides(config, name, output_dir, limit, patch_mode, midi_views, chord_views)
    cfg = BuildConfig.load(config, **overrides, n_workers=workers)
    summary = build_dataset(
        cfg, executor=PoolExecutor(cfg.n_workers, show_progress=sys.stderr.isatty()), overwrite=overwrite
    )
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        print_summary(summary)


@app.command()
def train(
    config: Annotated[Path | None, typer.Option(help="YAML/JSON TrainConfig file; options below override it")] = None,
    objective: Annotated[str | None, typer.Option(help=field_help(TrainConfig, "objective"))] = None,
    dataset: Annotated[Path | None, typer.Option(help=field_help(TrainConfig, "dataset_dir"))] = None,
    output: Annotated[Path | None, typer.Option(help=field_help(TrainConfig, "output_dir"))] = None,
    preset: Annotated[str | None, typer.Option(help=field_help(TrainConfig, "preset"))] = None,
    steps: Annotated[int | None, typer.Option(help=field_help(TrainConfig, "steps"))] = None,
    batch_size: Annotated[int | None, typer.Option(help=field_help(TrainConfig, "batch_size"))] = None,
    grad_accum: Annotated[int | None, typer.Option(help=field_help(TrainConfig, "grad_accum"))] = None,
    lr: Annotated[float | None, typer.Option(help=field_help(TrainConfig, "lr"))] = None,
    max_patches: Annotated[int | None, typer.Option(help=field_help(TrainConfig, "max_patches"))] = None,
    input_kind: Annotated[str | None, typer.Option(help=field_help(TrainConfig, "input_kind"))] = None,
    text_model: Annotated[str | None, typer.Option(help=field_help(TrainConfig, "text_model"))] = None,
    text_dropout: Annotated[
        bool | None, typer.Option("--text-dropout/--no-text-dropout", help=field_help(TrainConfig, "text_dropout"))
    ] = None,
    text_tower: Annotated[str | None, typer.Option(help=field_help(TrainConfig, "text_tower"))] = None,
    text_views: Annotated[int | None, typer.Option(help=field_help(TrainConfig, "text_views"))] = None,
    header_dropout: Annotated[float | None, typer.Option(help=field_help(TrainConfig, "header_dropout"))] = None,
    midi_view: Annotated[float | None, typer.Option(help=field_help(TrainConfig, "midi_view"))] = None,
    chord_view: Annotated[float | None, typer.Option(help=field_help(TrainConfig, "chord_view"))] = None,
    eval_every: Annotated[int | None, typer.Option(help=field_help(TrainConfig, "eval_every"))] = None,
    keep_best: Annotated[
        bool | None, typer.Option("--keep-best/--keep-last", help=field_help(TrainConfig, "keep_best"))
    ] = None,
    early_stopping_patience: Annotated[
        int | None, typer.Option(help=field_help(TrainConfig, "early_stopping_patience"))
    ] = None,
    max_minutes: Annotated[float | None, typer.Option(help=field_help(TrainConfig, "max_minutes"))] = None,
    progress: Annotated[str | None, typer.Option(help=field_help(TrainConfig, "progress"))] = None,
    init_music_from: Annotated[Path | None, typer.Option(help=field_help(TrainConfig, "init_music_from"))] = None,
    init_from: Annotated[Path | None, typer.Option(help=field_help(TrainConfig, "init_from"))] = None,
    precision: Annotated[str | None, typer.Option(help=field_help(TrainConfig, "precision"))] = None,
    device: Annotated[str | None, typer.Option(help=field_help(TrainConfig, "device"))] = None,
    num_workers: Annotated[int | None, typer.Option(help=field_help(TrainConfig, "num_workers"))] = None,
    compile: Annotated[
        bool | None, typer.Option("--compile/--no-compile", help=field_help(TrainConfig, "compile"))
    ] = None,
    group_by_length: Annotated[
        bool | None,
        typer.Option("--group-by-length/--no-group-by-length", help=field_help(TrainConfig, "group_by_length")),
    ] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help=field_help(TrainConfig, "checkpoint_every"))] = None,
    mlflow: Annotated[bool | None, typer.Option("--mlflow/--no-mlflow", help=field_help(TrainConfig, "mlflow"))] = None,
    register_as: Annotated[str | None, typer.Option(help=field_help(TrainConfig, "register_as"))] = None,
    seed: Annotated[int | None, typer.Option(help=field_help(TrainConfig, "seed"))] = None,
) -> None:
    """Train (or resume) a model; runs under `torchrun` for several processes.

    Settings: the TrainConfig defaults < the --config file < the options given here."""
    from clamp.train.run import train as run_train

    cfg = TrainConfig.load(
        config,
        objective=objective,
        dataset_dir=_str(dataset),
        output_dir=_str(output),
        preset=preset,
        steps=steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        max_patches=max_patches,
        input_kind=input_kind,
        text_model=text_model,
        text_dropout=text_dropout,
        text_tower=text_tower,
        text_views=text_views,
        header_dropout=header_dropout,
        midi_view=midi_view,
        chord_view=chord_view,
        eval_every=eval_every,
        keep_best=keep_best,
        early_stopping_patience=early_stopping_patience,
        max_minutes=max_minutes,
        progress=progress,
        init_music_from=_str(init_music_from),
        init_from=_str(init_from),
        precision=precision,
        device=device,
        num_workers=num_workers,
        compile=compile,
        group_by_length=group_by_length,
        checkpoint_every=checkpoint_every,
        mlflow=mlflow,
        register_as=register_as,
        seed=seed,
    )
    if not (Path(cfg.dataset_dir) / "manifest.json").is_file():
        raise UserError(f"no built dataset at {cfg.dataset_dir} (run the build first)")
    if cfg.init_music_from is not None and not Path(cfg.init_music_from).is_dir():
        raise UserError(f"MMM model folder not found: {cfg.init_music_from}")
    if cfg.init_from is not None and not all(
        (Path(cfg.init_from) / f).is_file() for f in ("config.json", "model.safetensors")
    ):
        raise UserError(f"not a model folder (config.json + model.safetensors): {cfg.init_from}")
    result = run_train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=2))


def _str(path: Path | None) -> str | None:
    return str(path) if path is not None else None


DEFAULT_MODEL = DEFAULT_MODEL_DIR


def _model(model_dir: Path):
    from clamp.inference.files import load_model

    return load_model(model_dir)


@app.command()
def embed(
    inputs: Annotated[list[str], typer.Argument(help="music files (.abc .mid .xml .mxl .krn), or texts with --text")],
    out: Annotated[Path, typer.Option(help="output .parquet or .npy")] = Path("features.parquet"),
    model: Annotated[Path, typer.Option(help="model folder")] = DEFAULT_MODEL,
    text: Annotated[bool, typer.Option("--text", help="the inputs are texts")] = False,
    batch_size: Annotated[int, typer.Option(help="batch size")] = 32,
) -> None:
    """Embed music files or texts into the joint space."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clamp.inference.embed import embed_music, embed_text
    from clamp.inference.files import music_files, read_music_file

    if out.suffix not in (".parquet", ".npy"):
        raise UserError(f"--out must end in .parquet or .npy, not {out.suffix or '(none)'}")
    if text:
        texts = [t.strip() for t in inputs]
        if not all(texts):
            raise UserError("empty text: give each text as a non-empty argument")
        m = _model(model)
        feats = embed_text(m, texts, batch_size)
        names = texts
    else:
        paths = music_files([Path(p) for p in inputs])
        abcs = [read_music_file(p) for p in paths]
        m = _model(model)
        feats = embed_music(m, abcs, batch_size)
        names = [str(p) for p in paths]
    if out.suffix == ".npy":
        np.save(out, feats)
    else:
        pq.write_table(pa.table({"id": names, "title": names, "embedding": list(feats)}), out)
    typer.echo(f"wrote {len(feats)} embeddings of dimension {feats.shape[1]} to {out}")


def _index(m, index: Path):
    """(titles, embeddings) of a search index: a built dataset (embedded once, cached) or a features file."""
    import numpy as np
    import pyarrow.parquet as pq

    if index.suffix == ".parquet" and index.is_file():
        t = pq.read_table(index)
        return t.column("title").to_pylist(), np.stack(t.column("embedding").to_numpy(zero_copy_only=False))
    if not (index / "manifest.json").is_file():
        raise UserError(f"--index must be a built dataset folder or a features .parquet: {index}")
    from rich.progress import Progress

    from clamp.inference.index import open_index

    # the library's index (clamp/inference/index.py, shared with `clamp serve`); one query needs no HNSW graph
    with Progress(transient=True) as progress:
        bar = progress.add_task("embedding the index (cached afterwards)", total=None)
        built = open_index(
            m, index, ann_threshold=sys.maxsize, progress=lambda done, total: progress.update(bar, completed=done)
        )
    return built.titles, np.asarray(built.vectors)


@app.command()
def search(
    query: Annotated[str | None, typer.Argument(help="a description, e.g. 'a lively jig in D major'")] = None,
    like: Annotated[
        Path | None,
        typer.Option(help="rank by similarity to this score instead (.abc .mid .xml .mxl .krn; its first tune)"),
    ] = None,
    index: Annotated[Path, typer.Option(help="a built dataset folder or a features .parquet")] = DEFAULT_DATASET_DIR,
    model: Annotated[Path, typer.Option(help="model folder")] = DEFAULT_MODEL,
    top: Annotated[int, typer.Option(help="how many results (1 or more)")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Rank the scores of an index by similarity to a text query, or to a score (--like)."""
    import numpy as np

    from clamp.inference.embed import embed_music, embed_text

    if (query is None) == (like is None):
        raise UserError("give a text query or --like FILE (one of them), e.g. 'a lively jig in D major'")
    if query is not None and not query.strip():
        raise UserError("empty query: describe the music, e.g. 'a lively jig in D major'")
    if top < 1:
        raise UserError(f"--top must be 1 or more, not {top}")
    music = None
    if like is not None:
        from clamp.inference.files import read_music_tunes

        first = next((t for t in read_music_tunes(like) if t.abc is not None), None)
        if first is None:
            raise UserError(f"{like}: no tune to search with")
        music = first.abc
    m = _model(model)
    titles, feats = _index(m, index)
    q = embed_music(m, [music])[0] if music is not None else embed_text(m, [query.strip()])[0]  # type: ignore[union-attr]
    scores = feats @ q
    order = np.argsort(-scores)[:top]
    results = [{"rank": r + 1, "title": titles[i], "score": round(float(scores[i]), 4)} for r, i in enumerate(order)]
    if as_json:
        typer.echo(json.dumps(results))
        return
    for r in results:
        typer.echo(f"{r['rank']:>3}. {r['score']:.3f}  {r['title']}")


@app.command()
def classify(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="scores (.abc .mid .xml .mxl .krn; every tune of an ABC file) or folders of them"),
    ],
    labels: Annotated[str, typer.Option(help="comma-separated labels, e.g. jig,reel,waltz")],
    model: Annotated[Path, typer.Option(help="model folder")] = DEFAULT_MODEL,
    task: Annotated[
        str,
        typer.Option(
            help="prompt templates to use: genre, emotion, rhythm, origin, composer, pianist, "
            "tune_type, key, meter, collection"
        ),
    ] = "rhythm",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output: one object per tune")] = False,
) -> None:
    """Zero-shot classification of each tune of each score among the given labels."""
    import numpy as np

    from clamp.inference.embed import embed_music, embed_text
    from clamp.inference.files import music_files, read_music_tunes
    from clamp.inference.prompts import prompts_for

    names = list(dict.fromkeys(x.strip() for x in labels.split(",") if x.strip()))
    if len(names) < 2:
        raise UserError("give at least two labels, all different, e.g. --labels jig,reel")
    paths = music_files(inputs)
    # one entry per tune; a file that cannot be read at all is one entry with its reason, so that
    # one bad file in a folder does not stop the others (a single file's error is the command's)
    out: list[dict] = []
    for path in paths:
        try:
            tunes = read_music_tunes(path)
        except UserError as exc:
            if len(paths) == 1:
                raise
            out.append({"file": str(path), "index": None, "title": None, "error": str(exc)})
            continue
        for t in tunes:
            entry: dict = {"file": str(path), "index": t.index, "title": t.title}
            if t.abc is None:
                entry["error"] = t.error
            else:
                entry["abc"] = t.abc
            out.append(entry)
    usable = [e for e in out if "abc" in e]
    if not usable:
        raise UserError(f"no usable tune in {len(paths)} files; the first: {out[0]['error']}")
    m = _model(model)
    music = embed_music(m, [e.pop("abc") for e in usable])
    centroids = np.stack([embed_text(m, prompts).mean(0) for prompts in prompts_for(names, task)])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    for entry, row in zip(usable, music @ centroids.T, strict=True):
        ranked = sorted(zip(names, row.tolist(), strict=True), key=lambda x: -x[1])
        entry["labels"] = [{"label": n, "score": round(float(v), 4)} for n, v in ranked]
    if as_json:
        typer.echo(json.dumps(out))
        return
    for i, entry in enumerate(out):
        if i:
            typer.echo("")
        where = f"{entry['file']}, " if len(paths) > 1 else ""
        tune = f"tune {entry['index']}" if entry["index"] is not None else "(whole file)"
        typer.echo(where + tune + (f": {entry['title']}" if entry["title"] else ""))
        if "error" in entry:
            typer.echo(f"  skipped: {entry['error']}")
            continue
        for r in entry["labels"]:
            typer.echo(f"  {r['score']:.3f}  {r['label']}")


@app.command()
def serve(
    model: Annotated[Path, typer.Option(help="model folder")] = DEFAULT_MODEL,
    index: Annotated[Path, typer.Option(help="a built dataset folder: the tunes to search")] = DEFAULT_DATASET_DIR,
    host: Annotated[
        str, typer.Option(help="address to listen on; anything but 127.0.0.1 opens it to the network")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port")] = 8000,
    cors_origin: Annotated[
        list[str] | None, typer.Option(help="an origin allowed by CORS (repeat it); off by default")
    ] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help=field_help(ServeSettings, "max_concurrency"))] = None,
    ann_threshold: Annotated[int | None, typer.Option(min=0, help=field_help(ServeSettings, "ann_threshold"))] = None,
    reload_every: Annotated[float | None, typer.Option(min=0, help=field_help(ServeSettings, "reload_every_s"))] = None,
    log_level: Annotated[str, typer.Option(help="debug | info | warning | error")] = "info",
) -> None:
    """Serve search, 'more like this' and classification over a JSON API and a page (docs/serve.md)."""
    from clamp.serve.app import run

    if not (model / "config.json").is_file():
        raise UserError(f"model folder not found or incomplete: {model}")
    if not (index / "manifest.json").is_file():
        raise UserError(f"--index must be a built dataset folder (with manifest.json): {index}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: listening on {host}: reachable from the network, with no authentication", err=True)
    given = {"max_concurrency": concurrency, "ann_threshold": ann_threshold, "reload_every_s": reload_every}
    settings = ServeSettings(
        model_dir=model,
        dataset_dir=index,
        cors_origins=tuple(cors_origin or ()),
        **{k: v for k, v in given.items() if v is not None},
    )
    run(settings, host=host, port=port, log_level=log_level)


@app.command("eval")
def eval_command(
    model: Annotated[Path, typer.Option(help="model folder")] = DEFAULT_MODEL,
    benchmarks: Annotated[str, typer.Option(help="comma-separated: wikimt,vgmidi,pianist8")] = "wikimt,vgmidi,pianist8",
    dataset: Annotated[
        Path | None, typer.Option(help="a built dataset: adds its held-out tasks and the retrieval probes (test split)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help=field_help(EvalConfig, "out_dir"))] = None,
    mlflow: Annotated[bool | None, typer.Option("--mlflow/--no-mlflow", help=field_help(EvalConfig, "mlflow"))] = None,
    untrained: Annotated[
        bool | None, typer.Option("--untrained/--no-untrained", help=field_help(EvalConfig, "include_untrained"))
    ] = None,
    controls: Annotated[
        bool,
        typer.Option(
            help="score the input controls (notes only, chords, unit note length, MIDI "
            "route) and the header-only baseline"
        ),
    ] = True,
    resamples: Annotated[int | None, typer.Option(help=field_help(EvalConfig, "bootstrap_resamples"))] = None,
    max_items: Annotated[int | None, typer.Option(help=field_help(EvalConfig, "max_items"))] = None,
) -> None:
    """Evaluate a model on the benchmarks and print the quality report, the retrieval probes and any
    collapse warning."""
    from clamp.config import validated
    from clamp.data.benchmarks import BENCHMARKS
    from clamp.eval.run import evaluate
    from clamp.eval.tables import print_results_table, results_table

    names = [b.strip() for b in benchmarks.split(",") if b.strip()]
    unknown = [b for b in names if b not in BENCHMARKS]
    if unknown:
        raise UserError(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(sorted(BENCHMARKS))}")
    _model(model)  # a clear error before any work
    if dataset is not None and not (dataset / "manifest.json").is_file():
        raise UserError(f"no built dataset at {dataset}")
    settings = {"model_dir": str(model), "benchmarks": names or None, "dataset_dir": _str(dataset)}
    given = {"out_dir": _str(out), "include_untrained": untrained, "mlflow": mlflow}
    if not controls:
        settings.update(controls=[], header_baseline=False)
    given.update(bootstrap_resamples=resamples, max_items=max_items)
    settings.update({k: v for k, v in given.items() if v is not None})
    cfg = validated(EvalConfig, settings)
    print_results_table(results_table(evaluate(cfg)))
    out_dir = Path(cfg.out_dir)
    typer.echo(f"\nA report with its plots:  clamp report {out_dir} --out {out_dir / 'report'}")


@app.command()
def ablations(
    config: Annotated[
        Path | None, typer.Option(help="YAML/JSON AblationConfig file, e.g. recipes/cpu-ablations.yaml")
    ] = None,
    dataset: Annotated[Path | None, typer.Option(help=field_help(AblationConfig, "dataset_dir"))] = None,
    out: Annotated[Path | None, typer.Option(help=field_help(AblationConfig, "out_dir"))] = None,
    seeds: Annotated[str | None, typer.Option(help=field_help(AblationConfig, "seeds"))] = None,
    cells: Annotated[str | None, typer.Option(help=field_help(AblationConfig, "cells"))] = None,
    benchmarks: Annotated[str | None, typer.Option(help=field_help(AblationConfig, "benchmarks"))] = None,
    max_items: Annotated[int | None, typer.Option(help=field_help(AblationConfig, "max_items"))] = None,
) -> None:
    """Train and evaluate the paper's ablation grid (text dropout, bar patching vs characters, MMM
    init) with several seeds, and print each claim as a difference with its 95% interval.

    Every run is a child of one MLflow parent run (experiment clamp-ablations): compare them in
    `mlflow ui`. A finished cell is skipped when the grid is run again."""
    from clamp.workflows.ablations import run_ablations

    def _list(value: str | None) -> list[str] | None:
        return None if value is None else [v.strip() for v in value.split(",") if v.strip()]

    try:
        seed_list = None if seeds is None else [int(s) for s in _list(seeds) or []]
    except ValueError as exc:
        raise UserError(f"--seeds must be comma-separated integers, not {seeds!r}") from exc
    cfg = AblationConfig.load(
        config,
        dataset_dir=_str(dataset),
        out_dir=_str(out),
        seeds=seed_list,
        cells=_list(cells),
        benchmarks=_list(benchmarks),
        max_items=max_items,
    )
    for built in (cfg.dataset_dir, cfg.as_written_dataset_dir):
        if built is not None and not (Path(built) / "manifest.json").is_file():
            raise UserError(f"no built dataset at {built} (run the build first)")
    result = run_ablations(cfg)
    typer.echo((Path(cfg.out_dir) / "ablations.md").read_text())
    typer.echo((Path(cfg.out_dir) / "claims.md").read_text())
    typer.echo(f"MLflow parent run {result['parent_run_id']} (experiment {cfg.experiment})")


@app.command()
def report(
    source: Annotated[
        str,
        typer.Argument(
            help="an evaluation folder (`clamp eval --out`, with evaluation.json) or an MLflow run id of an evaluation"
        ),
    ],
    out: Annotated[Path, typer.Option(help="folder for report.md, report.html and figures/")] = Path("report"),
) -> None:
    """Render an evaluation as Markdown and a self-contained HTML page with its plots."""
    from clamp.eval.report import load_folder, load_mlflow_run, write_report

    if Path(source).exists():
        evaluation = load_folder(source)
    elif len(source) == 32 and all(c in "0123456789abcdef" for c in source):
        evaluation = load_mlflow_run(source, out / "figures" / "mlflow")
    else:
        raise UserError(f"{source} is neither a folder nor an MLflow run id (32 hex digits)")
    md, page = write_report(evaluation, out)
    typer.echo(f"wrote {md} and {page}")


@app.command()
def lineage(
    name: Annotated[str, typer.Argument(help="registered model name")],
    version: Annotated[str, typer.Argument(help="version number or alias (e.g. champion)")] = "champion",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Trace a registered model version to its training run, dataset, code commit and config."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from clamp.tracking import tracking_uri

    client = MlflowClient(tracking_uri=tracking_uri())
    try:
        mv = (
            client.get_model_version(name, version)
            if version.isdigit()
            else client.get_model_version_by_alias(name, version)
        )
        run = client.get_run(mv.run_id)
    except MlflowException as exc:
        raise UserError(
            f"no model version {name}/{version} in {tracking_uri()}: {str(exc).splitlines()[0][:160]}"
        ) from None
    tags, params = run.data.tags, run.data.params
    info = {
        "model": name,
        "version": mv.version,
        "aliases": list(getattr(mv, "aliases", []) or []),
        "source": mv.source,
        "training_run_id": run.info.run_id,
        "run_name": tags.get("mlflow.runName", ""),
        "dataset_fingerprint": mv.tags.get("dataset_fingerprint") or tags.get("dataset_fingerprint", ""),
        "dataset_dir": tags.get("dataset_dir", ""),
        "git_commit": tags.get("git_commit", ""),
        "objective": tags.get("objective", ""),
        "config": {k: v for k, v in sorted(params.items()) if k.startswith(("train.", "music."))},
    }
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    for k, v in info.items():
        if k != "config":
            typer.echo(f"{k:20s} {v}")
    typer.echo("config:")
    for k, v in info["config"].items():
        typer.echo(f"  {k} = {v}")


@app.command("mlflow-replay")
def mlflow_replay(
    path: Annotated[Path, typer.Argument(help="a training run folder, or its mlflow-pending.jsonl")],
    tracking_uri: Annotated[
        str | None, typer.Option(help="the MLflow store to send to (default: the one each run was logged to)")
    ] = None,
) -> None:
    """Send the MLflow records a training run could not send (its server was unreachable at the end).

    A run the store lacks (a fresh server) is created again. Exit 1 when records are left."""
    from clamp.train.mlflow_outbox import PENDING_FILE, replay_pending

    file = path / PENDING_FILE if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"nothing to replay: no {file}")
    report = replay_pending(file, tracking_uri)
    created = f" (created again: {', '.join(report.created)})" if report.created else ""
    typer.echo(f"sent {report.sent} records to run(s) {', '.join(report.runs) or '-'}{created}")
    if report.left:
        typer.echo(f"{report.left} records left in {file}: {report.error}", err=True)
        raise typer.Exit(1)


@dataset_app.command("info")
def dataset_info(path: Annotated[Path, typer.Argument(help="a built dataset folder (holds manifest.json)")]) -> None:
    """Print a dataset's summary."""
    from clamp.data.build import BuildSummary
    from clamp.data.report import print_summary

    summary_file = path / "summary.json"
    if not summary_file.is_file():
        raise UserError(f"no summary.json in {path}: not a built dataset")
    print_summary(BuildSummary(**json.loads(summary_file.read_text())))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
