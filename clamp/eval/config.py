"""`EvalConfig`: every setting of an evaluation run, typed and validated in one place."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from clamp.config import DEFAULT_MODEL_DIR

# the held-out tasks of clamp.eval.benchmarks.HELDOUT_TASKS (docs/evaluation.md)
HeldoutField = Literal[
    "rhythm", "origin", "composer", "tune_type", "key", "meter", "collection", "composer_all", "reel_hornpipe"
]
HELDOUT_FIELDS: tuple[str, ...] = get_args(HeldoutField)
# clamp.eval.controls.INPUT_CONTROLS (kept here as names so the config imports no evaluation code)
ControlName = Literal[
    "notes-only",
    "chords-added",
    "chords-removed",
    "unit-1-4",
    "unit-1-16",
    "midi-route",
    "notes-only-chords-added",
    "notes-only-unit-1-4",
]
CONTROL_NAMES: tuple[str, ...] = get_args(ControlName)


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_dir: str = str(DEFAULT_MODEL_DIR)
    benchmarks: list[str] | None = None  # None: every registered benchmark that is present; []: none
    dataset_dir: str | None = None  # a built dataset: adds its held-out (test split) tasks
    heldout_fields: list[HeldoutField] = Field(default_factory=lambda: list(HELDOUT_FIELDS))  # default: all
    probes: bool = True  # the retrieval probes over the held-out split (with dataset_dir)
    bootstrap_resamples: int = Field(1000, ge=0, description="bootstrap resamples of the 95% intervals, 0 for none")
    bootstrap_seed: int = 0
    out_dir: str = Field(
        "outputs/eval", description="folder for evaluation.json, plots and predictions (`clamp report` renders it)"
    )
    include_untrained: bool = Field(
        True, description="also evaluate the untrained twin (fresh music tower, same text tower)"
    )
    mlflow: bool = Field(True, description="log each (model, benchmark) as an MLflow run")
    experiment: str = "clamp-eval"
    tracking_dir: str | None = None
    benchmarks_dir: str | None = None  # default: CLAMP_BENCHMARKS_DIR or ../shared/benchmarks
    cache_dir: str | None = None  # MIDI conversions, shared with the build; default: the build's cache_dir
    max_items: int | None = Field(None, ge=1, description="an evenly spaced subset of each benchmark (quick runs)")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")  # auto: the GPU when there is one
    # the split the held-out tasks and probes come from: "test" for the quality report, "valid" for
    # decisions (retraining's promotion, recipe choices), so the test split never steers anything
    heldout_split: Literal["test", "valid"] = "test"
    # the input controls (clamp.eval.controls.INPUT_CONTROLS) scored for the trained model
    controls: list[ControlName] = Field(default_factory=lambda: list(CONTROL_NAMES))
    header_baseline: bool = True  # the header-only logistic regression, fit on the train split
    # "fair": fresh music tower beside the pretrained text tower; "random": both towers random
    twin: Literal["fair", "random", "both"] = "fair"
    # the tasks of the held-out collection (split `heldout`), when the dataset has one
    unseen_fields: list[HeldoutField] = Field(default_factory=lambda: ["tune_type", "key", "meter", "reel_hornpipe"])
