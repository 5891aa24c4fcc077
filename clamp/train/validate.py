"""Validation during training: text-to-music retrieval on the valid split, and the geometry of
the joint space (alignment and uniformity, Wang & Isola 2020), which shows a collapse early."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from clamp.model.inputs import pad_patches, patches_to_chars

# Above this mean pairwise cosine of the music embeddings, the space has collapsed: every
# score looks alike to the model and search returns near-ties.
COLLAPSE_COSINE = 0.95


def space_geometry(music: torch.Tensor, text: torch.Tensor) -> dict[str, float]:
    """L2-normalized (n, d) pairs -> alignment (mean squared distance of matched pairs; 0 is
    perfect), uniformity (log mean exp(-2 |x-y|^2) over distinct music pairs; lower is more
    spread out) and the mean pairwise cosine of the music embeddings."""
    n = len(music)
    alignment = float((music - text).pow(2).sum(1).mean()) if n else 0.0
    if n < 2:
        return {"alignment": alignment, "uniformity": 0.0, "mean_cosine": 1.0}
    cos = music @ music.T
    off = ~torch.eye(n, dtype=torch.bool)
    sq = (2 - 2 * cos[off]).clamp_min(0)  # |x-y|^2 of unit vectors
    uniformity = float(torch.logsumexp(-2 * sq, 0) - math.log(sq.numel()))
    return {"alignment": alignment, "uniformity": uniformity, "mean_cosine": float(cos[off].mean())}


def retrieval(text: torch.Tensor, music: torch.Tensor) -> dict[str, float]:
    """Text i should retrieve music i: MRR and hit rates (ties count against the target)."""
    sim = text @ music.T
    target = sim.diagonal()
    ranks = (sim > target[:, None]).sum(1) + (sim == target[:, None]).sum(1)
    r = ranks.float()
    return {"mrr": float((1 / r).mean()), "hit_at_1": float((r <= 1).float().mean()),
            "hit_at_10": float((r <= 10).float().mean())}


@torch.no_grad()
def validate(model, items: list[dict], text_embed: Callable[[list[dict]], torch.Tensor], device: torch.device,
             batch_size: int = 64) -> dict[str, float]:
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
