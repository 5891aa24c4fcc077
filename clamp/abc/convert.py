"""Conversion of MusicXML, Humdrum and MIDI to ABC.

- MusicXML (.xml/.musicxml/.mxl): Willem Vree's xml2abc (shipped by the `abcforge` package),
  with the options CLaMP used (`-m 2 -c 6 -x`), run in a child process so a converter crash
  or hang costs one record, not the build.
- Humdrum (.krn): parsed by music21, written to MusicXML by music21, then xml2abc.
- MIDI: parsed by symusic (which rejects malformed files), then abcMIDI's `midi2abc`
  (shipped inside the symusic wheel).

Every function raises `ConversionError` with a short reason on failure.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

XML2ABC_ARGS = ("-m", "2", "-c", "6", "-x")
DEFAULT_TIMEOUT_S = 120.0


class ConversionError(Exception):
    """A score could not be converted; the message is the one-line reason."""


@lru_cache(maxsize=1)
def xml2abc_script() -> Path:
    import abcforge

    path = Path(abcforge.__file__).parent / "vendor" / "xml2abc" / "xml2abc.py"
    if not path.is_file():
        raise ConversionError(f"xml2abc not found in abcforge at {path}")
    return path


@lru_cache(maxsize=1)
def midi2abc_binary() -> Path:
    import symusic

    path = Path(symusic.__file__).parent / "bin" / "midi2abc"
    if not path.is_file():
        raise ConversionError(f"midi2abc not found in symusic at {path}")
    return path


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONIOENCODING": "utf-8"}


def unzip_mxl(data: bytes) -> bytes:
    """The MusicXML document inside a compressed .mxl archive."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = [n for n in zf.namelist() if not n.startswith("META") and n.lower().endswith((".xml", ".musicxml"))]
            if not names:
                raise ConversionError("unparseable_musicxml: .mxl archive holds no MusicXML document")
            return zf.read(names[0])
    except ConversionError:
        raise
    except Exception as exc:  # BadZipFile, zlib.error, encrypted or unsupported archives
        raise ConversionError(f"unparseable_musicxml: not a valid .mxl archive ({type(exc).__name__}: {exc})") from None


_XML_DECL_ENCODING = re.compile(rb"""(<\?xml[^>]*encoding=)(["'])[^"']*\2""")


def as_utf8_xml(xml: bytes) -> bytes:
    """xml2abc reads UTF-8 only: re-encode UTF-16 documents (BOM-marked) and fix their declaration."""
    for bom, codec in ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if xml.startswith(bom):
            text = xml[len(bom):].decode(codec, errors="replace").encode("utf-8")
            return _XML_DECL_ENCODING.sub(rb"\1\2UTF-8\2", text, count=1)
    return xml


def musicxml_to_abc(xml: bytes, timeout_s: float = DEFAULT_TIMEOUT_S, failure: str = "unparseable_musicxml") -> str:
    """Convert a MusicXML document (uncompressed bytes) to ABC with xml2abc."""
    xml = as_utf8_xml(xml)
    if b"<" not in xml[:2048]:
        raise ConversionError(f"{failure}: not an XML document")
    try:
        proc = subprocess.run(
            [sys.executable, str(xml2abc_script()), *XML2ABC_ARGS, "-i"],
            input=xml,
            capture_output=True,
            timeout=timeout_s,
            env=_child_env(),
        )
    except subprocess.TimeoutExpired:
        raise ConversionError(f"{failure}: xml2abc timed out after {timeout_s:.0f}s") from None
    abc = proc.stdout.decode("utf-8", errors="replace")
    if "X:" not in abc or "K:" not in abc:
        err = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
        reason = next((ln for ln in reversed(err) if "occurred" in ln or "rror" in ln), err[-1] if err else "no output")
        raise ConversionError(f"{failure}: {reason.strip()[:200]}")
    return abc


def humdrum_to_abc(data: bytes, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """Humdrum -> music21 -> MusicXML -> ABC."""
    from music21 import converter
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    try:
        score = converter.parseData(data.decode("utf-8", errors="replace"), format="humdrum")
        xml = GeneralObjectExporter(score).parse()
    except Exception as exc:  # music21 raises many types on bad input
        raise ConversionError(f"unparseable_humdrum: {type(exc).__name__}: {str(exc)[:160]}") from None
    return musicxml_to_abc(xml, timeout_s, failure="unparseable_humdrum")


def midi_to_abc(data: bytes, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """MIDI -> ABC with abcMIDI's midi2abc, after symusic has checked the file parses."""
    import symusic

    try:
        score = symusic.Score.from_midi(data)
    except Exception as exc:
        raise ConversionError(f"unparseable_midi: {str(exc)[:200]}") from None
    if score.note_num() == 0:
        raise ConversionError("unparseable_midi: the MIDI file has no notes")
    with tempfile.NamedTemporaryFile(suffix=".mid") as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            proc = subprocess.run(
                [str(midi2abc_binary()), tmp.name], capture_output=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            raise ConversionError(f"unparseable_midi: midi2abc timed out after {timeout_s:.0f}s") from None
    abc = proc.stdout.decode("latin-1")
    if proc.returncode != 0 or "K:" not in abc:
        err = proc.stderr.decode("latin-1").strip()
        raise ConversionError(f"unparseable_midi: midi2abc failed ({err[:160] or 'no output'})")
    # midi2abc chats before `X:` and titles the tune after the (random) temp file name.
    abc = abc[abc.find("X:") :] if "X:" in abc else abc
    return "\n".join(ln for ln in abc.split("\n") if not ln.startswith("T: from "))


def to_abc(fmt: str, content: bytes, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """Convert one non-ABC score to ABC text."""
    if fmt == "musicxml":
        return musicxml_to_abc(content, timeout_s)
    if fmt == "mxl":
        return musicxml_to_abc(unzip_mxl(content), timeout_s)
    if fmt == "humdrum":
        return humdrum_to_abc(content, timeout_s)
    if fmt == "midi":
        return midi_to_abc(content, timeout_s)
    raise ConversionError(f"unsupported_format: {fmt}")
