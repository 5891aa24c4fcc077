"""Bar patching (docs/abc-normalisation-and-patching.md): one score -> an (n_patches, 64) uint8 array.

Two modes:
- ``clamp-v1``: the paper's 98-symbol vocabulary over clamp-v1-normalized text;
- ``m3``: CLaMP 2/3's raw 128-symbol vocabulary over the tune as written.

Both reproduce the reference check digests on WikiMT exactly (see tests). Patches are
built with ``bytes.translate`` and ``ljust`` so the per-bar work stays in C; that is what
makes the patcher several times faster than the reference loops.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from clamp.abc.normalize import m3_text, normalize_abc

PATCH_SIZE = 64

# Alternatives tried in exactly this order (docs/abc-normalisation-and-patching.md, "Splitting into bars").
BARLINE_RE = re.compile(r"(\|:|::|:\||\[\||\|\||\|\]|\|)")
BARLINES = frozenset(["|:", "::", ":|", "[|", "||", "|]", "|"])


def split_bars(body: str) -> list[str]:
    """Cut music into bars, each ending with its closing barline.

    A leading barline is glued to the first bar. Text after the last barline has no closing
    barline and is dropped, as in the reference implementations (the digests depend on it).
    """
    pieces = [p for p in BARLINE_RE.split(body) if p]
    if len(pieces) > 1 and pieces[0] in BARLINES:
        pieces[1] = pieces[0] + pieces[1]
        del pieces[0]
    return [pieces[i] + pieces[i + 1] for i in range(0, len(pieces) - 1, 2)]


def _is_v1_header(line: str) -> bool:
    return len(line) > 1 and ((line[0].isalpha() and line[1] == ":") or line.startswith("%%score"))


def _is_m3_header(line: str) -> bool:
    return len(line) > 1 and ((line[0].isalpha() and line[1] == ":") or line.startswith("%%"))


# --- clamp-v1 -----------------------------------------------------------------------------
V1_PAD, V1_MASK, V1_EOP = 0, 96, 97
V1_VOCAB = 98
# printable ASCII 32..126 -> 1..95, anything else -> 0 (pad)
_V1_TABLE = bytes((b - 31) if 32 <= b <= 126 else 0 for b in range(256))
_V1_EOS_PATCH = bytes([V1_EOP]) * PATCH_SIZE
_V1_EOP_BYTE = bytes([V1_EOP])


def _ascii_bytes(piece: str) -> bytes:
    """ASCII bytes of a piece; a non-ASCII character (only possible when the caller skipped
    transliteration) becomes byte 0, i.e. padding, as in the reference."""
    try:
        return piece.encode("ascii")
    except UnicodeEncodeError:
        return bytes(ord(c) if ord(c) < 128 else 0 for c in piece)


def _v1_patch(piece: str) -> bytes:
    ids = _ascii_bytes(piece)[:PATCH_SIZE].translate(_V1_TABLE)
    if len(ids) < PATCH_SIZE:
        ids += _V1_EOP_BYTE
    return ids.ljust(PATCH_SIZE, b"\0")


def patchify_v1_text(normalized: str, max_patches: int = 512) -> bytes:
    """Patch bytes of already-normalized text (n * 64 bytes)."""
    out: list[bytes] = []
    body: list[str] = []
    for line in normalized.split("\n"):
        if _is_v1_header(line):
            if body:
                out.extend(map(_v1_patch, split_bars("".join(body))))
                body.clear()
            out.append(_v1_patch(line))
        else:
            body.append(line)
    if body:
        out.extend(map(_v1_patch, split_bars("".join(body))))
    out.append(_V1_EOS_PATCH)
    return b"".join(out[:max_patches])


# --- m3 -----------------------------------------------------------------------------------
M3_PAD, M3_BOS, M3_EOS, M3_MASK = 0, 1, 2, 3
M3_VOCAB = 128
_M3_BEGIN = b"\x01" * PATCH_SIZE  # chr(1)*64 patched as [1]+[1]*64+[2] cut to 64
_M3_END = b"\x01" + b"\x02" * (PATCH_SIZE - 1)  # chr(2)*64 patched the same way


def _m3_patch(piece: str) -> bytes:
    return (b"\x01" + _ascii_bytes(piece) + b"\x02")[:PATCH_SIZE].ljust(PATCH_SIZE, b"\0")


def patchify_m3_text(text: str, max_patches: int = 512) -> bytes:
    """Patch bytes of an ASCII tune in m3 mode (n * 64 bytes)."""
    out: list[bytes] = [_M3_BEGIN]
    for line in text.split("\n"):
        if not line:
            continue
        if _is_m3_header(line):
            out.append(_m3_patch(line + "\n"))
            continue
        bars = split_bars(line)
        if bars:
            bars[-1] += "\n"
            out.extend(map(_m3_patch, bars))
        else:
            out.append(_m3_patch(line + "\n"))
        if len(out) > max_patches:
            break
    out.append(_M3_END)
    return b"".join(out[:max_patches])


@dataclass(frozen=True)
class PatchMode:
    """A patching scheme: how text is prepared, how it is patched, and its vocabulary."""

    name: str
    vocab_size: int
    pad_id: int
    mask_id: int
    prepare: Callable[[str], str]
    patch_bytes: Callable[[str, int], bytes]


PATCH_MODES: dict[str, PatchMode] = {
    "clamp-v1": PatchMode("clamp-v1", V1_VOCAB, V1_PAD, V1_MASK, normalize_abc, patchify_v1_text),
    "m3": PatchMode("m3", M3_VOCAB, M3_PAD, M3_MASK, m3_text, patchify_m3_text),
}


def get_patch_mode(name: str) -> PatchMode:
    try:
        return PATCH_MODES[name]
    except KeyError:
        raise ValueError(f"unknown patch mode {name!r}; choose one of {sorted(PATCH_MODES)}") from None


def patchify(abc: str, mode: str = "clamp-v1", max_patches: int = 512) -> np.ndarray:
    """Prepare and patch one tune; returns an (n_patches, 64) uint8 array."""
    pm = get_patch_mode(mode)
    data = pm.patch_bytes(pm.prepare(abc), max_patches)
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, PATCH_SIZE)


# --- header dropout -----------------------------------------------------------------------
# The header lines that name what the labels are made of (key, meter, unit note length): with
# them in the input, key and meter are a lookup of one patch. Header dropout trains on tunes
# without them (docs/model-and-losses.md, "Header dropout"), `clamp.abc.variants.notes_only` is
# the same cut on text for the evaluation's notes-only control.
HEADER_DROP_FIELDS = "KML"


def _field_code(mode: str, ch: str) -> int:
    return ord(ch) - 31 if mode == "clamp-v1" else ord(ch)


def drop_header_patches(patches, patch_mode: str, fields: str = HEADER_DROP_FIELDS):
    """The patches of one tune without its `fields` header-line patches (default `K:`, `M:`,
    `L:`), and with each `V:` line cut to its voice id (names out). Works on an (n, 64) numpy
    array or torch tensor and returns the same kind; a tune with none of them comes back as is.

    Header lines are patches of their own in both modes: clamp-v1 writes the line's characters
    shifted by 31, m3 the raw bytes after a begin byte (`_m3_patch`).
    """
    if len(patches) == 0:
        return patches
    off = 0 if patch_mode == "clamp-v1" else 1
    colon, space = _field_code(patch_mode, ":"), _field_code(patch_mode, " ")
    first, second = patches[:, off], patches[:, off + 1]
    is_field = second == colon
    if off:
        is_field = is_field & (patches[:, 0] == 1)
    drop = None
    for ch in fields:
        hit = is_field & (first == _field_code(patch_mode, ch))
        drop = hit if drop is None else drop | hit
    voice = is_field & (first == _field_code(patch_mode, "V"))
    out = patches[~drop] if drop is not None and bool(drop.any()) else patches
    if not bool(voice.any()):
        return out
    out = out.clone() if hasattr(out, "clone") else out.copy()
    rows = out[:, off + 1] == colon
    if off:
        rows = rows & (out[:, 0] == 1)
    rows = rows & (out[:, off] == _field_code(patch_mode, "V"))
    end = [V1_EOP] if patch_mode == "clamp-v1" else [ord("\n"), M3_EOS]
    for r in np.flatnonzero(np.asarray(rows)):
        codes = np.asarray(out[r]).tolist()
        cut = next((i for i in range(off + 3, len(codes)) if codes[i] == space), None)
        if cut is None:
            continue
        tail = (end + [0] * len(codes))[: len(codes) - cut]
        out[r, cut:] = out.new_tensor(tail) if hasattr(out, "new_tensor") else np.asarray(tail, dtype=out.dtype)
    return out
