"""Cleaning of records: decoding, control characters, record-level rejection reasons, content
hashing (the text candidates of a record are cleaned by `clamp.text.clean`).

Each check returns a short reason code; the pipeline turns a reason into a quarantine row,
so no single record can stop a build.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from clamp.config import BuildConfig

MAX_RECORD_BYTES: int = BuildConfig.model_fields["max_record_bytes"].default
MAX_CONTROL_CHAR_RATIO = 0.01


class RejectedRecord(Exception):
    """A record that must go to quarantine. `reason` is a short code, `detail` free text."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def check_raw_bytes(content: bytes, max_bytes: int = MAX_RECORD_BYTES) -> None:
    if len(content) > max_bytes:
        raise RejectedRecord("too_large", f"{len(content)} bytes > {max_bytes}")
    if not content.strip():
        raise RejectedRecord("empty")


def decode_text(content: bytes) -> str:
    """Decode a text record: UTF-8 (BOM allowed), else Windows-1252; NUL bytes mean binary."""
    if b"\0" in content:
        raise RejectedRecord("binary", "NUL bytes in a text record")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return content.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise RejectedRecord(
            "undecodable", f"neither UTF-8 nor Windows-1252 ({exc.reason} at byte {exc.start})"
        ) from None


_ALLOWED_CONTROL = {"\n", "\r", "\t"}
_C1 = re.compile("[\u0080-\u009f]")


def repair_c1_mojibake(text: str) -> str:
    """Repair DOS-era text that was decoded as Latin-1: C1 control characters (U+0080-U+009F)
    are code page 437 letters ("M\x81ller" -> "Müller", as in some Essen collection files)."""
    if not _C1.search(text):
        return text
    return _C1.sub(lambda m: bytes([ord(m.group())]).decode("cp437"), text)


def strip_control_chars(text: str, max_ratio: float = MAX_CONTROL_CHAR_RATIO) -> str:
    """Repair C1 mojibake, remove stray control characters; reject text that is full of them."""
    text = repair_c1_mojibake(text)
    bad = (
        sum(1 for c in text if unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROL)
        if not text.isprintable()
        else 0
    )
    if bad == 0:
        return text.replace("\r\n", "\n").replace("\r", "\n")
    if bad / max(len(text), 1) > max_ratio:
        raise RejectedRecord("control_characters", f"{bad} control characters in {len(text)}")
    text = "".join(c for c in text if c in _ALLOWED_CONTROL or unicodedata.category(c) != "Cc")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def music_body(normalized: str) -> str:
    """The non-header lines of normalized ABC: the notes themselves."""
    return "\n".join(
        ln
        for ln in normalized.split("\n")
        if ln and not (len(ln) > 1 and ln[0].isalpha() and ln[1] == ":") and not ln.startswith("%%")
    )


def check_has_music(normalized: str) -> None:
    if not music_body(normalized).strip():
        raise RejectedRecord("header_only", "no music after the header")


def content_hash(normalized: str) -> str:
    """Exact-duplicate key: SHA-256 of the normalized music with whitespace removed (first 128 bits)."""
    return hashlib.sha256("".join(normalized.split()).encode("utf-8")).hexdigest()[:32]
