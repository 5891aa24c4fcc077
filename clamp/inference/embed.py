"""Embedding music and text with a trained model, in batches."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from clamp.abc.patching import get_patch_mode
from clamp.model.inputs import pad_patches, patches_to_chars


def as_model_reads(model, abc: str) -> str:
    """A tune in the notation the model was trained on (`MusicEncoderConfig.notation`)."""
    if getattr(model.config.music, "notation", "as-written") == "canonical":
        from clamp.abc.notation import canonical_abc

        return canonical_abc(abc)
    return abc


def music_inputs(model, abc: str, max_patches: int = 4096, after: Callable[[str], str] | None = None) -> torch.Tensor:
    """The model's input for one tune: (n, 64) patches (all of them; windows come later).
    `after` changes the tune once it is in the model's notation (the evaluation's notes-only
    control drops the header lines the canonical form has just rewritten)."""
    mode = get_patch_mode(model.config.music.patch_mode)
    text = as_model_reads(model, abc)
    if after is not None:
        text = after(text)
    data = mode.patch_bytes(mode.prepare(text), max_patches)
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).reshape(-1, 64).astype(np.int64))


@torch.no_grad()
def embed_music(
    model,
    abcs: Sequence[str],
    batch_size: int = 32,
    progress: Iterable | None = None,
    after: Callable[[str], str] | None = None,
) -> np.ndarray:
    """L2-normalized embeddings; tunes longer than the model's window are embedded in windows
    and averaged by window length (docs/model-and-losses.md)."""
    model.eval()
    cfg = model.config.music
    window = cfg.max_positions
    out = np.zeros((len(abcs), model.config.projection_dim), dtype=np.float32)
    pieces: list[tuple[int, torch.Tensor]] = []  # (tune index, window)
    for i, abc in enumerate(abcs):
        patches = music_inputs(model, abc, after=after)
        if cfg.input_kind == "char":
            chars = patches_to_chars(patches, cfg.pad_id, 10**9)
            pieces += [(i, chars[s : s + window]) for s in range(0, len(chars), window)]
        else:
            pieces += [(i, patches[s : s + window]) for s in range(0, len(patches), window)]
    sums = np.zeros_like(out)
    weights = np.zeros(len(abcs), dtype=np.float32)
    device = next(model.parameters()).device
    for start in range(0, len(pieces), batch_size):
        batch = pieces[start : start + batch_size]
        if cfg.input_kind == "char":
            x = torch.nn.utils.rnn.pad_sequence([w for _, w in batch], batch_first=True, padding_value=cfg.pad_id)
        else:
            x = pad_patches([w for _, w in batch], window)
        feats = model.encode_music(x.to(device)).float().cpu().numpy()
        for (i, w), f in zip(batch, feats, strict=True):
            sums[i] += len(w) * f
            weights[i] += len(w)
        if progress is not None:
            progress.update(len(batch))  # type: ignore[attr-defined]
    out = sums / np.maximum(weights, 1)[:, None]
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


@torch.no_grad()
def embed_text(model, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        enc = model.tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=model.config.text_max_length,
            return_tensors="pt",
        ).to(device)
        out.append(model.encode_text(enc["input_ids"], enc["attention_mask"]).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.projection_dim), dtype=np.float32)
