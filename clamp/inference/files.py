"""Reading music files given on the command line into ABC, with the build's checks.

A file passes the same gates as a record of the build (size limit, decoding, conversion,
control characters, music after the header; docs/shard-schema.md) and one more for ABC given
by hand: a tune needs its `K:` (key) field, which every ABC tune has and random text lacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clamp.data.records import FORMAT_BY_SUFFIX
from clamp.errors import UserError

if TYPE_CHECKING:
    from clamp.config import BuildConfig
    from clamp.data.prepare import PrepareConfig

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


@dataclass(frozen=True)
class MusicTune:
    """One tune of a music file: its 1-based position among the file's tunes, and its ABC, or
    why it is unusable."""

    index: int
    abc: str | None
    error: str | None = None

    @property
    def title(self) -> str | None:
        """The tune's first `T:` (title) field, if any."""
        for line in (self.abc or "").splitlines():
            if line.startswith("T:") and line[2:].strip():
                return line[2:].strip()
        return None


def _upload_prepare_config(build: BuildConfig) -> PrepareConfig:
    """The build's conversion settings, without its cache: a user's file is converted, not stored."""
    from clamp.data.prepare import PrepareConfig

    return PrepareConfig.from_build(build).model_copy(update={"conversion_cache_dir": None})


def _read_converted(path: Path, max_bytes: int | None) -> tuple[str, str]:
    """(format, the file converted to ABC text), after the file-level gates; a `UserError` otherwise."""
    from clamp.config import BuildConfig
    from clamp.data.clean import RejectedRecord
    from clamp.data.prepare import convert_record

    if path.is_dir():
        raise UserError(f"{path} is a directory: give a music file")
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    fmt = FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise UserError(
            f"unsupported format {path.suffix or '(none)'}: use one of {', '.join(sorted(FORMAT_BY_SUFFIX))}"
        )
    pcfg = _upload_prepare_config(BuildConfig())
    limit = max_bytes or pcfg.max_record_bytes
    size = path.stat().st_size
    if size > limit:  # before reading: a huge file is refused without loading it
        raise UserError(f"unusable score {path}: too_large: {size} bytes > {limit}")
    pcfg = pcfg.model_copy(update={"max_record_bytes": limit})
    try:
        return fmt, convert_record(fmt, path.read_bytes(), pcfg, None)
    except RejectedRecord as exc:
        raise UserError(f"unusable score {path}: {exc}") from None


def format_of(name: str) -> str:
    """The build's format name for a file name's suffix; a `UserError` for any other suffix."""
    suffix = Path(name).suffix.lower()
    fmt = FORMAT_BY_SUFFIX.get(suffix)
    if fmt is None:
        raise UserError(f"unsupported format {suffix or '(none)'}: use one of {', '.join(sorted(FORMAT_BY_SUFFIX))}")
    return fmt


def read_music_bytes(
    data: bytes, name: str, max_bytes: int | None = None, timeout_s: float | None = None
) -> list[MusicTune]:
    """`read_music_tunes` for a file's content (an upload): the format comes from `name`'s suffix,
    and the bytes go through the build's conversion (`convert_record`, hence `to_abc`) and the same
    gates. Nothing is read from disk."""
    from clamp.config import BuildConfig
    from clamp.data.clean import RejectedRecord
    from clamp.data.prepare import convert_record

    fmt = format_of(name)
    pcfg = _upload_prepare_config(BuildConfig())
    pcfg = pcfg.model_copy(
        update={
            "max_record_bytes": max_bytes or pcfg.max_record_bytes,
            "conversion_timeout_s": timeout_s or pcfg.conversion_timeout_s,
        }
    )
    try:
        text = convert_record(fmt, data, pcfg, None)
    except RejectedRecord as exc:
        raise UserError(f"unusable score {name}: {exc}") from None
    return _tunes_of(fmt, text, name)


def _checked_tune(abc: str, fmt: str) -> str:
    """One tune through the tune-level gates (a `RejectedRecord` names the failed one)."""
    from clamp.abc.normalize import normalize_abc
    from clamp.data.clean import RejectedRecord, check_has_music, strip_control_chars

    if fmt == "abc" and not any(line.startswith(_KEY_FIELD) for line in abc.splitlines()):
        raise RejectedRecord("not_abc", "no K: (key) field, so this is not an ABC tune")
    abc = strip_control_chars(abc)  # as in training: CRLF, stray control characters
    check_has_music(normalize_abc(abc))
    return abc


def read_music_tunes(path: str | Path, max_bytes: int | None = None) -> list[MusicTune]:
    """Every tune of a music file: each tune of an ABC file (split at `X:`), the one tune of other
    formats. Each passes the checks of `read_music_file`; one that fails is kept with its reason
    (`MusicTune.error`), and a file with no usable tune is a `UserError`."""
    path = Path(path)
    fmt, text = _read_converted(path, max_bytes)
    return _tunes_of(fmt, text, str(path))


def _tunes_of(fmt: str, text: str, path: str) -> list[MusicTune]:
    """The tunes of one converted file, each through the tune-level gates."""
    from clamp.abc.tunes import split_tunes
    from clamp.data.clean import RejectedRecord

    pieces = split_tunes(text) if fmt == "abc" else [text]
    if not pieces:
        raise UserError(f"unusable score {path}: empty")
    tunes: list[MusicTune] = []
    for i, piece in enumerate(pieces, start=1):
        try:
            tunes.append(MusicTune(i, _checked_tune(piece, fmt)))
        except RejectedRecord as exc:
            tunes.append(MusicTune(i, None, str(exc)))
    if all(t.abc is None for t in tunes):
        if len(tunes) == 1:
            raise UserError(f"unusable score {path}: {tunes[0].error}")
        raise UserError(f"unusable score {path}: none of its {len(tunes)} tunes is usable (tune 1: {tunes[0].error})")
    return tunes


def read_music_file(path: str | Path, max_bytes: int | None = None) -> str:
    """The first tune of a music file as ABC; a `UserError` names what is wrong with it."""
    from clamp.abc.tunes import split_tunes
    from clamp.data.clean import RejectedRecord

    path = Path(path)
    fmt, abc = _read_converted(path, max_bytes)
    try:
        if fmt == "abc":
            tunes = split_tunes(abc)
            if not tunes:
                raise RejectedRecord("empty")
            abc = tunes[0]
        return _checked_tune(abc, fmt)
    except RejectedRecord as exc:
        raise UserError(f"unusable score {path}: {exc}") from None


def load_model(model_dir: str | Path, device: str = "auto"):
    """A model folder, on `device` (auto: the GPU when there is one), ready for inference."""
    from clamp.model.clamp_model import ClampModel
    from clamp.model.device import pick_device

    try:
        model = ClampModel.from_pretrained(model_dir)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    return model.to(pick_device(device)).eval()
