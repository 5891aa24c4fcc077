"""The `clamp` command. Every sub-command has `--help`; user errors print one line and exit 2."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from clamp.config import error_line

app = typer.Typer(help="CLaMP pipeline: build music-text datasets and train models.", no_args_is_help=True)
dataset_app = typer.Typer(help="Inspect built datasets.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command()
def build(
    config: Annotated[Path | None, typer.Option(help="YAML/JSON BuildConfig")] = None,
    name: Annotated[str | None, typer.Option(help="dataset name")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="where datasets are written")] = None,
    limit: Annotated[int | None, typer.Option(help="cap the records of each source")] = None,
    workers: Annotated[int, typer.Option(help="worker processes (no Prefect, no Dask)")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Build a dataset in-process with a process pool (the Prefect flow runs the same steps on Dask)."""
    from concurrent.futures import ProcessPoolExecutor

    from clamp.config import BuildConfig
    from clamp.data.build import build_dataset
    from clamp.data.report import print_summary

    overrides: dict = {}
    if name:
        overrides["name"] = name
    if output_dir:
        overrides["output_dir"] = output_dir
    try:
        cfg = BuildConfig.from_file(config, **overrides) if config else BuildConfig(**overrides)
        if limit:
            cfg = cfg.model_copy(update={"sources": [s.model_copy(update={"limit": limit}) for s in cfg.sources]})
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                summary = build_dataset(cfg, map_fn=pool.map)
        else:
            summary = build_dataset(cfg)
    except (FileNotFoundError, ValueError) as exc:
        _fail(error_line(exc))
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        print_summary(summary)


