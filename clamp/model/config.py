"""Model configurations and presets (DESIGN §6)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from clamp.abc.patching import PATCH_SIZE, get_patch_mode


@dataclass
class MusicEncoderConfig:
    """A BERT-style encoder over bar patches (or over characters for the ablation)."""

    patch_mode: str = "clamp-v1"
    input_kind: str = "patch"  # "patch": one position per bar patch; "char": one per character (ablation)
    hidden_size: int = 768
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 3072
    max_positions: int = 512
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    patch_size: int = PATCH_SIZE
    # MMM decoder (character level, conditioned on one patch's encoder output)
    decoder_layers: int = 3
    decoder_hidden_size: int = 768
    decoder_heads: int = 12

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
        return asdict(self)


PRESETS: dict[str, dict] = {
    # tests: a few thousand parameters
    "tiny": dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=64,
                 decoder_layers=1, decoder_hidden_size=32, decoder_heads=2),
    # trains in minutes on a laptop CPU
    "small": dict(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024, max_positions=128,
                  decoder_layers=1, decoder_hidden_size=128, decoder_heads=4),
    # the paper's CLaMP-S/512
    "clamp-s-512": dict(hidden_size=768, num_layers=6, num_heads=12, intermediate_size=3072, max_positions=512),
    # the CLaMP 2 M3 encoder
    "m3-12l": dict(patch_mode="m3", hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072,
                   max_positions=512),
}


def music_preset(name: str, **overrides) -> MusicEncoderConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return MusicEncoderConfig(**{**PRESETS[name], **overrides})


@dataclass
class ClampConfig:
    """The joint model: a music encoder, a text encoder and their projections."""

    music: MusicEncoderConfig = field(default_factory=MusicEncoderConfig)
    text_model: str = "all-MiniLM-L6-v2"  # name or local path; see clamp.model.text
    projection_dim: int = 768
    learnable_temperature: bool = True
    init_temperature: float = 0.07
    text_max_length: int = 128

    def to_dict(self) -> dict:
        return {**asdict(self), "music": self.music.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> ClampConfig:
        return cls(**{**data, "music": MusicEncoderConfig(**data["music"])})
