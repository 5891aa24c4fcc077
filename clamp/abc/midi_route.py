"""The MIDI route: a tune rendered to MIDI by abc2midi and read back by midi2abc, the way a user's
MIDI file of it reaches the model (timing quantised, key and meter guessed). The evaluation scores
it as an input control (`clamp.eval.controls`); the build stores it as a second view of each
training tune (`clamp.data.views`), so training sees the notation MIDI input arrives in."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

from clamp.io import atomic_path

log = logging.getLogger("clamp.abc")

# `<cache_dir>/midi-route/<2 hex>/<sha256 of the tune>.abc`; an empty file marks a tune that failed
CACHE_FOLDER = "midi-route"


def midi_route(abc: str, timeout_s: float = 30.0) -> str:
    """The tune as a user's MIDI file of it reaches the model: rendered by abc2midi, read back by
    midi2abc, as `clamp.abc.convert` reads any MIDI file."""
    from clamp.abc.converters import midi_to_abc
    from clamp.abc.render import abc_to_midi

    return midi_to_abc(abc_to_midi(abc, timeout_s), timeout_s)


def midi_routed(
    abcs: Sequence[str], cache_dir: str | Path | None, stats: dict[str, int] | None = None
) -> list[str | None]:
    """`midi_route` of each tune (None where abc2midi or midi2abc fails), cached by the tune's
    SHA-256 under `<cache_dir>/midi-route`, so a rerun converts nothing. `stats`, when given,
    counts `converted` (cache misses) and `failed`."""
    root = Path(cache_dir) / CACHE_FOLDER if cache_dir else None
    out: list[str | None] = []
    for abc in abcs:
        digest = hashlib.sha256(abc.encode("utf-8", errors="surrogateescape")).hexdigest()
        path = root / digest[:2] / f"{digest}.abc" if root else None
        if path is not None and path.is_file():
            routed: str | None = path.read_text(encoding="utf-8") or None
        else:
            try:
                routed = midi_route(abc)
            except Exception as exc:  # a tune abc2midi cannot render is counted, not fatal
                log.debug("midi route failed: %s", exc)
                routed = None
            if stats is not None:
                stats["converted"] = stats.get("converted", 0) + 1
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(path) as tmp:
                    Path(tmp).write_text(routed or "", encoding="utf-8")
        if stats is not None and routed is None:
            stats["failed"] = stats.get("failed", 0) + 1
        out.append(routed)
    return out
