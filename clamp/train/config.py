"""`TrainConfig`: every setting of a training run, typed and validated in one place.

Model defaults (text model, projection size, temperature) come from `clamp.model.config`,
so the CLI, the flows and the library cannot disagree. Precedence: defaults < a YAML/JSON
file (`clamp train --config`) < options the user gave.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from clamp.config import DEFAULT_DATASET_DIR, BuildConfig, load_config
from clamp.model.config import DEFAULT_TEXT_MODEL, ClampConfig, PresetName

# The peak learning rate when none is given: MMM's randomly initialised encoder and decoder
# take a larger step than contrastive training of a pretrained text tower.
DEFAULT_LR: dict[str, float] = {"mmm": 1e-3, "clamp": 3e-4}

# Settings that define a run: a checkpoint is resumed only by a run with the same values.
RUN_IDENTITY = (
    "objective", "preset", "input_kind", "text_model", "init_music_from", "init_from", "text_dropout", "learnable_temperature",
    "projection_dim", "max_patches", "steps", "batch_size", "grad_accum", "lr", "text_lr", "weight_decay",
    "warmup_steps", "min_lr_ratio", "max_grad_norm", "precision", "seed", "group_by_length", "text_tower",
    "shared_text_positives", "text_views", "header_dropout",
)

_MODEL_DEFAULTS = ClampConfig.model_fields
_BUILD_DEFAULTS = BuildConfig.model_fields


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    objective: Literal["mmm", "clamp"] = "clamp"
    dataset_dir: str = str(DEFAULT_DATASET_DIR)
    output_dir: str = "outputs/run"
    preset: PresetName = "small"
    input_kind: Literal["patch", "char"] = "patch"
    text_model: str = DEFAULT_TEXT_MODEL
    init_music_from: str | None = None  # an MMM output folder: start the music encoder from it
    init_from: str | None = None  # a CLaMP model folder: continue training it (retraining a champion)
    text_dropout: bool = True
    # "locked": the pretrained text encoder is frozen and its features cached (LiT; the CPU
    # recipe); "train": it is trained jointly at `text_lr` (the paper's CLaMP)
    text_tower: Literal["train", "locked"] = "locked"
    # identical texts in a batch are positives for each other's music (the short key and meter
    # captions repeat across tunes); False: the paper's one positive per text
    shared_text_positives: bool = False
    # texts drawn per tune and step with a locked tower (each a full contrastive batch against the
    # same music; the loss is their mean): more text signal per music forward, at almost no cost
    text_views: int = Field(1, ge=1, le=16)
    # the share of tunes per step whose K:, M: and L: header patches (and voice names) are left out
    # of the music input, so the model must read key, meter and rhythm from the notes
    # (docs/model-and-losses.md, "Header dropout")
    header_dropout: float = Field(0.0, ge=0, le=1)
    learnable_temperature: bool = _MODEL_DEFAULTS["learnable_temperature"].default
    projection_dim: int = Field(_MODEL_DEFAULTS["projection_dim"].default, ge=1)
    max_patches: int | None = Field(None, ge=2)  # default: the preset's max_positions
    steps: int = Field(200, ge=1)
    batch_size: int = Field(32, ge=1)  # per process
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(None, gt=0)  # default: DEFAULT_LR[objective]  # type: ignore[assignment]
    text_lr: float = Field(2e-5, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(20, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    max_grad_norm: float = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False  # torch.compile the towers (worth it on GPU; the first steps compile)
    # batches of similar-length tunes (less padding); None: on for MMM, off for contrastive,
    # whose in-batch negatives would otherwise all be of one length
    group_by_length: bool | None = None
    checkpoint_every: int = Field(50, ge=0)  # 0: no intermediate checkpoints
    log_every: int = Field(10, ge=1)
    # every N steps: text-to-music MRR, alignment and uniformity on the valid split (0: never)
    eval_every: int = Field(0, ge=0)
    keep_best: bool = True  # with eval_every: the saved model is the one with the best valid MRR
    early_stopping_patience: int | None = Field(None, ge=1)  # stop after N evaluations without a better MRR
    # a wall-clock budget: stop (validating first, so the best model is kept) once training has
    # run this long; the schedule is still planned for `steps`, so size `steps` to the budget
    max_minutes: float | None = Field(None, gt=0)
    progress: Literal["auto", "bar", "lines", "off"] = "auto"  # auto: a bar on a terminal, else lines
    cache_dir: str = str(_BUILD_DEFAULTS["cache_dir"].default)  # cached text features of a locked tower
    seed: int = 0
    num_workers: int = Field(0, ge=0)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    mlflow: bool = True
    experiment: str = "clamp"
    run_name: str | None = None
    register_as: str | None = None
    tracking_dir: str | None = None
    # at the end of the run, how long to wait for an unreachable MLflow server before the unsent
    # records go to <output_dir>/mlflow-pending.jsonl (for `clamp mlflow-replay`)
    mlflow_flush_seconds: float = Field(30.0, ge=0)
    stop_after: int | None = Field(None, ge=0)  # stop (as if killed) after this many steps; for resume tests

    @model_validator(mode="before")
    @classmethod
    def _objective_lr(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("lr") is None:
            data = {**data, "lr": DEFAULT_LR.get(data.get("objective", "clamp"), DEFAULT_LR["clamp"])}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.input_kind == "char" and self.init_music_from is not None:
            raise ValueError("init_music_from needs the patch encoder (MMM pre-trains patches, not characters)")
        if self.text_views > 1 and self.text_tower != "locked":
            raise ValueError("text_views > 1 needs text_tower: locked (views are free only with cached text features)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> TrainConfig:
        """Defaults < the file at `path` < `overrides` (only what the user gave; None is dropped)."""
        return load_config(cls, path, **overrides)
