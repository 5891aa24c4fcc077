"""Controls of the quality report (docs/evaluation.md, "Controls"): what a score means only
beside them.

- **Input controls** score the same items with the music changed in a way that leaves the music
  itself alone (chord symbols added or removed, another unit note length, the MIDI route), or
  with the header lines that the labels are read from removed (notes only). A model that reads
  music gives the same answers; `agreement` is the share of items whose prediction is unchanged.
- **The header-only baseline**: a logistic regression on the header fields alone (one-hot `K:`,
  `M:`, `L:`, voice count), fit on the train split and scored on the held-out items. It is the bar
  that shows whether a model learned more than a lookup of its header patches.
- **The fair twin** (`fair_twin_like`): fresh music encoder and projections beside the same
  pretrained text tower the recipe locks, so prompts still mean something to it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from clamp.abc import notation, variants
from clamp.abc.midi_route import midi_route

log = logging.getLogger("clamp.eval")


@dataclass(frozen=True)
class InputControl:
    """A change to every item's music: `before` on the tune as written, `after` once it is in
    the model's own notation (`clamp.inference.embed.music_inputs`)."""

    name: str
    why: str
    before: Callable[[str], str] | None = None
    after: Callable[[str], str] | None = None
    heldout_only: bool = False  # only for the held-out corpus tasks (the benchmarks have no such header labels)


def _unit(target: str) -> Callable[[str], str]:
    def rewrite(abc: str) -> str:
        return notation.rewrite_unit_length(abc, target)

    rewrite.__name__ = f"unit_{target.replace('/', '_')}"
    return rewrite


INPUT_CONTROLS: dict[str, InputControl] = {
    c.name: c
    for c in (
        InputControl(
            "notes-only",
            "K:, M: and L: lines (and voice names) removed: key and meter are labels, not input",
            after=variants.notes_only,
            heldout_only=True,
        ),
        InputControl(
            "chords-added",
            "a chord symbol on every bar of tunes that have none, as lead sheets carry them",
            before=variants.add_chord_symbols,
        ),
        InputControl("chords-removed", "chord symbols and annotations taken out", before=notation.strip_chord_symbols),
        InputControl("unit-1-4", "rewritten to L:1/4, durations scaled: the same music", before=_unit("1/4")),
        InputControl("unit-1-16", "rewritten to L:1/16, durations scaled: the same music", before=_unit("1/16")),
        InputControl(
            "midi-route",
            "rendered to MIDI and read back with midi2abc, the way a user's MIDI file comes in",
            before=midi_route,
            heldout_only=True,
        ),
        # notes only, and the notes written otherwise: on full input a header reader is unmoved by
        # chords or another unit length (K: and M: stay), so only these show what the notes give
        InputControl(
            "notes-only-chords-added",
            "notes only, with a chord symbol on every bar: what a lead sheet's notes give",
            before=variants.add_chord_symbols,
            after=variants.notes_only,
            heldout_only=True,
        ),
        InputControl(
            "notes-only-unit-1-4",
            "notes only, rewritten to L:1/4 first: the same notes in other durations",
            before=_unit("1/4"),
            after=variants.notes_only,
            heldout_only=True,
        ),
    )
}


def control_benchmark_name(benchmark: str, control: str) -> str:
    """`corpus-key` under `notes-only` -> `corpus-key.notes-only` (MLflow accepts `.` and `-`)."""
    return f"{benchmark}.{control}"


# --- header-only baseline ---------------------------------------------------------------------
_FIELD = re.compile(r"^([KML]):\s*(.*?)\s*(?:%.*)?$")
_VOICE = re.compile(r"^V:\s*(\S+)")


def header_features(abc: str) -> dict[str, str]:
    """The header fields a lookup could read a label from: the first `K:`, `M:` and `L:` values as
    written (spaces collapsed) and the number of voices (capped at 4)."""
    found: dict[str, str] = {}
    voices: set[str] = set()
    for line in abc.splitlines():
        m = _FIELD.match(line)
        if m and m.group(1) not in found:
            found[m.group(1)] = " ".join(m.group(2).split())
        v = _VOICE.match(line)
        if v:
            voices.add(v.group(1))
    found["voices"] = str(min(max(len(voices), 1), 4))
    return found


def header_baseline(
    train_abc: Sequence[str], train_labels: Sequence[str], test_abc: Sequence[str], classes: Sequence[str]
) -> np.ndarray:
    """Class index per test item from a logistic regression on `header_features` (one-hot), fit on
    the train items whose label is one of `classes`. With fewer than two classes in the fit, every
    item gets the most frequent train class (or class 0)."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    index = {c: i for i, c in enumerate(classes)}
    keep = [i for i, lab in enumerate(train_labels) if lab in index]
    y = np.array([index[train_labels[i]] for i in keep], dtype=np.int64)
    if len(set(y.tolist())) < 2:
        fill = int(np.bincount(y).argmax()) if len(y) else 0
        return np.full(len(test_abc), fill, dtype=np.int64)
    vec = DictVectorizer()
    x = vec.fit_transform([{f"{k}={v}": 1 for k, v in header_features(train_abc[i]).items()} for i in keep])
    clf = LogisticRegression(max_iter=2000)
    clf.fit(x, y)
    xt = vec.transform([{f"{k}={v}": 1 for k, v in header_features(a).items()} for a in test_abc])
    return clf.predict(xt).astype(np.int64)


# --- fair twin ----------------------------------------------------------------------------------
def fair_twin_like(model, seed: int = 0):
    """The same architecture with a fresh music encoder and fresh projections (seed `seed`) beside
    the pretrained text tower the recipe locks: what the data and the text tower give with no
    music training. (The random twin, `clamp.eval.run.random_init_like`, also randomises the text
    tower, so its prompts mean nothing and its predictions are near constant.)"""
    import torch

    from clamp.model.clamp_model import ClampModel

    torch.manual_seed(seed)
    try:
        twin = ClampModel.from_config(model.config)
    except Exception as exc:  # a text tower that cannot be loaded by name here: the model's own copy
        import copy

        log.info("fair twin: %s; using the model's own text tower", exc)
        torch.manual_seed(seed)
        twin = ClampModel(model.config, copy.deepcopy(model.text_encoder), model.tokenizer)
    device = next(model.parameters()).device
    return twin.to(device).eval()
