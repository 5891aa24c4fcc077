"""The joint CLaMP model: music encoder + text encoder, projections, temperature, loss.

Saved as a folder: `config.json`, `model.safetensors`, the text model's `text_config.json`
and its tokenizer in `tokenizer/`. Loading builds the modules from the configs and reads
tensors from safetensors: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from clamp.model.config import ClampConfig
from clamp.model.loss import contrastive_loss
from clamp.model.music_encoder import MusicEncoder, patch_mask
from clamp.model.text import load_text_encoder, mean_pool, text_hidden_size

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TEXT_CONFIG_NAME = "text_config.json"
TOKENIZER_DIR = "tokenizer"
MAX_LOGIT_SCALE = 100.0


class ClampOutput(NamedTuple):
    """A named tuple, so DistributedDataParallel finds the tensors it must hook."""

    loss: torch.Tensor
    logits: torch.Tensor
    music: torch.Tensor
    text: torch.Tensor


class ClampModel(nn.Module):
    def __init__(self, config: ClampConfig, text_model: nn.Module, tokenizer=None) -> None:
        super().__init__()
        self.config = config
        self.music_encoder = MusicEncoder(config.music)
        if getattr(text_model, "pooler", None) is not None:
            # Mean pooling replaces the [CLS] pooler; an unused pooler would leave DDP waiting
            # for gradients that never come (and skip the all-reduce of its bucket).
            text_model.pooler = None
        self.text_encoder = text_model
        self.tokenizer = tokenizer
        self.music_proj = nn.Linear(config.music.hidden_size, config.projection_dim)
        self.text_proj = nn.Linear(text_hidden_size(text_model), config.projection_dim)
        init = math.log(1 / config.init_temperature)
        self.logit_scale = nn.Parameter(torch.tensor(init), requires_grad=config.learnable_temperature)

    @classmethod
    def from_config(cls, config: ClampConfig) -> ClampModel:
        """A new model whose text tower starts from the pretrained `config.text_model`."""
        text_model, tokenizer = load_text_encoder(config.text_model)
        return cls(config, text_model, tokenizer)

    # --- towers -------------------------------------------------------------------------
    def encode_music(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(b, n, 64) patches (or (b, n) chars) -> L2-normalized (b, projection_dim)."""
        if mask is None:
            mask = (
                patch_mask(inputs, self.config.music.pad_id)
                if inputs.dim() == 3
                else inputs != self.config.music.pad_id
            )
        hidden = self.music_encoder(inputs, mask)
        return F.normalize(self.music_proj(MusicEncoder.pool(hidden, mask)), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.project_text(mean_pool(hidden, attention_mask))

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def project_text(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled text-tower features (e.g. cached from a locked tower) -> L2-normalized (b, projection_dim)."""
        return F.normalize(self.text_proj(pooled.to(self.text_proj.weight.dtype)), dim=-1)

    def forward(
        self,
        music: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        text_features: torch.Tensor | None = None,
        text_ids: torch.Tensor | None = None,
    ) -> ClampOutput:
        """Loss of a batch. Text comes as tokens (the tower runs) or as pooled `text_features`
        of a locked tower (only the projection runs). `text_ids` (equal for identical texts)
        make identical texts positives for each other's music (`shared_text_targets`)."""
        m = self.encode_music(music)
        if text_features is not None and text_features.dim() == 3:
            # (b, views, d): several texts per tune (cheap with a locked tower); the loss is the
            # mean over views, each view a full contrastive batch against the same music
            texts = [self.project_text(text_features[:, v]) for v in range(text_features.shape[1])]
            outs = [
                contrastive_loss(m, t, self.scale(), None if text_ids is None else text_ids[:, v])
                for v, t in enumerate(texts)
            ]
            return ClampOutput(torch.stack([loss for loss, _ in outs]).mean(), outs[0][1], m, texts[0])
        if text_features is not None:
            t = self.project_text(text_features)
        else:
            if input_ids is None or attention_mask is None:
                raise ValueError("forward needs input_ids and attention_mask, or text_features")
            t = self.encode_text(input_ids, attention_mask)
        loss, logits = contrastive_loss(m, t, self.scale(), text_ids)
        return ClampOutput(loss, logits, m, t)

    # --- persistence ----------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        (path / TEXT_CONFIG_NAME).write_text(self.text_encoder.config.to_json_string())
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(path / WEIGHTS_NAME), metadata={"format": "pt"})
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(path / TOKENIZER_DIR))

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str = "cpu") -> ClampModel:
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        path = Path(path)
        if not (path / CONFIG_NAME).is_file() or not (path / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(
                f"model folder not found or incomplete: {path} (needs {CONFIG_NAME} and {WEIGHTS_NAME})"
            )
        config = ClampConfig.from_dict(json.loads((path / CONFIG_NAME).read_text()))
        text_cfg = AutoConfig.for_model(**json.loads((path / TEXT_CONFIG_NAME).read_text()))
        text_model = AutoModel.from_config(text_cfg)
        tokenizer = None
        if (path / TOKENIZER_DIR).is_dir():
            tokenizer = AutoTokenizer.from_pretrained(str(path / TOKENIZER_DIR), local_files_only=True)
        model = cls(config, text_model, tokenizer)
        model.load_state_dict(load_file(str(path / WEIGHTS_NAME), device=map_location))
        model.source_dir = str(path.resolve())
        return model
