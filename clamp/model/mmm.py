"""Masked music modelling (MMM, the M3 objective; docs/model-and-losses.md).

Per sample, ceil(45%) of the real patches are selected. With p 0.8 every selected patch is
replaced by a patch of mask ids, with p 0.1 the characters inside each selected patch are
shuffled, with p 0.1 they are left as they are. A small causal character decoder, conditioned
on each selected patch's encoder output, reconstructs the original patch; the loss covers
the selected patches only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from clamp.model.config import MusicEncoderConfig
from clamp.model.music_encoder import EncoderLayer, MusicEncoder, _init_weights, patch_mask

MASK_FRACTION = 0.45


@dataclass
class MaskedBatch:
    inputs: torch.Tensor  # (b, n, 64) corrupted patches
    selected: torch.Tensor  # (b, n) bool
    mode: torch.Tensor  # (b,) 0 masked, 1 shuffled, 2 unchanged


def mask_patches(
    patches: torch.Tensor,
    mask_id: int,
    pad_id: int = 0,
    generator: torch.Generator | None = None,
    fraction: float = MASK_FRACTION,
) -> MaskedBatch:
    """Corrupt a batch of patches for MMM (on the patches' device, no Python loop over patches)."""
    b, n, p = patches.shape
    device = patches.device
    real = patch_mask(patches, pad_id)
    counts = real.sum(1)
    k = torch.ceil(counts.float() * fraction).long()
    scores = torch.rand(b, n, generator=generator, device="cpu").to(device)
    scores = scores.masked_fill(~real, 2.0)  # padding is never selected
    ranks = scores.argsort(1).argsort(1)
    selected = ranks < k[:, None]
    u = torch.rand(b, generator=generator, device="cpu").to(device)
    mode = torch.where(u < 0.8, 0, torch.where(u < 0.9, 1, 2))
    inputs = patches.clone()
    masked = selected & (mode == 0)[:, None]
    inputs[masked] = mask_id
    shuffle = selected & (mode == 1)[:, None]
    if shuffle.any():
        rows = inputs[shuffle]  # (m, 64)
        keys = torch.rand(rows.shape, generator=generator, device="cpu").to(device)
        keys = keys.masked_fill(rows == pad_id, 2.0)  # keep padding at the end
        order = keys.argsort(1)
        inputs[shuffle] = rows.gather(1, order)
    return MaskedBatch(inputs, selected, mode)


class CharDecoder(nn.Module):
    """Causal character decoder: [patch feature, c0, ..., c62] -> c0 ... c63."""

    def __init__(self, cfg: MusicEncoderConfig) -> None:
        super().__init__()
        dec_cfg = MusicEncoderConfig(
            patch_mode=cfg.patch_mode,
            hidden_size=cfg.decoder_hidden_size,
            num_heads=cfg.decoder_heads,
            intermediate_size=4 * cfg.decoder_hidden_size,
            num_layers=cfg.decoder_layers,
            dropout=cfg.dropout,
        )
        self.project = nn.Linear(cfg.hidden_size, cfg.decoder_hidden_size)
        self.chars = nn.Embedding(cfg.vocab_size, cfg.decoder_hidden_size)
        self.positions = nn.Embedding(cfg.patch_size, cfg.decoder_hidden_size)
        self.layers = nn.ModuleList(EncoderLayer(dec_cfg) for _ in range(cfg.decoder_layers))
        self.head = nn.Linear(cfg.decoder_hidden_size, cfg.vocab_size)
        self.apply(_init_weights)

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """features (m, hidden), targets (m, L) -> logits (m, L, vocab); L <= 64."""
        x = torch.cat([self.project(features)[:, None], self.chars(targets[:, :-1])], 1)
        x = x + self.positions.weight[: x.shape[1]]
        for layer in self.layers:
            # is_causal instead of a mask tensor: lets SDPA pick the flash kernel on GPU
            x = layer(x, None, is_causal=True)
        return self.head(x)


class MMMOutput(NamedTuple):
    """A named tuple, so DistributedDataParallel finds the tensors it must hook."""

    loss: torch.Tensor
    accuracy: torch.Tensor  # share of target characters reconstructed (teacher forcing, argmax)
    n_selected: int
    decoded_positions: int  # character positions run through the decoder (for FLOP counts)


# On the CPU, selected patches are decoded in groups by length, each group cut to its longest
# patch rounded up to a multiple of this: ABC bars average ~13 of 64 characters, and positions
# past a patch's end only predict padding, which the loss ignores. Measured: 2.2x faster MMM
# step on the CPU (`small`), but 5x slower on an H100 (a new set of shapes every step; the
# cause is not established yet; per-shape set-up cost is suspected), so CUDA decodes at full length.
DECODE_LENGTH_STEP = 8


def decode_groups(targets: torch.Tensor, pad_id: int) -> list[tuple[torch.Tensor | None, int]]:
    """(rows, length) pairs covering every selected patch once; rows None means all rows."""
    full = targets.shape[1]
    if targets.device.type != "cpu" or len(targets) == 0:
        return [(None, full)]
    real = targets != pad_id
    ends = (real * torch.arange(1, full + 1)).amax(1)
    step = DECODE_LENGTH_STEP
    group = ((ends + step - 1) // step).clamp_min(1)
    order = group.argsort()
    pairs, start = [], 0
    for g, count in enumerate(torch.bincount(group, minlength=full // step + 1).tolist()):
        if count:
            pairs.append((order[start : start + count], min(g * step, full)))
            start += count
    return pairs


class MMMModel(nn.Module):
    """Music encoder + character decoder trained by masked music modelling."""

    def __init__(self, cfg: MusicEncoderConfig) -> None:
        super().__init__()
        if cfg.input_kind != "patch":
            raise ValueError("MMM pre-training needs the patch encoder")
        self.cfg = cfg
        self.encoder = MusicEncoder(cfg)
        self.decoder = CharDecoder(cfg)

    def forward(self, patches: torch.Tensor, generator: torch.Generator | None = None) -> MMMOutput:
        cfg = self.cfg
        mask = patch_mask(patches, cfg.pad_id)
        batch = mask_patches(patches, cfg.mask_id, cfg.pad_id, generator)
        hidden = self.encoder(batch.inputs, mask)
        features = hidden[batch.selected]
        targets = patches[batch.selected].long()
        real = targets != cfg.pad_id
        # the decoder is causal, so cutting a patch after its last real character changes no
        # logit that the loss reads: the loss equals full-length decoding exactly
        loss_sum = hidden.new_zeros((), dtype=torch.float32)
        correct = hidden.new_zeros((), dtype=torch.float32)
        decoded = 0
        for rows, length in decode_groups(targets, cfg.pad_id):
            feats, t = (features, targets) if rows is None else (features[rows], targets[rows, :length])
            logits = self.decoder(feats, t).float()
            flat_logits, flat_targets = logits.reshape(-1, logits.shape[-1]), t.reshape(-1)
            loss_sum = loss_sum + F.cross_entropy(flat_logits, flat_targets, ignore_index=cfg.pad_id, reduction="sum")
            with torch.no_grad():
                keep = flat_targets != cfg.pad_id
                correct = correct + ((flat_logits.argmax(-1) == flat_targets) & keep).sum()
            decoded += len(t) * length
        n_real = real.sum().clamp_min(1)
        return MMMOutput(loss_sum / n_real, correct / n_real, int(features.shape[0]), decoded)
