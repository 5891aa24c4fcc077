"""`TrainConfig`: every setting of a training run, typed and validated in one place.

Model defaults (text model, projection size, temperature) come from `clamp.model.config`,
so the CLI, the flows and the library cannot disagree. Precedence: defaults < a YAML/JSON
file (`clamp train --config`) < options the user gave.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from clamp.config import DEFAULT_DATASET_DIR, BuildConfig, load_config
from clamp.model.config import DEFAULT_TEXT_MODEL, ClampConfig, PresetName

# The peak learning rate when none is given: MMM's randomly initialised encoder and decoder
# take a larger step than contrastive training of a pretrained text tower.
DEFAULT_LR: dict[str, float] = {"mmm": 1e-3, "clamp": 3e-4}

# Settings that define a run: a checkpoint is resumed only by a run with the same values.
RUN_IDENTITY = (
    "objective",
    "preset",
    "input_kind",
    "text_model",
    "init_music_from",
    "init_from",
    "text_dropout",
    "learnable_temperature",
    "projection_dim",
    "max_patches",
    "steps",
    "batch_size",
    "grad_accum",
    "lr",
    "text_lr",
    "weight_decay",
    "warmup_steps",
    "min_lr_ratio",
    "max_grad_norm",
    "precision",
    "seed",
    "group_by_length",
    "text_tower",
    "shared_text_positives",
    "text_views",
    "header_dropout",
    "midi_view",
    "chord_view",
)

_MODEL_DEFAULTS = ClampConfig.model_fields
_BUILD_DEFAULTS = BuildConfig.model_fields


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    objective: Literal["mmm", "clamp"] = Field(
        "clamp", description="mmm (masked music pre-training) or clamp (contrastive)"
    )
    dataset_dir: str = Field(str(DEFAULT_DATASET_DIR), description="a built dataset folder")
    output_dir: str = Field("outputs/run", description="run folder: checkpoints, metrics, final model")
    preset: PresetName = Field("small", description="music encoder size: " + " | ".join(get_args(PresetName)))
    input_kind: Literal["patch", "char"] = Field("patch", description="patch (bar patching) or char (ablation)")
    text_model: str = Field(DEFAULT_TEXT_MODEL, description="text encoder name or local folder")
    init_music_from: str | None = Field(None, description="an MMM model folder to start the music encoder from")
    # retraining a champion, or fine-tuning an imported checkpoint
    init_from: str | None = Field(
        None,
        description="a model folder to continue training (ours, or one made by "
        "`clamp import`): its architecture, not the preset's",
    )
    text_dropout: bool = Field(True, description="text dropout: a random subset of a text's parts each step")
    # "locked": the pretrained text encoder is frozen and its features cached (LiT; the CPU
    # recipe); "train": it is trained jointly at `text_lr` (the paper's CLaMP)
    text_tower: Literal["train", "locked"] = Field(
        "locked",
        description="locked (frozen pretrained text encoder, cached features; the CPU recipe) or train (the paper's)",
    )
    # identical texts in a batch are positives for each other's music (the short key and meter
    # captions repeat across tunes); False: the paper's one positive per text
    shared_text_positives: bool = False
    # texts drawn per tune and step with a locked tower (each a full contrastive batch against the
    # same music; the loss is their mean): more text signal per music forward, at almost no cost
    text_views: int = Field(1, ge=1, le=16, description="texts per tune and step with a locked tower")
    # the share of tunes per step whose K:, M: and L: header patches (and voice names) are left out
    # of the music input, so the model must read key, meter and rhythm from the notes
    # (docs/model-and-losses.md, "Header dropout")
    header_dropout: float = Field(
        0.0, ge=0, le=1, description="share of tunes per step read without K:, M:, L: and voice names"
    )
    # the share of tunes per step read as their MIDI-route view (abc2midi -> midi2abc, stored by a
    # build with `midi_views`): the notation a user's MIDI file arrives in, against the same texts
    midi_view: float = Field(
        0.0, ge=0, le=1, description="share of tunes per step read through the MIDI route (a --midi-views build)"
    )
    # the share of tunes per step read with a chord symbol per bar (stored by an as-written build
    # with `chord_views`): lead sheets carry chords, and the corpus almost never does
    chord_view: float = Field(
        0.0, ge=0, le=1, description="share of tunes per step read with a chord symbol per bar (a --chord-views build)"
    )
    learnable_temperature: bool = _MODEL_DEFAULTS["learnable_temperature"].default
    projection_dim: int = Field(_MODEL_DEFAULTS["projection_dim"].default, ge=1)
    # the dataset's own max_patches is what its tunes were cut to; a run that reads fewer or more
    # positions says so (clamp.train.run.music_config)
    max_patches: int | None = Field(
        None,
        ge=2,
        description="patches the music encoder reads per tune",
        json_schema_extra={"default_text": "the preset's max_positions"},
    )
    steps: int = Field(200, ge=1, description="optimizer steps")
    batch_size: int = Field(32, ge=1, description="batch size per process")
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    lr: float = Field(
        None,
        gt=0,
        description="peak learning rate",  # type: ignore[assignment]
        json_schema_extra={"default_text": ", ".join(f"{v:g} for {k}" for k, v in DEFAULT_LR.items())},
    )
    text_lr: float = Field(2e-5, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(20, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    max_grad_norm: float = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto (bf16 on GPU) | fp32 | bf16")
    compile: bool = Field(False, description="torch.compile the encoders (faster on GPU after the first steps)")
    # batches of similar-length tunes (less padding); None: on for MMM, off for contrastive,
    # whose in-batch negatives would otherwise all be of one length
    group_by_length: bool | None = Field(
        None,
        description="batches of similar-length tunes, less padding",
        json_schema_extra={"default_text": "on for mmm, off for clamp"},
    )
    checkpoint_every: int = Field(50, ge=0, description="checkpoint interval in steps, 0 for none")
    log_every: int = Field(10, ge=1)
    # every N steps: text-to-music MRR, alignment and uniformity on the valid split (0: never)
    eval_every: int = Field(
        0, ge=0, description="validate (text-to-music MRR on the valid split) every N steps, 0 never"
    )
    keep_best: bool = Field(True, description="with --eval-every: save the best-validated model, not the last")
    early_stopping_patience: int | None = Field(None, ge=1, description="stop after N validations without a better MRR")
    # a wall-clock budget: stop (validating first, so the best model is kept) once training has
    # run this long; the schedule is still planned for `steps`, so size `steps` to the budget
    max_minutes: float | None = Field(
        None,
        gt=0,
        description="wall-clock budget: validate and stop once training has "
        "run this long (the schedule still plans --steps)",
    )
    progress: Literal["auto", "bar", "lines", "off"] = Field(
        "auto", description="auto (a bar on a terminal, else lines) | bar | lines | off"
    )
    cache_dir: str = str(_BUILD_DEFAULTS["cache_dir"].default)  # cached text features of a locked tower
    seed: int = Field(0, description="random seed")
    num_workers: int = Field(0, ge=0, description="data loader worker processes")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto | cpu | cuda | cuda:N")
    mlflow: bool = Field(True, description="log to MLflow")
    experiment: str = "clamp"
    run_name: str | None = None
    register_as: str | None = Field(None, description="register the final model under this name")
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
