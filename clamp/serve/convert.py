"""Uploads to ABC tunes in a child process with a timeout.

The bytes go through the build's conversion (`clamp.eval.files.read_music_bytes`, which calls
`convert_record` and so `clamp.abc.convert.to_abc`): the same converters and gates as the
dataset. A child process, because music21's Humdrum parser and the checks run in Python and a
hostile file must not hang or bloat the server: the child is killed at the timeout, and its
address space is capped. Children fork from a forkserver that has the converters imported
already, so each costs milliseconds, not an interpreter start.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.connection
from dataclasses import dataclass

from clamp.errors import UserError
from clamp.eval.files import MusicTune

_CHILD_MEMORY_BYTES = 4 << 30
_ctx = mp.get_context("forkserver")
_ctx.set_forkserver_preload(["clamp.eval.files", "clamp.data.build", "clamp.data.prepare", "clamp.abc.convert"])


class ConversionTimeout(UserError):
    """The conversion of an upload took longer than allowed."""


@dataclass(frozen=True)
class Converted:
    tunes: list[MusicTune]


def _child(conn: multiprocessing.connection.Connection, data: bytes, name: str, max_bytes: int,
           timeout_s: float) -> None:
    try:
        import resource

        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (_CHILD_MEMORY_BYTES, _CHILD_MEMORY_BYTES))
        from clamp.eval.files import read_music_bytes

        tunes = read_music_bytes(data, name, max_bytes=max_bytes, timeout_s=timeout_s)
        conn.send(("ok", [(t.index, t.abc, t.error) for t in tunes]))
    except UserError as exc:
        conn.send(("user", str(exc).splitlines()[0]))
    except MemoryError:
        conn.send(("user", f"unusable score {name}: too much memory needed to convert it"))
    except Exception as exc:  # a converter bug: reported as a failed conversion, not a crash
        conn.send(("user", f"unusable score {name}: conversion failed ({type(exc).__name__})"))
    finally:
        conn.close()


def convert_upload(data: bytes, name: str, max_bytes: int, timeout_s: float) -> list[MusicTune]:
    """The tunes of an uploaded file (blocking: call it from a worker thread). `name` only gives
    the format (its suffix); no path is opened. A `UserError` says what is wrong with the file."""
    parent, child = _ctx.Pipe(duplex=False)
    proc = _ctx.Process(target=_child, args=(child, data, name, max_bytes, timeout_s), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            raise ConversionTimeout(f"unusable score {name}: conversion took longer than {timeout_s:g} s")
        try:
            status, payload = parent.recv()
        except EOFError:  # killed (memory cap) or crashed without a word
            raise UserError(f"unusable score {name}: the converter crashed") from None
    finally:
        parent.close()
        if proc.is_alive():
            proc.kill()
        proc.join(5)
    if status != "ok":
        raise UserError(payload)
    return [MusicTune(i, abc, err) for i, abc, err in payload]


def warm_up() -> None:
    """Start the forkserver (importing the converters) now rather than on the first upload."""
    with contextlib.suppress(UserError):
        convert_upload(b"X:1\nT:warm-up\nK:C\nCDEF|\n", "warm-up.abc", 10_000, 60.0)
