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


def gather_ids(ids: torch.Tensor) -> torch.Tensor:
    """Concatenate integer ids from every process (no gradient)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return ids
    parts = [torch.empty_like(ids) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, ids.contiguous())
    return torch.cat(parts, 0)


def shared_text_targets(text_ids: torch.Tensor) -> torch.Tensor:
    """(n, n) soft targets: row i spreads its mass evenly over every j whose text is identical
    to text i (always including i itself).

    Why: the short captions ("In D major.", "In 6/8 time.") repeat across tunes, so a batch of 64
    often holds the same sentence for several tunes. One-hot targets would then call the other
    D-major tunes wrong answers for "In D major." and push the model to forget the key. The
    matrix is symmetric, so it serves both directions.
    """
    same = (text_ids[:, None] == text_ids[None, :]).float()
    return same / same.sum(1, keepdim=True)


def contrastive_loss(
    music: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor, text_ids: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of music->text and text->music cross-entropy over the global batch.

    `music`, `text`: (local batch, dim), L2-normalized. `text_ids`: (local batch,) integers
    that are equal exactly when two texts are identical; given, identical texts are positives
    for each other's music (`shared_text_targets`); None, the paper's one positive per row.
    Returns (loss, global logits).
    """
    music_all = gather_with_grad(music)
    text_all = gather_with_grad(text)
    logits = (logit_scale * music_all @ text_all.t()).float()
    if text_ids is None:
        labels = torch.arange(logits.shape[0], device=logits.device)
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        return loss, logits
    targets = shared_text_targets(gather_ids(text_ids.to(logits.device)))
    loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2
    return loss, logits
