"""Zero-shot prompts: the templates a label is written into, in the training style and as
users phrase queries, and the filling-in (`prompts_for`) that classification, evaluation and
the service share."""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_TEMPLATES = {
    "genre": ["This is a {label} piece.", "A {label} song.", "Music in the {label} genre."],
    "emotion": [
        "This music sounds {label}.",
        "A {label} piece of video game music.",
        "The mood of this piece is {label}.",
    ],
    "pianist": ["A piano piece played by {label}.", "This is music by {label}.", "{label} at the piano."],
    "rhythm": ["This is a {label}.", "Rhythm: {label}", "A traditional {label} tune."],
    "origin": ["A folk song from {label}.", "Origin: {label}", "Traditional music of {label}."],
    "composer": ["A piece composed by {label}.", "Composer: {label}", "Music by {label}."],
    "tune_type": ["This is {article} {label}.", "A traditional {label} tune.", "Tune type: {label}"],
    "key": ["A tune in {label}.", "Music in the key of {label}.", "Key: {label}"],
    "meter": ["A tune in {label} time.", "Music in {label} time.", "Meter: {label}"],
    "collection": ["A tune from {label}.", "A tune collected in {label}.", "Collection: {label}"],
}
GENERIC_TEMPLATES = ["This is a {label} piece.", "{label}"]

# Held-out prompts: phrased as users type queries, never as the training captions are written
# (a test checks that none equals or contains a caption of the training rows). The quality
# targets and the README use these; `DEFAULT_TEMPLATES` (the training style) are shown beside.
# `{spoken}` is a meter in words ("3/4" -> "three-four").
USER_TEMPLATES = {
    "genre": ["{label}", "{label} music", "a {label} track"],
    "emotion": ["{label} music", "something that sounds {label}", "a {label} mood"],
    "pianist": ["{label}", "{label} playing piano", "a recording of {label}"],
    "rhythm": ["{article} {label}", "looking for {article} {label}", "some {label} music"],
    "origin": ["music from {label}", "folk tunes of {label}", "something from {label}"],
    "composer": ["{label}", "something by {label}", "works of {label}"],
    "tune_type": ["{article} {label}", "looking for {article} {label}", "some {label} music"],
    "key": ["{label}", "the key of {label}", "{label} tonality"],
    "meter": ["{label} meter", "{spoken} time", "music with a {spoken} meter"],
    "collection": ["{label}", "tunes out of {label}", "something from {label}"],
}
GENERIC_USER_TEMPLATES = ["{label}", "something {label}"]
_NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
]


def spoken(label: str) -> str:
    """A meter in words, as people say it: "3/4" -> "three-four", "12/8" -> "twelve-eight";
    anything else as it is."""
    top, _, bottom = label.partition("/")
    if top.isdigit() and bottom.isdigit() and int(top) < len(_NUMBER_WORDS) and int(bottom) < len(_NUMBER_WORDS):
        return f"{_NUMBER_WORDS[int(top)]}-{_NUMBER_WORDS[int(bottom)]}"
    return label


def article(word: str) -> str:
    """ "a" or "an" before a word ("an air", "a reel", "an 8-bar tune")."""
    w = word.strip().lower()
    return "an" if w[:1] in tuple("aeio8") or w.startswith(("11", "18", "hour", "honest")) else "a"


def prompts_for(
    labels: Sequence[str], task: str, templates: dict[str, list[str]] | None = None, style: str = "training"
) -> list[list[str]]:
    """Each label filled into the task's templates; `{label}` is the label, `{article}` "a" or "an",
    `{spoken}` a meter in words. `style` "training" starts from `DEFAULT_TEMPLATES`, "user" from
    `USER_TEMPLATES`; `templates` overrides either."""
    base, generic = (
        (USER_TEMPLATES, GENERIC_USER_TEMPLATES) if style == "user" else (DEFAULT_TEMPLATES, GENERIC_TEMPLATES)
    )
    table = {**base, **(templates or {})}
    return [
        [t.format(label=label, article=article(label), spoken=spoken(label)) for t in table.get(task, generic)]
        for label in labels
    ]
