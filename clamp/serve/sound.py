"""A local "sound font" for abcjs's synth, so the page plays with no network.

abcjs fetches one file per note (`<soundFontUrl><instrument>-mp3/<note>.mp3`) and decodes it
with the Web Audio API, which sniffs the content: a WAV file under that name plays. Each note
is synthesised here (a few decaying harmonics, like a plucked string), so nothing is read from
disk and every instrument sounds the same.
"""

from __future__ import annotations

import io
import re
import wave
from functools import lru_cache

import numpy as np

NOTE = re.compile(r"^([A-G])(b?)(-?\d)$")
INSTRUMENT = re.compile(r"^[a-z0-9_]{1,64}$")
_SEMITONE = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
RATE = 22050


def midi_number(note: str) -> int | None:
    """MIDI number of an abcjs note name ("C4", "Bb3"); None for anything else."""
    m = NOTE.match(note)
    if not m:
        return None
    number = 12 * (int(m.group(3)) + 1) + _SEMITONE[m.group(1)] - (1 if m.group(2) else 0)
    return number if 0 <= number <= 127 else None


@lru_cache(maxsize=128)
def note_wav(midi: int, seconds: float = 1.5) -> bytes:
    """A 16-bit mono WAV of one note."""
    freq = 440.0 * 2 ** ((midi - 69) / 12)
    t = np.arange(int(RATE * seconds)) / RATE
    tone = sum(np.sin(2 * np.pi * freq * h * t) / h**1.5 for h in (1, 2, 3, 4) if freq * h < RATE / 2)
    envelope = np.minimum(t / 0.005, 1.0) * np.exp(-3.0 * t)  # 5 ms attack: no click
    pcm = (0.5 * tone * envelope / 1.6 * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()
