"""Batches for training: patch padding, text dropout (docs/model-and-losses.md), collate functions."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import torch

from clamp.abc.patching import drop_header_patches
from clamp.data.views import CHORD_VIEW, MIDI_VIEW
from clamp.model.inputs import pad_patches, patches_to_chars


def text_dropout(texts: Sequence[str], rng: random.Random, sep: str, enabled: bool = True) -> str:
    """Keep each non-empty line with p 0.5 (all of them if none survive), shuffle, join by `sep`.

    With dropout off, all lines are joined in their stored order.
    """
    lines = [ln.strip() for t in texts for ln in t.split("\n") if ln.strip()]
    if not enabled or not lines:
        return sep.join(lines)
    kept = [ln for ln in lines if rng.random() < 0.5] or list(lines)
    rng.shuffle(kept)
    return sep.join(kept)


def text_id(text: str) -> int:
    """A stable 63-bit id of a text (the same in every process and run): equal ids mark
    identical texts for the loss's shared-text targets."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") >> 1


def music_batch(
    items: list[dict],
    max_patches: int,
    input_kind: str = "patch",
    pad_id: int = 0,
    *,
    patch_mode: str = "clamp-v1",
    header_dropout: float = 0.0,
    seed: int = 0,
    midi_view: float = 0.0,
    chord_view: float = 0.0,
) -> torch.Tensor:
    """The music side of a batch: each tune's patches, or with probability `midi_view` its
    MIDI-route view where it has one (`clamp.data.views`); then without its `K:`/`M:`/`L:` header
    patches (and voice names) with probability `header_dropout` (docs/model-and-losses.md,
    "Header dropout"), padded to a batch of patches or, for the character ablation, of characters.

    The draws are seeded per (seed, draw, item) like text dropout, so a resumed run makes the same."""
    seqs = []
    for it in items:
        patches = it["patches"]
        view = it.get("views", {}).get(MIDI_VIEW)
        draw = random.Random(f"{seed}:{it.get('draw', 0)}:{it.get('index', 0)}:view") if midi_view > 0 else None
        if draw is not None and view is not None and draw.random() < midi_view:
            patches = view
        elif (
            chord_view > 0
            and (chords := it.get("views", {}).get(CHORD_VIEW)) is not None
            # its own draw, so a run without chord views draws as before
            and random.Random(f"{seed}:{it.get('draw', 0)}:{it.get('index', 0)}:chords").random() < chord_view
        ):
            patches = chords
        if header_dropout > 0:
            rng = random.Random(f"{seed}:{it.get('draw', 0)}:{it.get('index', 0)}:header")
            if rng.random() < header_dropout:
                patches = drop_header_patches(patches, patch_mode)
        seqs.append(patches)
    if input_kind == "char":
        chars = [patches_to_chars(p, pad_id, max_patches) for p in seqs]
        return torch.nn.utils.rnn.pad_sequence(chars, batch_first=True, padding_value=pad_id)
    return pad_patches(seqs, max_patches)


class ContrastiveCollator:
    """Builds (music, input_ids, attention_mask) from dataset items with text dropout."""

    def __init__(
        self,
        tokenizer,
        max_patches: int,
        text_max_length: int = 128,
        text_dropout: bool = True,
        input_kind: str = "patch",
        pad_id: int = 0,
        seed: int = 0,
        shared_text_positives: bool = False,
        *,
        patch_mode: str = "clamp-v1",
        header_dropout: float = 0.0,
        midi_view: float = 0.0,
        chord_view: float = 0.0,
    ) -> None:
        self.tokenizer = tokenizer
        self.patch_mode, self.header_dropout, self.midi_view = patch_mode, header_dropout, midi_view
        self.chord_view = chord_view
        self.shared_text_positives = shared_text_positives
        self.max_patches = max_patches
        self.text_max_length = text_max_length
        self.text_dropout = text_dropout
        self.input_kind = input_kind
        self.pad_id = pad_id
        self.seed = seed
        self.sep = f" {tokenizer.sep_token} " if getattr(tokenizer, "sep_token", None) else " "

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        # seeded per (seed, draw, item): the same batch gets the same texts after a resume
        texts = [
            text_dropout(
                it["texts"],
                random.Random(f"{self.seed}:{it.get('draw', 0)}:{it.get('index', 0)}"),
                self.sep,
                self.text_dropout,
            )
            for it in items
        ]
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.text_max_length, return_tensors="pt")
        music = music_batch(
            items,
            self.max_patches,
            self.input_kind,
            self.pad_id,
            patch_mode=self.patch_mode,
            header_dropout=self.header_dropout,
            seed=self.seed,
            midi_view=self.midi_view,
            chord_view=self.chord_view,
        )
        batch = {"music": music, "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if self.shared_text_positives:
            batch["text_ids"] = torch.tensor([text_id(t) for t in texts], dtype=torch.int64)
        return batch


class PatchCollator:
    """Pads patch sequences for MMM pre-training."""

    def __init__(self, max_patches: int) -> None:
        self.max_patches = max_patches

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        return {"music": pad_patches([it["patches"] for it in items], self.max_patches)}
