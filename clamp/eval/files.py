"""Reading music files given on the command line into ABC, with the build's checks.

A file passes the same gates as a record of the build (size limit, decoding, conversion,
control characters, music after the header; docs/shard-schema.md) and one more for ABC given
by hand: a tune needs its `K:` (key) field, which every ABC tune has and random text lacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from clamp.data.records import FORMAT_BY_SUFFIX
from clamp.errors import UserError

_KEY_FIELD = "K:"


def music_files(paths: Iterable[Path]) -> list[Path]:
    """The files to read: each file as given, each directory's music files (recursively, sorted)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FORMAT_BY_SUFFIX)
            if not found:
                raise UserError(f"no music files ({', '.join(sorted(FORMAT_BY_SUFFIX))}) in directory {path}")
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise UserError(f"file not found: {path}")
    return out


def read_music_file(path: str | Path, max_bytes: int | None = None) -> str:
    """The first tune of a music file as ABC; a `UserError` names what is wrong with it."""
    from clamp.abc.normalize import normalize_abc
    from clamp.abc.tunes import split_tunes
    from clamp.config import BuildConfig
    from clamp.data.build import prepare_config
    from clamp.data.clean import RejectedRecord, check_has_music, strip_control_chars
    from clamp.data.prepare import convert_record

    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory: give a music file")
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    fmt = FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"unsupported format {path.suffix or '(none)'}: use one of {', '.join(sorted(FORMAT_BY_SUFFIX))}")
    pcfg = replace(prepare_config(BuildConfig()), conversion_cache_dir=None)  # the build's settings
    limit = max_bytes or pcfg.max_record_bytes
    size = path.stat().st_size
    if size > limit:  # before reading: a huge file is refused without loading it
        raise UserError(f"unusable score {path}: too_large: {size} bytes > {limit}")
    pcfg = replace(pcfg, max_record_bytes=limit)
    try:
        abc = convert_record(fmt, path.read_bytes(), pcfg, None)
        if fmt == "abc":
            tunes = split_tunes(abc)
            if not tunes:
                raise RejectedRecord("empty")
            abc = tunes[0]
            if not any(line.startswith(_KEY_FIELD) for line in abc.splitlines()):
                raise RejectedRecord("not_abc", "no K: (key) field, so this is not an ABC tune")
        abc = strip_control_chars(abc)  # as in training: CRLF, stray control characters
        check_has_music(normalize_abc(abc))
    except RejectedRecord as exc:
        raise UserError(f"unusable score {path}: {exc}") from None
    return abc


def load_model(model_dir: str | Path):
    from clamp.model.clamp_model import ClampModel

    try:
        return ClampModel.from_pretrained(model_dir)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
