"""Validation during training: text-to-music retrieval on the valid split, and the geometry of
the joint space (alignment and uniformity, Wang & Isola 2020), which shows a collapse early."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from clamp.model.geometry import (
    COLLAPSE_COSINE,
    alignment,
    hit_rate,
    mean_pairwise_cosine,
    mrr,
    ranks_of_targets,
    uniformity,
)
from clamp.model.inputs import pad_patches, patches_to_chars

__all__ = ["COLLAPSE_COSINE", "retrieval", "space_geometry", "validate"]


def space_geometry(music: torch.Tensor, text: torch.Tensor) -> dict[str, float]:
    """L2-normalized (n, d) pairs -> alignment (mean squared distance of matched pairs; 0 is
    perfect), uniformity (log mean exp(-2 |x-y|^2) over distinct music pairs; lower is more
    spread out) and the mean pairwise cosine of the music embeddings (`clamp.model.geometry`,
    which evaluation uses too)."""
    m, t = music.double().numpy(), text.double().numpy()
    if len(m) < 2:
        return {"alignment": alignment(m, t) if len(m) else 0.0, "uniformity": 0.0, "mean_cosine": 1.0}
    return {"alignment": alignment(m, t), "uniformity": uniformity(m), "mean_cosine": mean_pairwise_cosine(m)}


def retrieval(text: torch.Tensor, music: torch.Tensor) -> dict[str, float]:
    """Text i should retrieve music i: MRR and hit rates (ties count against the target)."""
    sim = (text.double() @ music.double().T).numpy()
    ranks = ranks_of_targets(sim, np.arange(len(sim)))
    return {"mrr": mrr(ranks), "hit_at_1": hit_rate(ranks, 1), "hit_at_10": hit_rate(ranks, 10)}


@torch.no_grad()
def validate(
    model,
    items: list[dict],
    text_embed: Callable[[list[dict]], torch.Tensor],
    device: torch.device,
    batch_size: int = 64,
) -> dict[str, float]:
    """Metrics named `valid/...` for the valid items; `text_embed(items)` gives their normalized
    text embeddings the way training sees their text without dropout."""
    was_training = model.training
    model.eval()
    cfg = model.config.music
    music, text = [], []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        if cfg.input_kind == "char":
            seqs = [patches_to_chars(it["patches"], cfg.pad_id, cfg.max_positions) for it in batch]
            x = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=cfg.pad_id)
        else:
            x = pad_patches([it["patches"] for it in batch], cfg.max_positions)
        music.append(model.encode_music(x.to(device)).float().cpu())
        text.append(text_embed(batch).float().cpu())
    model.train(was_training)
    m, t = torch.cat(music), torch.cat(text)
    out = {f"valid/text_to_music/{k}": v for k, v in retrieval(t, m).items()}
    out.update({f"valid/{k}": v for k, v in space_geometry(m, t).items()})
    out["valid/items"] = float(len(items))
    return out
