"""All configuration in one typed place.

`BuildConfig` is read from (in increasing priority) defaults, a YAML/JSON file, environment
variables `CLAMP_<FIELD>` and explicit keyword arguments.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_benchmarks_dir() -> Path | None:
    """`CLAMP_BENCHMARKS_DIR`, else `../shared/benchmarks` beside the checkout when it exists."""
    env = os.environ.get("CLAMP_BENCHMARKS_DIR")
    if env:
        return Path(env)
    candidate = REPO_ROOT.parent / "shared" / "benchmarks"
    return candidate if candidate.is_dir() else None


def error_line(exc: Exception) -> str:
    """One line for the terminal: a pydantic error names the field instead of "1 validation error"."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "config"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"invalid {exc.title} setting {where}: {err['msg']}{more}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class SourceSpec(BaseModel):
    """One source of raw records."""

    kind: Literal["music21", "local", "web"]
    # music21
    formats: list[str] = Field(default_factory=lambda: ["abc", "humdrum", "musicxml", "mxl"])
    path_filter: str | None = None
    # local
    path: str | None = None
    license: str = ""
    # web
    seeds: list[str] = Field(default_factory=list)
    allowed_hosts: list[str] | None = None
    max_depth: int = 2
    per_host_delay_s: float = 1.0
    max_pages: int = 10_000
    # any
    limit: int | None = None

    @field_validator("path")
    @classmethod
    def _expand(cls, v: str | None) -> str | None:
        return os.path.expanduser(v) if v else v


class BuildConfig(BaseSettings):
    """Configuration of the build-dataset pipeline."""

    model_config = SettingsConfigDict(env_prefix="CLAMP_", extra="forbid")

    name: str = "music21-corpus"
    sources: list[SourceSpec] = Field(default_factory=lambda: [SourceSpec(kind="music21")])
    output_dir: Path = Path("data/datasets")
    cache_dir: Path = Path(".clamp/cache")
    patch_mode: Literal["clamp-v1", "m3"] = "clamp-v1"
    max_patches: int = Field(512, ge=2, le=4096)
    shard_size: int = Field(2048, ge=1)
    chunk_size: int = Field(512, ge=1)
    chunk_max_conversions: int = Field(24, ge=1)  # score conversions per input chunk (load balance)
    valid_fraction: float = Field(0.02, ge=0, le=0.5)
    test_fraction: float = Field(0.05, ge=0, le=0.5)
    near_dup_threshold: float = Field(0.8, gt=0, le=1)
    decontaminate: bool = True
    benchmarks_dir: Path | None = Field(default_factory=default_benchmarks_dir)
    max_record_bytes: int = 1_000_000
    conversion_timeout_s: float = 120.0
    n_workers: int = Field(2, ge=1)
    scheduler_address: str | None = None
    data_docs: bool = True

    @field_validator("output_dir", "cache_dir", "benchmarks_dir")
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        # Dask workers and Great Expectations need paths that do not depend on a cwd.
        return Path(v).expanduser().resolve() if v is not None else v

    @property
    def dataset_dir(self) -> Path:
        return self.output_dir / self.name

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> BuildConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        return cls(**{**data, **overrides})
