"""Reading one music file from the command line into ABC, with one-line errors."""

from __future__ import annotations

from pathlib import Path

from clamp.data.records import FORMAT_BY_SUFFIX


class UserInputError(Exception):
    """A problem with what the user gave us; the message is one line for the terminal."""


def read_music_file(path: str | Path) -> str:
    from clamp.abc.convert import ConversionError, to_abc
    from clamp.abc.normalize import normalize_abc
    from clamp.abc.tunes import split_tunes
    from clamp.data.clean import RejectedRecord, check_has_music, decode_text, strip_control_chars

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"file not found: {path}")
    fmt = FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise UserInputError(f"unsupported format {path.suffix or '(none)'}: use one of {', '.join(sorted(FORMAT_BY_SUFFIX))}")
    data = path.read_bytes()
    try:
        if fmt == "abc":
            tunes = split_tunes(decode_text(data))
            if not tunes:
                raise UserInputError(f"no tune in {path}")
            abc = tunes[0]
        else:
            abc = to_abc(fmt, data)
        abc = strip_control_chars(abc)  # as in training: CRLF, stray control characters
        check_has_music(normalize_abc(abc))
    except ConversionError as exc:
        raise UserInputError(f"unparseable score {path}: {exc}") from None
    except RejectedRecord as exc:
        raise UserInputError(f"unusable score {path}: {exc}") from None
    return abc


def load_model(model_dir: str | Path):
    from clamp.model.clamp_model import ClampModel

    try:
        return ClampModel.from_pretrained(model_dir)
    except FileNotFoundError as exc:
        raise UserInputError(str(exc)) from None
