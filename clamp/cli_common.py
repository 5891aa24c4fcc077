"""What every command line of the project shares (typer): the user-error handling and the
build options, so `clamp build` and `python -m flows.build_dataset` take the same flags.

A `UserError` raised anywhere below a command prints `error: <one line>` and exits 2; with
`--debug` it is raised with its traceback. Any other exception is a bug and always keeps its
traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import click
import typer
from pydantic import BaseModel
from typer.core import TyperCommand, TyperGroup

from clamp.config import BuildConfig
from clamp.errors import UserError, error_line

DEBUG_HELP = "show the traceback of user errors too"


class _UserErrorsToOneLine:
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except UserError as exc:
            if ctx.params.get("debug") or ctx.find_root().params.get("debug"):
                raise
            typer.echo(f"error: {error_line(exc)}", err=True)
            ctx.exit(2)


class UserErrorGroup(_UserErrorsToOneLine, TyperGroup):
    """A typer group whose sub-commands' user errors become one line and exit status 2."""


class UserErrorCommand(_UserErrorsToOneLine, TyperCommand):
    """A single typer command with the same handling."""


def make_group_app(help: str) -> typer.Typer:
    """A multi-command app with a global `--debug` option."""
    app = typer.Typer(help=help, cls=UserErrorGroup, no_args_is_help=True, pretty_exceptions_show_locals=False)

    @app.callback()
    def _root(debug: Annotated[bool, typer.Option("--debug", help=DEBUG_HELP)] = False) -> None:
        pass

    return app


class _CommandApp(typer.Typer):
    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", UserErrorCommand)  # a lone command is not run through the group class
        return super().command(*args, **kwargs)


def make_command_app(help: str) -> typer.Typer:
    """A one-command app (`python -m flows.x --help`); its command takes `debug: DebugOption`."""
    return _CommandApp(help=help, pretty_exceptions_show_locals=False, add_completion=False)


DebugOption = Annotated[bool, typer.Option("--debug", help=DEBUG_HELP)]


def field_help(model: type[BaseModel], name: str) -> str:
    """An option's help from its config field: the field's description and its default in
    parentheses, so no default is written twice. A default that depends on other settings is named
    by the field's `json_schema_extra={"default_text": ...}`; a `None` default shows nothing."""
    info = model.model_fields[name]
    if not info.description:
        raise ValueError(f"{model.__name__}.{name} has no description to show as help")
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    shown = extra.get("default_text")
    default = info.get_default(call_default_factory=True)
    if shown is None and default is not None:
        if isinstance(default, bool):
            shown = "on" if default else "off"
        elif isinstance(default, list | tuple):
            shown = ",".join(map(str, default))  # as the option is written: comma-separated
        else:
            shown = str(default)
    # "(default: x)", not "[x]": rich would read "[clamp]" as a style tag and drop it
    return f"{info.description} (default: {shown})" if shown is not None else info.description


# --- build options, shared by `clamp build` and `python -m flows.build_dataset` ----------------
# Every default is None: a value the user did not give never overrides the config file.
ConfigOption = Annotated[Path | None, typer.Option(help="YAML/JSON BuildConfig file (see docs/configuration.md)")]
NameOption = Annotated[str | None, typer.Option(help=field_help(BuildConfig, "name"))]
OutputDirOption = Annotated[Path | None, typer.Option(help=field_help(BuildConfig, "output_dir"))]
LimitOption = Annotated[int | None, typer.Option(min=1, help="cap the records of each source (quick runs)")]
PatchModeOption = Annotated[str | None, typer.Option(help=field_help(BuildConfig, "patch_mode"))]
MidiViewsOption = Annotated[
    bool | None, typer.Option("--midi-views/--no-midi-views", help=field_help(BuildConfig, "midi_views"))
]
ChordViewsOption = Annotated[
    bool | None, typer.Option("--chord-views/--no-chord-views", help=field_help(BuildConfig, "chord_views"))
]
WorkersOption = Annotated[int | None, typer.Option(min=1, help=field_help(BuildConfig, "n_workers"))]
OverwriteOption = Annotated[bool, typer.Option(help="replace a dataset of the same name built from other sources")]
JsonOption = Annotated[bool, typer.Option("--json", help="print the summary as JSON")]


def build_overrides(
    config: Path | None,
    name: str | None,
    output_dir: Path | None,
    limit: int | None,
    patch_mode: str | None,
    midi_views: bool | None = None,
    chord_views: bool | None = None,
) -> dict[str, Any]:
    """The BuildConfig fields the user gave on the command line (and nothing else)."""
    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "name": name,
            "output_dir": str(output_dir) if output_dir else None,
            "patch_mode": patch_mode,
            "midi_views": midi_views,
            "chord_views": chord_views,
        }.items()
        if v is not None
    }
    if limit is not None:
        base = BuildConfig.load(config, **overrides)
        overrides["sources"] = [{**s.model_dump(), "limit": limit} for s in base.sources]
    return overrides