@app.command()
def train(
    objective: Annotated[str, typer.Option(help="mmm (masked music pre-training) or clamp (contrastive)")] = "clamp",
    dataset: Annotated[Path, typer.Option(help="a built dataset folder")] = Path("data/datasets/music21-corpus"),
    output: Annotated[Path, typer.Option(help="run folder: checkpoints, metrics, final model")] = Path("outputs/run"),
    preset: Annotated[str, typer.Option(help="tiny | small | clamp-s-512 | m3-12l")] = "small",
    steps: Annotated[int, typer.Option(help="optimizer steps")] = 200,
    batch_size: Annotated[int, typer.Option(help="batch size per process")] = 32,
    grad_accum: Annotated[int, typer.Option(help="gradient accumulation steps")] = 1,
    lr: Annotated[float, typer.Option(help="peak learning rate")] = 3e-4,
    input_kind: Annotated[str, typer.Option(help="patch (bar patching) or char (ablation)")] = "patch",
    text_model: Annotated[str, typer.Option(help="text encoder name or local folder")] = "all-MiniLM-L6-v2",
    text_dropout: Annotated[bool, typer.Option(help="text dropout on/off")] = True,
    init_music_from: Annotated[Path | None, typer.Option(help="an MMM model folder to start the music encoder from")] = None,
    precision: Annotated[str, typer.Option(help="auto (bf16 on GPU) | fp32 | bf16")] = "auto",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    num_workers: Annotated[int, typer.Option(help="data loader worker processes")] = 0,
    compile: Annotated[bool, typer.Option(help="torch.compile the encoders (faster on GPU after the first steps)")] = False,
    group_by_length: Annotated[bool | None, typer.Option(
        "--group-by-length/--no-group-by-length",
        help="batches of similar-length tunes, less padding (default: on for mmm, off for clamp)")] = None,
    checkpoint_every: Annotated[int, typer.Option(help="checkpoint interval (steps)")] = 50,
    mlflow: Annotated[bool, typer.Option(help="log to MLflow")] = True,
    register_as: Annotated[str | None, typer.Option(help="register the final model under this name")] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Train (or resume) a model; runs under `torchrun` for several processes."""
    from clamp.train.loop import TrainConfig
    from clamp.train.run import train as run_train

    if objective not in ("mmm", "clamp"):
        _fail(f"objective must be mmm or clamp, not {objective!r}")
    if precision not in ("auto", "fp32", "bf16"):
        _fail(f"precision must be auto, fp32 or bf16, not {precision!r}")
    if input_kind not in ("patch", "char"):
        _fail(f"input kind must be patch or char, not {input_kind!r}")
    if input_kind == "char" and init_music_from is not None:
        _fail("--init-music-from needs the patch encoder (MMM pre-trains patches, not characters)")
    if not (dataset / "manifest.json").is_file():
        _fail(f"no built dataset at {dataset} (run the build first)")
    if init_music_from is not None and not init_music_from.is_dir():
        _fail(f"MMM model folder not found: {init_music_from}")
    cfg = TrainConfig(
        objective=objective, dataset_dir=str(dataset), output_dir=str(output), preset=preset, steps=steps,
        batch_size=batch_size, grad_accum=grad_accum, lr=lr, input_kind=input_kind, text_model=text_model,
        text_dropout=text_dropout, init_music_from=str(init_music_from) if init_music_from else None,
        precision=precision, device=device, num_workers=num_workers, compile=compile, group_by_length=group_by_length, checkpoint_every=checkpoint_every,
        mlflow=mlflow, register_as=register_as, seed=seed,
    )
    try:
        result = run_train(cfg)
    except (FileNotFoundError, ValueError) as exc:
        _fail(error_line(exc))
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=2))


DEFAULT_MODEL = Path("outputs/music21-corpus/clamp-small/model")


def _model(model_dir: Path):
    from clamp.eval.files import UserInputError, load_model

    try:
        return load_model(model_dir)
    except UserInputError as exc:
        _fail(str(exc))


def _music(paths: list[Path]) -> list[str]:
    from clamp.eval.files import UserInputError, read_music_file

    try:
        return [read_music_file(p) for p in paths]
    except UserInputError as exc:
        _fail(str(exc))
    return []


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

    from clamp.eval.embed import embed_music, embed_text

    if out.suffix not in (".parquet", ".npy"):
        _fail(f"--out must end in .parquet or .npy, not {out.suffix or '(none)'}")
    m = _model(model)
    if text:
        feats = embed_text(m, inputs, batch_size)
        names = inputs
    else:
        paths = [Path(p) for p in inputs]
        abcs = _music(paths)
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
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clamp.eval.embed import embed_music

    if index.suffix == ".parquet" and index.is_file():
        t = pq.read_table(index)
        return t.column("title").to_pylist(), np.stack(t.column("embedding").to_numpy(zero_copy_only=False))
    if not (index / "manifest.json").is_file():
        _fail(f"--index must be a built dataset folder or a features .parquet: {index}")
    import hashlib

    from clamp.data.shards import load_manifest, read_dataset
    from clamp.model.clamp_model import WEIGHTS_NAME

    weights = Path(m.source_dir) / WEIGHTS_NAME if getattr(m, "source_dir", None) else None
    key = hashlib.sha256((load_manifest(index)["fingerprint"] + (str(weights.stat().st_mtime_ns) if weights else "")).encode()).hexdigest()[:16]
    cache = index / f"embeddings-{key}.parquet"
    if cache.is_file():
        return _index(m, cache)
    table = read_dataset(index, ["id", "abc", "texts"])
    titles = [next((x[7:] for x in t if x.startswith("Title: ")), i) for i, t in
              zip(table.column("id").to_pylist(), table.column("texts").to_pylist(), strict=True)]
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        bar = progress.add_task("embedding the index (cached afterwards)", total=table.num_rows)

        class _Bar:
            def update(self, n):
                progress.advance(bar, n)

        feats = embed_music(m, table.column("abc").to_pylist(), 64, progress=_Bar())
    tmp = cache.with_name(f".{cache.name}.tmp-{os.getpid()}")
    pq.write_table(pa.table({"id": table.column("id"), "title": titles, "embedding": list(feats)}), tmp)
    os.replace(tmp, cache)  # a Ctrl-C mid-write never leaves a broken cache
    return titles, feats


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="a description, e.g. 'a lively jig in D major'")],
    index: Annotated[Path, typer.Option(help="a built dataset folder or a features .parquet")] = Path("data/datasets/music21-corpus"),
    model: Annotated[Path, typer.Option(help="model folder")] = DEFAULT_MODEL,
    top: Annotated[int, typer.Option(help="how many results")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Rank the scores of an index by similarity to a text query."""
    import numpy as np

    from clamp.eval.embed import embed_text

    m = _model(model)
    titles, feats = _index(m, index)
    q = embed_text(m, [query])[0]
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
    file: Annotated[Path, typer.Argument(help="a score: .abc .mid .xml .mxl .krn")],
    labels: Annotated[str, typer.Option(help="comma-separated labels, e.g. jig,reel,waltz")],
    model: Annotated[Path, typer.Option(help="model folder")] = DEFAULT_MODEL,
    task: Annotated[str, typer.Option(help="prompt templates to use: genre, emotion, rhythm, origin, composer, pianist")] = "rhythm",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Zero-shot classification of one score among the given labels."""
    from clamp.eval.embed import embed_music, embed_text
    from clamp.eval.tasks import prompts_for

    names = [x.strip() for x in labels.split(",") if x.strip()]
    if len(names) < 2:
        _fail("give at least two labels, e.g. --labels jig,reel")
    abc = _music([file])[0]
    m = _model(model)
    music = embed_music(m, [abc])[0]
    scores = []
    for prompts in prompts_for(names, task):
        c = embed_text(m, prompts).mean(0)
        scores.append(float(music @ (c / max(float((c @ c) ** 0.5), 1e-12))))
    ranked = sorted(zip(names, scores, strict=True), key=lambda x: -x[1])
    if as_json:
        typer.echo(json.dumps([{"label": n, "score": round(s, 4)} for n, s in ranked]))
        return
    for n, s in ranked:
        typer.echo(f"{s:.3f}  {n}")


@app.command("eval")
def eval_command(
    model: Annotated[Path, typer.Option(help="model folder")] = DEFAULT_MODEL,
    benchmarks: Annotated[str, typer.Option(help="comma-separated: wikimt,vgmidi,pianist8")] = "wikimt,vgmidi,pianist8",
    dataset: Annotated[Path | None, typer.Option(help="a built dataset: adds its held-out in-domain tasks")] = None,
    out: Annotated[Path, typer.Option(help="folder for plots and predictions")] = Path("outputs/eval"),
    mlflow: Annotated[bool, typer.Option(help="log each (model, benchmark) as an MLflow run")] = True,
    untrained: Annotated[bool, typer.Option(help="also evaluate the untrained (random-init) twin")] = True,
) -> None:
    """Evaluate a model on the benchmarks and print the table."""
    from clamp.eval.run import evaluate, print_results_table, results_table

    _model(model)  # a clear error before any work
    if dataset is not None and not (dataset / "manifest.json").is_file():
        _fail(f"no built dataset at {dataset}")
    try:
        results = evaluate(model, [b.strip() for b in benchmarks.split(",") if b.strip()], dataset, out,
                           include_untrained=untrained, mlflow_enabled=mlflow)
    except (FileNotFoundError, ValueError) as exc:
        _fail(error_line(exc))
    print_results_table(results_table(results))


@app.command()
def lineage(
    name: Annotated[str, typer.Argument(help="registered model name")],
    version: Annotated[str, typer.Argument(help="version number or alias (e.g. champion)")] = "champion",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Trace a registered model version to its training run, dataset, code commit and config."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from clamp.train.tracking import tracking_uri

    client = MlflowClient(tracking_uri=tracking_uri())
    try:
        mv = client.get_model_version(name, version) if version.isdigit() else client.get_model_version_by_alias(name, version)
        run = client.get_run(mv.run_id)
    except MlflowException as exc:
        _fail(f"no model version {name}/{version} in {tracking_uri()}: {str(exc).splitlines()[0][:160]}")
    tags, params = run.data.tags, run.data.params
    info = {
        "model": name, "version": mv.version, "aliases": list(getattr(mv, "aliases", []) or []), "source": mv.source,
        "training_run_id": run.info.run_id, "run_name": tags.get("mlflow.runName", ""),
        "dataset_fingerprint": mv.tags.get("dataset_fingerprint") or tags.get("dataset_fingerprint", ""),
        "dataset_dir": tags.get("dataset_dir", ""), "git_commit": tags.get("git_commit", ""),
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


@dataset_app.command("info")
def dataset_info(path: Annotated[Path, typer.Argument(help="a built dataset folder (holds manifest.json)")]) -> None:
    """Print a dataset's summary."""
    from clamp.data.build import BuildSummary
    from clamp.data.report import print_summary

    summary_file = path / "summary.json"
    if not summary_file.is_file():
        _fail(f"no summary.json in {path}: not a built dataset")
    print_summary(BuildSummary(**json.loads(summary_file.read_text())))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
