"""`clamp import clamp1|clamp2|clamp3`: published CLaMP checkpoints as model folders
(docs/checkpoints.md). A sub-app of `clamp.cli`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from clamp import cli_common

import_app = typer.Typer(
    help="Import published CLaMP checkpoints as model folders (docs/checkpoints.md).", no_args_is_help=True
)

ImportOutOption = Annotated[Path, typer.Option("--out", help="the model folder to write")]
TextModelOption = Annotated[
    str | None,
    typer.Option(
        help="a local folder (or cached name) of the published text model, for its config and tokenizer; "
        "default: a text_model/ folder beside the weights, else the published model if it is cached"
    ),
]
NumHeadsOption = Annotated[
    int | None, typer.Option(min=1, help="attention heads of the music encoder (default: hidden size / 64)")
]
ImportOverwriteOption = Annotated[bool, typer.Option(help="replace an existing model folder at --out")]
RegisterOption = Annotated[
    str | None,
    typer.Option(help="also register the folder in the MLflow model registry under this name (retraining's champion)"),
]
ChampionOption = Annotated[
    bool, typer.Option(help="with --register-as: move the champion alias to it (default: only when there is none)")
]


def _import(
    fmt: str,
    path: Path,
    out: Path,
    text_model: str | None,
    num_heads: int | None,
    overwrite: bool,
    register_as: str | None,
    champion: bool,
    as_json: bool,
) -> None:
    from clamp.model.imports import import_checkpoint

    result = import_checkpoint(fmt, path, out, text_model=text_model, num_heads=num_heads, overwrite=overwrite)
    music = result.model.config.music
    info: dict = {
        "model_dir": str(out),
        "origin": fmt,
        "patch_mode": music.patch_mode,
        "layers": music.num_layers,
        "hidden_size": music.hidden_size,
        "max_positions": music.max_positions,
        "projection_dim": result.model.config.projection_dim,
        "text_model": result.lineage["origin_text_model"],
        "sha256": result.lineage["origin_sha256"],
    }
    if result.lineage.get("origin_skipped"):
        info["skipped"] = result.lineage["origin_skipped"]
    if register_as:
        from clamp.workflows.imported import register_imported

        info["registered"] = register_imported(out, register_as, make_champion=champion)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(
        f"imported {fmt} from {path} into {out}: {music.num_layers} layers x {music.hidden_size}, "
        f"patch mode {music.patch_mode}, window {music.max_positions} patches, text tower {info['text_model']}"
    )
    if "skipped" in info:
        typer.echo(f"not imported: {info['skipped']}")
    if register_as:
        r = info["registered"]
        typer.echo(f"registered as {r['name']} v{r['version']}" + (" (champion)" if r["champion"] == "True" else ""))


@import_app.command("clamp1")
def import_clamp1(
    path: Annotated[Path, typer.Argument(help="the CLaMP 1 folder: config.json + pytorch_model.bin")],
    out: ImportOutOption,
    text_model: TextModelOption = None,
    overwrite: ImportOverwriteOption = False,
    register_as: RegisterOption = None,
    champion: ChampionOption = False,
    as_json: cli_common.JsonOption = False,
) -> None:
    """Import a CLaMP 1 checkpoint (clamp-v1 patches; DistilRoBERTa text tower)."""
    _import("clamp1", path, out, text_model, None, overwrite, register_as, champion, as_json)


@import_app.command("clamp2")
def import_clamp2(
    path: Annotated[Path, typer.Argument(help="the CLaMP 2 .pth file (its `model` entry is the state dict)")],
    out: ImportOutOption,
    text_model: TextModelOption = None,
    num_heads: NumHeadsOption = None,
    overwrite: ImportOverwriteOption = False,
    register_as: RegisterOption = None,
    champion: ChampionOption = False,
    as_json: cli_common.JsonOption = False,
) -> None:
    """Import a CLaMP 2 checkpoint (m3 patches; XLM-R text tower)."""
    _import("clamp2", path, out, text_model, num_heads, overwrite, register_as, champion, as_json)


@import_app.command("clamp3")
def import_clamp3(
    path: Annotated[Path, typer.Argument(help="the CLaMP 3 .pth file (its `model` entry is the state dict)")],
    out: ImportOutOption,
    text_model: TextModelOption = None,
    num_heads: NumHeadsOption = None,
    overwrite: ImportOverwriteOption = False,
    register_as: RegisterOption = None,
    champion: ChampionOption = False,
    as_json: cli_common.JsonOption = False,
) -> None:
    """Import the symbolic parts of a CLaMP 3 checkpoint (m3 patches; XLM-R text tower; no audio)."""
    _import("clamp3", path, out, text_model, num_heads, overwrite, register_as, champion, as_json)
