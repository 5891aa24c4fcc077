"""All configuration in one typed place.

`BuildConfig` is read from (in increasing priority) defaults, a YAML/JSON file, environment
variables `CLAMP_<FIELD>` and the options the user gave (`BuildConfig.load`). Training,
model, evaluation and stack settings live in `clamp.train.config`, `clamp.model.config`,
`clamp.eval.config` and `infra.stack`; all are pydantic models, so a bad value names its field
(docs/configuration.md).
"""

from __future__ import annotations

import hashlib
import json
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from clamp.errors import ConfigError, UserError, error_line

__all__ = [
    "BuildConfig",
    "ConfigError",
    "ConversionConfig",
    "SourceSpec",
    "UserError",
    "error_line",
    "load_config",
    "read_config_file",
    "validated",
]

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_benchmarks_dir() -> Path | None:
    """`CLAMP_BENCHMARKS_DIR`, else `../shared/benchmarks` beside the checkout when it exists."""
    env = os.environ.get("CLAMP_BENCHMARKS_DIR")
    if env:
        return Path(env)
    candidate = REPO_ROOT.parent / "shared" / "benchmarks"
    return candidate if candidate.is_dir() else None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML or JSON config file; a missing or malformed file is a `ConfigError`."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    is_yaml = path.suffix in (".yaml", ".yml")
    try:
        data = (yaml.safe_load(text) or {}) if is_yaml else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        what = "YAML" if is_yaml else "JSON"
        raise ConfigError(f"config file {path} is not valid {what}: {' '.join(str(exc).split())[:200]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, not {type(data).__name__}")
    return data


M = TypeVar("M", bound=BaseModel)


def validated(cls: type[M], data: dict[str, Any]) -> M:
    """`cls(**data)`, with a validation failure turned into a `ConfigError` naming the field."""
    try:
        return cls(**data)
    except ValidationError as exc:
        raise ConfigError(error_line(exc)) from exc


def load_config(cls: type[M], path: str | Path | None = None, **overrides: Any) -> M:
    """Defaults < the file at `path` < `overrides`, for configs without environment variables
    (`TrainConfig`, `AblationConfig`). Only the options the user actually gave belong in
    `overrides`: a `None` value is dropped, so a command-line default never shadows the file."""
    data = read_config_file(path) if path else {}
    return validated(cls, {**data, **{k: v for k, v in overrides.items() if v is not None}})


# Where the README's main job puts things; every default path below derives from these.
DEFAULT_DATASET_NAME = "music21-corpus"
DEFAULT_DATASETS_DIR = Path("data/datasets")
DEFAULT_DATASET_DIR = DEFAULT_DATASETS_DIR / DEFAULT_DATASET_NAME


def run_dir(dataset_name: str = DEFAULT_DATASET_NAME) -> Path:
    """`outputs/<dataset>`: the main job's models (`mmm-small/`, `clamp-small/`) and evaluation (`eval/`)."""
    return Path("outputs") / dataset_name


DEFAULT_MODEL_DIR = run_dir() / "clamp-small" / "model"


class SourceSpec(BaseModel):
    """One source of raw records."""

    kind: Literal["music21", "local", "web", "manifest"]
    # music21
    formats: list[str] = Field(default_factory=lambda: ["abc", "humdrum", "musicxml", "mxl"])
    path_filter: str | None = None
    # local: a folder; manifest: a .parquet, .csv or .jsonl file (clamp/data/sources/manifest.py)
    path: str | None = None
    # manifest: the columns holding a row's texts (default: caption, text, title, description)
    text_columns: list[str] | None = None
    # manifest and web: hosts fetched at once (default 16; each host one request at a time)
    concurrency: int | None = Field(None, ge=1)
    license: str = ""
    # web
    seeds: list[str] = Field(default_factory=list)
    allowed_hosts: list[str] | None = None
    max_depth: int = 2
    per_host_delay_s: float = 1.0
    max_pages: int = 10_000
    # web: the crawl split into this many shares of the hosts, crawled in parallel by the
    # build's `crawl` stage (Dask workers under Prefect, processes under `clamp build`)
    shares: int = Field(1, ge=1)
    # any
    limit: int | None = None

    @field_validator("path")
    @classmethod
    def _expand(cls, v: str | None) -> str | None:
        return os.path.expanduser(v) if v else v


class ConversionConfig(BaseSettings):
    """The converter pool of a process that converts scores (`clamp.abc.pool`): read from
    `CLAMP_CONVERSION_<FIELD>` environment variables when the pool starts, so every process of a
    build (Dask workers included) sizes its own pool the same way (docs/architecture.md)."""

    model_config = SettingsConfigDict(env_prefix="CLAMP_CONVERSION_", extra="ignore")

    workers: int = Field(1, ge=1)  # converter processes per calling process
    max_items_per_worker: int = Field(1000, ge=1)  # a worker is replaced after this many scores
    max_rss_mb: int = Field(1024, ge=64)  # ... or when its resident memory is above this after a score
    memory_limit_mb: int = Field(4096, ge=0)  # address space one score may add (RLIMIT_AS); 0: no cap

    @classmethod
    def from_env(cls) -> ConversionConfig:
        """The settings from the environment; a bad value is a `ConfigError` naming the field."""
        return validated(cls, {})


