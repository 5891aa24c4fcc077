"""Symmetric contrastive loss (CLIP-style), with features all-gathered across processes."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every process, keeping the gradient path to each process's part."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), 0)


def contrastive_loss(music: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of music->text and text->music cross-entropy over the global batch.

    `music`, `text`: (local batch, dim), L2-normalized. Returns (loss, global logits).
    """
    music_all = gather_with_grad(music)
    text_all = gather_with_grad(text)
    logits = logit_scale * music_all @ text_all.t()
    labels = torch.arange(logits.shape[0], device=logits.device)
    loss = (F.cross_entropy(logits.float(), labels) + F.cross_entropy(logits.t().float(), labels)) / 2
    return loss, logits
