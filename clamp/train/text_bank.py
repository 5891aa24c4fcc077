"""Locked text tower (LiT, Zhai et al. 2022): the pretrained text encoder is frozen, so its
pooled feature of every text candidate is computed once, without gradient, and cached on disk.

Training then runs only the music tower and the two projections: on a CPU the text tower is
most of a jointly trained step. Text dropout works in the bank's terms: each draw uses one
candidate of the tune (dropout on) or the mean of all its candidates (off). The features are
exactly what `ClampModel.encode_text` computes before its projection, so a locked model is
evaluated, saved and loaded like any other (docs/model-and-losses.md).
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from clamp.model.text import mean_pool
from clamp.train.data import music_batch, text_id

log = logging.getLogger("clamp.train")


def candidates(texts: Sequence[str]) -> list[str]:
    """A row's text candidates as single non-empty lines (as text dropout splits them)."""
    return [ln.strip() for t in texts for ln in t.split("\n") if ln.strip()]


def text_tower_fingerprint(model) -> str:
    """What the cached features depend on: the tower's weights and config, the tokenizer's
    vocabulary and the maximum text length."""
    h = hashlib.sha256()
    h.update(model.text_encoder.config.to_json_string().encode())
    h.update(str(model.config.text_max_length).encode())
    h.update(str(sorted(model.tokenizer.get_vocab().items())[:2000]).encode())
    for name, tensor in sorted(model.text_encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes()[: 1 << 16])  # a prefix of each tensor
        h.update(str(float(tensor.detach().float().sum())).encode())
    return h.hexdigest()[:16]


class TextFeatureBank:
    """Pooled (pre-projection) text features, one row per distinct candidate string."""

    def __init__(self, texts: list[str], features: torch.Tensor, computed: int = 0) -> None:
        self.index = {t: i for i, t in enumerate(texts)}
        self.features = features.float()
        self.computed = computed  # how many features `build` computed (the rest came from the cache)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def feature_of(self, lines: Sequence[str]) -> torch.Tensor:
        """The mean feature of `lines` (one line: its feature)."""
        rows = [self.index[ln] for ln in lines]
        return self.features[rows].mean(0)

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        model,
        texts: Iterable[str],
        cache_dir: str | Path | None = None,
        batch_size: int = 256,
        progress: Callable[[int], None] | None = None,
    ) -> TextFeatureBank:
        """Features of every distinct text, from the disk cache where present; the rest are
        computed with the frozen tower (eval mode, no gradient) and added to the cache."""
        wanted = sorted(set(texts))
        cached: dict[str, np.ndarray] = {}
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / "text-features" / f"{text_tower_fingerprint(model)}.npz"
            if path.is_file():
                data = np.load(path, allow_pickle=False)
                cached = dict(zip(data["texts"].tolist(), data["features"], strict=True))
        missing = [t for t in wanted if t not in cached]
        if missing:
            log.info("text features: %d cached, computing %d", len(wanted) - len(missing), len(missing))
            tower = model.text_encoder
            was_training = tower.training
            tower.eval()
            device = next(tower.parameters()).device
            # sorted by length: batches of similar length waste little padding
            order = sorted(range(len(missing)), key=lambda i: len(missing[i]))
            for start in range(0, len(order), batch_size):
                chunk = [missing[i] for i in order[start : start + batch_size]]
                enc = model.tokenizer(
                    chunk, padding=True, truncation=True, max_length=model.config.text_max_length, return_tensors="pt"
                ).to(device)
                hidden = tower(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
                pooled = mean_pool(hidden, enc["attention_mask"]).float().cpu().numpy()
                cached.update(zip(chunk, pooled, strict=True))
                if progress is not None:
                    progress(len(chunk))
            tower.train(was_training)
            if path is not None:
                from clamp.io import atomic_path

                keys = sorted(cached)
                with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                    np.savez(fh, texts=np.array(keys), features=np.stack([cached[k] for k in keys]).astype(np.float32))
        features = torch.from_numpy(np.stack([cached[t] for t in wanted]) if wanted else np.zeros((0, 1), np.float32))
        return cls(wanted, features, computed=len(missing))


class LockedTextCollator:
    """(music, text_features) batches: text dropout picks one cached candidate per draw."""

    def __init__(
        self,
        bank: TextFeatureBank,
        max_patches: int,
        text_dropout: bool = True,
        input_kind: str = "patch",
        pad_id: int = 0,
        seed: int = 0,
        shared_text_positives: bool = False,
        text_views: int = 1,
        *,
        patch_mode: str = "clamp-v1",
        header_dropout: float = 0.0,
        midi_view: float = 0.0,
        chord_view: float = 0.0,
    ) -> None:
        self.bank, self.max_patches, self.text_dropout = bank, max_patches, text_dropout
        self.patch_mode, self.header_dropout, self.midi_view = patch_mode, header_dropout, midi_view
        self.chord_view = chord_view
        self.input_kind, self.pad_id, self.seed = input_kind, pad_id, seed
        self.shared_text_positives = shared_text_positives
        self.text_views = text_views if text_dropout else 1  # without dropout every view would be the same

    def chosen_lines(self, texts: Sequence[str], rng: random.Random) -> list[str]:
        """The candidate a draw uses (dropout on), or all of them (off: their mean feature)."""
        lines = candidates(texts)
        return [rng.choice(lines)] if self.text_dropout else lines

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        # seeded per (seed, draw, item), like string text dropout: resume-exact
        rngs = [random.Random(f"{self.seed}:{it.get('draw', 0)}:{it.get('index', 0)}") for it in items]
        # views drawn in turn from each item's generator: view 0 is what a one-view run draws
        chosen = [
            [self.chosen_lines(it["texts"], rng) for _ in range(self.text_views)]
            for it, rng in zip(items, rngs, strict=True)
        ]
        feats = torch.stack([torch.stack([self.bank.feature_of(lines) for lines in views]) for views in chosen])
        if self.text_views == 1:
            feats = feats[:, 0]
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
        batch = {"music": music, "text_features": feats}
        if self.shared_text_positives:
            ids = torch.tensor([[text_id("\n".join(lines)) for lines in views] for views in chosen], dtype=torch.int64)
            batch["text_ids"] = ids[:, 0] if self.text_views == 1 else ids
        return batch
