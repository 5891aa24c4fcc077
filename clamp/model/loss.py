"""Symmetric contrastive loss (CLIP-style), with features all-gathered across processes."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


class _GatherWithLocalGrad(torch.autograd.Function):
    """All-gather in forward; in backward, this process's slice of the gradient times world size.

    Every process computes the same global loss, so the exact gradient of its local features
    is its slice; DDP then averages parameter gradients over the W processes, hence the
    factor W. Unlike `torch.distributed.nn.all_gather` (deprecated), whose backward is another
    collective, nothing here talks to the other processes during backward, so DDP's bucketed
    all-reduce is the only communication there.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.world, ctx.n = rank, world, x.shape[0]
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n] * ctx.world


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every process (equal local batch sizes), keeping the gradient path."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _GatherWithLocalGrad.apply(x)


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