class BuildConfig(BaseSettings):
    """Configuration of the build-dataset pipeline."""

    model_config = SettingsConfigDict(env_prefix="CLAMP_", extra="forbid")

    name: str = Field(DEFAULT_DATASET_NAME, description="dataset name: its folder under output_dir")
    sources: list[SourceSpec] = Field(default_factory=lambda: [SourceSpec(kind="music21")])
    output_dir: Path = Field(DEFAULT_DATASETS_DIR, description="where datasets are written")
    cache_dir: Path = Path(".clamp/cache")
    patch_mode: Literal["clamp-v1", "m3"] = Field("clamp-v1", description="bar patching: clamp-v1 or m3")
    # "canonical": tunes are patched in one notation (clamp.abc.notation.canonical_abc: L:1/8,
    # meters as fractions, no chord symbols or annotations), so the same music gives the same
    # patches however it was written; "as-written" reproduces the reference patchers exactly
    notation: Literal["as-written", "canonical"] = "canonical"
    max_patches: int = Field(512, ge=2, le=4096)
    shard_size: int = Field(2048, ge=1)
    chunk_size: int = Field(512, ge=1)
    chunk_max_conversions: int = Field(24, ge=1)  # score conversions per input chunk (load balance)
    valid_fraction: float = Field(0.02, ge=0, le=0.5)
    test_fraction: float = Field(0.05, ge=0, le=0.5)
    near_dup_threshold: float = Field(0.8, gt=0, le=1)
    # the split (docs/shard-schema.md, "Split assignment"): by tune group (title key or melody
    # key, clamp/data/groups.py), or each row by its own content hash (datasets built before groups)
    split_by: Literal["tune-group", "row"] = "tune-group"
    melody_group_threshold: float = Field(0.6, gt=0, le=1)  # estimated Jaccard of melody shingles that links two rows
    title_group_cap: int = Field(30, ge=2)  # a title key shared by more rows than this is ignored
    holdout_collections: list[str] = Field(default_factory=lambda: ["O'Neill's Music of Ireland"])  # -> split "heldout"
    decontaminate: bool = True
    # a second view of every train-split tune: rendered by abc2midi and read back by midi2abc, the
    # notation a user's MIDI file arrives in (clamp.data.views); training draws it with `midi_view`.
    # On by default: the CPU recipe draws it (recipes/cpu-clamp.yaml), and a build without it
    # could not train that recipe
    midi_views: bool = Field(True, description="store each train tune's MIDI-route view (abc2midi -> midi2abc)")
    # a view of every train-split tune without chord symbols with one per bar (clamp.data.views):
    # the augmentation an as-written dataset trains with (`chord_view`); a canonical one has no chords
    chord_views: bool = Field(False, description="store each train tune with a chord symbol per bar (as-written only)")
    benchmarks_dir: Path | None = Field(default_factory=default_benchmarks_dir)
    max_record_bytes: int = 1_000_000
    conversion_timeout_s: float = 120.0
    n_workers: int = Field(2, ge=1, description="worker processes")
    scheduler_address: str | None = None
    data_docs: bool = True

    @field_validator("output_dir", "cache_dir", "benchmarks_dir")
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        # Dask workers and Great Expectations need paths that do not depend on a cwd.
        return Path(v).expanduser().resolve() if v is not None else v

    @model_validator(mode="after")
    def _chords_need_as_written(self) -> BuildConfig:
        if self.chord_views and self.notation == "canonical":
            raise ValueError(
                "chord_views needs notation: as-written (the canonical notation takes chord symbols out of the input)"
            )
        return self

    @property
    def dataset_dir(self) -> Path:
        return self.output_dir / self.name

    # Settings that are not part of a dataset's identity: where and how it is built.
    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"output_dir", "cache_dir", "n_workers", "scheduler_address", "data_docs", "benchmarks_dir"}
    )

    def sources_fingerprint(self) -> str:
        """What the dataset is made from: the sources, without `limit` (a cap on how many
        records of a source are read changes the dataset's size, not what it is)."""
        # a field added later is left out while unset, so datasets built before it keep their fingerprint
        added_later = ("text_columns", "concurrency")
        how = {"limit", "shares"}  # how many records are read, how many workers crawl: not what
        specs = [s.model_dump(exclude={*how, *(f for f in added_later if getattr(s, f) is None)}) for s in self.sources]
        return hashlib.sha256(json.dumps(specs, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # options the user gave > CLAMP_<FIELD> > the config file > defaults
        return init_settings, env_settings, _FileSource(settings_cls)

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> BuildConfig:
        """Defaults < the file at `path` < environment < `overrides`.

        Only the options the user actually gave belong in `overrides`: a `None` value is
        dropped, so a command-line default can never shadow the file's value.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        token = _CONFIG_FILE_DATA.set(read_config_file(path) if path else {})
        try:
            return validated(cls, given)
        finally:
            _CONFIG_FILE_DATA.reset(token)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> BuildConfig:
        return cls.load(path, **overrides)


_CONFIG_FILE_DATA: ContextVar[dict[str, Any] | None] = ContextVar("clamp_config_file_data", default=None)


class _FileSource(PydanticBaseSettingsSource):
    """The config file's values, below the environment and explicit options."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return (_CONFIG_FILE_DATA.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_CONFIG_FILE_DATA.get() or {})
