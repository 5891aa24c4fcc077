"""Uploads to ABC tunes in a converter worker, with a timeout.

The bytes go through the build's conversion (`clamp.inference.files.read_music_bytes`, which calls
`convert_record` and so `clamp.abc.convert.to_abc`): the same converters and gates as the
dataset. The whole of it runs in a worker of this process's converter pool
(`clamp.abc.pool.default_pool`), because music21's Humdrum parser and the checks run in Python
and a hostile file must not hang, crash or bloat the server: the worker is killed and replaced
at the timeout, a crash costs that upload only, and an upload may grow the worker's address
space by at most the pool's `memory_limit_mb` (4 GiB). The workers are long-lived (`warm_up`
starts them), so an upload costs its conversion, not a process start.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from clamp.abc.pool import WorkerCrashed, WorkerTimeout, default_pool
from clamp.errors import UserError
from clamp.inference.files import MusicTune


class ConversionTimeout(UserError):
    """The conversion of an upload took longer than allowed."""


@dataclass(frozen=True)
class Converted:
    tunes: list[MusicTune]


def _upload_job(data: bytes, name: str, max_bytes: int, timeout_s: float) -> tuple[str, Any]:
    """In the worker: ("ok", [(index, abc, error)]) or ("user", the one-line reason)."""
    try:
        from clamp.inference.files import read_music_bytes

        tunes = read_music_bytes(data, name, max_bytes=max_bytes, timeout_s=timeout_s)
        return "ok", [(t.index, t.abc, t.error) for t in tunes]
    except UserError as exc:
        return "user", str(exc).splitlines()[0]
    except MemoryError:
        return "user", f"unusable score {name}: too much memory needed to convert it"
    except Exception as exc:  # a converter bug: reported as a failed conversion, not a crash
        return "user", f"unusable score {name}: conversion failed ({type(exc).__name__})"


def convert_upload(data: bytes, name: str, max_bytes: int, timeout_s: float) -> list[MusicTune]:
    """The tunes of an uploaded file (blocking: call it from a worker thread). `name` only gives
    the format (its suffix); no path is opened. A `UserError` says what is wrong with the file."""
    try:
        status, payload = default_pool().call(_upload_job, data, name, max_bytes, timeout_s, timeout_s=timeout_s)
    except WorkerTimeout:
        raise ConversionTimeout(f"unusable score {name}: conversion took longer than {timeout_s:g} s") from None
    except WorkerCrashed:  # killed (memory) or crashed without a word
        raise UserError(f"unusable score {name}: the converter crashed") from None
    if status != "ok":
        raise UserError(payload)
    return [MusicTune(i, abc, err) for i, abc, err in payload]


def warm_up(workers: int = 1) -> None:
    """Start `workers` converter workers now (each imports the converters and the upload checks)
    rather than on the first uploads: `max_conversions` of them convert at once."""
    default_pool().ensure_workers(workers)
    for _ in range(workers):  # the pool hands out its workers in turn: each one gets warmed
        with contextlib.suppress(UserError):
            convert_upload(b"X:1\nT:warm-up\nK:C\nCDEF|\n", "warm-up.abc", 10_000, 60.0)
