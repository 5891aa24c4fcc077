"""The `clamp` command. Every sub-command has `--help`; user errors print one line and exit 2."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

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
        _fail(str(exc).splitlines()[0])
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
    if not (dataset / "manifest.json").is_file():
        _fail(f"no built dataset at {dataset} (run the build first)")
    if init_music_from is not None and not init_music_from.is_dir():
        _fail(f"MMM model folder not found: {init_music_from}")
    cfg = TrainConfig(
        objective=objective, dataset_dir=str(dataset), output_dir=str(output), preset=preset, steps=steps,
        batch_size=batch_size, grad_accum=grad_accum, lr=lr, input_kind=input_kind, text_model=text_model,
        text_dropout=text_dropout, init_music_from=str(init_music_from) if init_music_from else None,
        precision=precision, device=device, num_workers=num_workers, checkpoint_every=checkpoint_every,
        mlflow=mlflow, register_as=register_as, seed=seed,
    )
    try:
        result = run_train(cfg)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc).splitlines()[0])
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=2))


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
