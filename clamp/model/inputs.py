"""Model inputs from patch tensors: batching (padding) and the character sequence of the
char-level ablation. Shared by training batches and evaluation embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from clamp.abc.patching import PATCH_SIZE

__all__ = ["pad_patches", "patches_to_chars"]


def pad_patches(items: Sequence[torch.Tensor], max_patches: int) -> torch.Tensor:
    """Stack (n_i, 64) patch tensors into (b, max n, 64), truncating to `max_patches`, padding with 0."""
    n = min(max(len(x) for x in items), max_patches)
    out = torch.zeros(len(items), n, PATCH_SIZE, dtype=torch.long)
    for i, x in enumerate(items):
        x = x[:n]
        out[i, : len(x)] = x
    return out


def patches_to_chars(patches: torch.Tensor, pad_id: int, max_chars: int) -> torch.Tensor:
    """The character sequence a patch sequence encodes (for the char-level ablation): the
    non-pad ids of each patch, concatenated, cut to `max_chars`."""
    flat = patches.reshape(-1)
    chars = flat[flat != pad_id][:max_chars]
    return chars if len(chars) else torch.zeros(1, dtype=torch.long)
