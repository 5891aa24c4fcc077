"""The music encoder: patch embedding as an embedding-table sum, BERT-style layers, mean pooling.

The reference implementations one-hot each patch (64 x vocab) and apply one
Linear(64*vocab -> hidden). The product of a one-hot vector with that weight is the sum of
the 64 weight columns indexed by `position*vocab + id`, so `PatchEmbedding` stores those
columns as an embedding table and sums 64 rows per patch (`embedding_bag`): the same
function without building a (batch, patches, 64*vocab) tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clamp.model.config import MusicEncoderConfig


class PatchEmbedding(nn.Module):
    def __init__(self, patch_size: int, vocab_size: int, hidden_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.vocab_size = vocab_size
        self.weight = nn.Parameter(torch.empty(patch_size * vocab_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        nn.init.normal_(self.weight, std=0.02)
        self.register_buffer("offsets", torch.arange(patch_size) * vocab_size, persistent=False)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(batch, n_patches, patch_size) integer ids -> (batch, n_patches, hidden)."""
        b, n, p = patches.shape
        index = (patches.long() + self.offsets).reshape(b * n, p)
        out = F.embedding_bag(index, self.weight, mode="sum")
        return (out + self.bias).reshape(b, n, -1)

    @classmethod
    def from_linear(cls, linear: nn.Linear, patch_size: int, vocab_size: int) -> PatchEmbedding:
        """The embedding equal to a reference one-hot Linear(patch_size*vocab -> hidden)."""
        emb = cls(patch_size, vocab_size, linear.out_features)
        with torch.no_grad():
            emb.weight.copy_(linear.weight.t())
            emb.bias.copy_(linear.bias if linear.bias is not None else torch.zeros(linear.out_features))
        return emb


class EncoderLayer(nn.Module):
    """Post-LN transformer layer (BERT) with fused scaled-dot-product attention."""

    def __init__(self, cfg: MusicEncoderConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.ln1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ff = nn.Sequential(
            nn.Linear(cfg.hidden_size, cfg.intermediate_size),
            nn.GELU(),
            nn.Linear(cfg.intermediate_size, cfg.hidden_size),
        )
        self.ln2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.attn_dropout = cfg.dropout

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None, is_causal: bool = False) -> torch.Tensor:
        b, n, h = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, h // self.num_heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_dropout if self.training else 0.0, is_causal=is_causal
        )
        x = self.ln1(x + self.dropout(self.out(a.transpose(1, 2).reshape(b, n, h))))
        return self.ln2(x + self.dropout(self.ff(x)))


class MusicEncoder(nn.Module):
    """Encodes (batch, n, 64) patches, or (batch, n) characters when `input_kind == "char"`."""

    def __init__(self, cfg: MusicEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.input_kind == "patch":
            self.embed = PatchEmbedding(cfg.patch_size, cfg.vocab_size, cfg.hidden_size)
        elif cfg.input_kind == "char":
            self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        else:
            raise ValueError(f"input_kind must be 'patch' or 'char', not {cfg.input_kind!r}")
        self.positions = nn.Embedding(cfg.max_positions, cfg.hidden_size)
        self.ln = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_layers))
        self.apply(_init_weights)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """inputs: (b, n, 64) or (b, n); mask: (b, n) bool, True for real positions."""
        n = inputs.shape[1]
        if n > self.cfg.max_positions:
            raise ValueError(f"{n} positions > max_positions {self.cfg.max_positions}")
        x = self.embed(inputs) + self.positions.weight[:n]
        x = self.dropout(self.ln(x))
        attn_mask = mask[:, None, None, :] if not bool(mask.all()) else None
        for layer in self.layers:
            x = layer(x, attn_mask)
        return x

    @staticmethod
    def pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over real positions."""
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)


def patch_mask(patches: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """True for patches that are not all padding."""
    return (patches != pad_id).any(-1)
