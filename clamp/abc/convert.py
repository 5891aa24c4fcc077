"""`to_abc`: the one entry point for converting MusicXML, Humdrum and MIDI to ABC.

By default the whole conversion runs in a long-lived worker process of `clamp.abc.pool`, so a
per-item timeout, a crash or a memory blow-up costs one score, not the caller; inside a worker
it runs in place. The converters themselves are in `clamp.abc.converters`, which imports
neither this module nor the pool: the layers go convert -> pool -> converters, without a cycle.
"""

from __future__ import annotations

from typing import Literal

from clamp.abc import pool
from clamp.abc.converters import DEFAULT_TIMEOUT_S, FORMATS, ConversionError, convert_here

__all__ = ["DEFAULT_TIMEOUT_S", "ConversionError", "Mode", "to_abc"]

Mode = Literal["pool", "in_process", "subprocess"]


def to_abc(fmt: str, content: bytes, timeout_s: float = DEFAULT_TIMEOUT_S, mode: Mode = "pool") -> str:
    """Convert one non-ABC score to ABC text.

    `mode`: `"pool"` (the default) converts in a worker process of this process's converter pool
    (`clamp.abc.pool.default_pool`), with a timeout, crash isolation and bounded memory; inside a
    pool worker it converts in place. `"in_process"` converts in this process with no isolation,
    and `"subprocess"` as before the pool (music21 here, a new Python process per xml2abc run):
    both are for tests and benchmarks."""
    if fmt not in FORMATS:
        raise ConversionError(f"unsupported_format: {fmt}")
    if mode == "pool":
        if pool.in_worker():
            return pool.convert_in_worker(fmt, content, timeout_s)
        return pool.default_pool().convert(fmt, content, timeout_s)
    if mode in ("in_process", "subprocess"):
        return convert_here(fmt, content, timeout_s, subprocess_xml2abc=mode == "subprocess")
    raise ValueError(f"unknown conversion mode {mode!r}: use pool, in_process or subprocess")
