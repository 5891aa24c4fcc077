"""The `clamp` command. Every sub-command has `--help`; user errors print one line and exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="CLaMP pipeline: build datasets of music-text pairs (training and evaluation follow).", no_args_is_help=True)
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
