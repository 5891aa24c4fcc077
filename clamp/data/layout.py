"""The dataset folder: where a build writes what (`DatasetLayout`), and its identity: which
build a folder belongs to, claimed before anything is written into it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from clamp.config import BuildConfig
from clamp.data.shards import (
    read_table,
    write_json_atomic,
)
from clamp.errors import UserError

log = logging.getLogger("clamp.data.build")


class ReconciliationError(RuntimeError):
    """Counts do not add up: records were lost or double-counted."""


@dataclass(frozen=True)
class DatasetLayout:
    root: Path

    @property
    def input_dir(self) -> Path:
        return self.root / "_work" / "input"

    @property
    def prepared_dir(self) -> Path:
        return self.root / "_work" / "prepared"

    @property
    def shards_dir(self) -> Path:
        return self.root / "shards"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def dedup_dir(self) -> Path:
        return self.root / "dedup"

    @property
    def docs_dir(self) -> Path:
        return self.root / "data_docs"

    @property
    def build_config_file(self) -> Path:
        return self.root / "build_config.json"

    def inside(self, path: Path) -> Path:
        """`path`, after checking it lies in this dataset: a build deletes nothing outside it."""
        if not Path(path).resolve().is_relative_to(self.root.resolve()):
            raise RuntimeError(f"refusing to touch {path}: outside the dataset folder {self.root}")
        return Path(path)


# --- the dataset folder's identity ------------------------------------------------------------
def check_dataset_claim(layout: DatasetLayout, cfg: BuildConfig, overwrite: bool = False) -> bool:
    """Whether this build may write into `layout.root`; True when `overwrite` must empty it first.

    A dataset folder is built from one set of sources (`build_config.json` records them and
    their fingerprint). Building other sources into it would mix two datasets (and finalize
    would delete the first one's shards as stale), so it is refused with a `UserError`
    unless `overwrite`. Folders written before this record existed (they hold a manifest or
    a work folder) are adopted as they are. Reads only: entry points call it before starting.
    """
    root = layout.root
    if not root.is_dir() or not any(root.iterdir()):
        return False
    if layout.build_config_file.is_file():
        old = json.loads(layout.build_config_file.read_text(encoding="utf-8"))
        same = old.get("sources_fingerprint") == cfg.sources_fingerprint()
    else:  # written before this record existed, or not a dataset folder at all
        kinds = _legacy_source_kinds(layout)
        same = kinds is not None and kinds <= {s.kind for s in cfg.sources}
        what = f"{', '.join(sorted(kinds))}, recorded before source fingerprints" if kinds else "not a dataset folder"
        old = {"config": {"sources": what}}
    if same:
        return False
    if not overwrite:
        was = _describe_sources(old.get("config", {}).get("sources"))
        now = _describe_sources(cfg.model_dump(mode="json")["sources"])
        raise UserError(
            f"{root} holds a dataset built from other sources ({was}) than this build ({now}):"
            " choose another name, or pass --overwrite to replace it"
        )
    return True


def claim_dataset(layout: DatasetLayout, cfg: BuildConfig, overwrite: bool = False) -> None:
    """`check_dataset_claim`, then empty the folder if overwriting, and record the sources.

    Overwriting keeps `manifest.json` and the shards it lists: readers may be reading them, and
    the old dataset stays whole until finalize switches the manifest and deletes them."""
    if check_dataset_claim(layout, cfg, overwrite):
        log.warning("--overwrite: emptying %s (its manifest and listed shards go after the new manifest)", layout.root)
        _empty_except(layout, layout.root, _listed_files(layout))
    record = {
        "sources_fingerprint": cfg.sources_fingerprint(),
        "config": cfg.model_dump(mode="json", exclude=set(BuildConfig.RUNTIME_FIELDS)),
    }
    write_json_atomic(record, layout.build_config_file)


def _listed_files(layout: DatasetLayout) -> set[Path]:
    """`manifest.json` and the shard files it lists (absolute paths), if there is a manifest."""
    manifest_file = layout.root / "manifest.json"
    try:
        shards = json.loads(manifest_file.read_text(encoding="utf-8")).get("shards", [])
    except (OSError, ValueError, AttributeError):
        return set()
    listed = {manifest_file.absolute()}
    for entry in shards if isinstance(shards, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            listed.add((layout.root / entry["path"]).absolute())
    return listed


def _empty_except(layout: DatasetLayout, folder: Path, keep: set[Path]) -> None:
    """Delete everything in `folder` but the paths in `keep` (and the folders holding them)."""
    import shutil

    for child in folder.iterdir():
        layout.inside(child)
        here = child.absolute()
        if here in keep:
            continue
        if child.is_dir() and not child.is_symlink():
            if any(k.is_relative_to(here) for k in keep):
                _empty_except(layout, child, keep)
            else:
                shutil.rmtree(child)
        else:
            child.unlink()


def _legacy_source_kinds(layout: DatasetLayout) -> set[str] | None:
    """The source kinds of a dataset written before `build_config.json` existed, read from
    its first shard or input chunk (every row names its source); None when there is none."""
    candidates = (
        sorted(layout.shards_dir.glob("shard-*.arrow"))[:1] + sorted(layout.input_dir.glob("chunk-*.arrow"))[:1]
    )
    for path in candidates:
        try:
            return set(read_table(path, ["source"]).column("source").to_pylist())
        except (OSError, KeyError, pa.ArrowException):
            continue
    return None


def _describe_sources(sources: object) -> str:
    if not isinstance(sources, list):
        return str(sources)
    return ", ".join(
        s.get("kind", "?")
        + (f" {s['path']}" if s.get("path") else "")
        + (f" {','.join(s['seeds'])}" if s.get("seeds") else "")
        for s in sources
        if isinstance(s, dict)
    )


def fingerprint_of(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def prepared_paths_for(input_path: Path, layout: DatasetLayout) -> tuple[Path, Path, Path]:
    stem = input_path.stem
    base = layout.prepared_dir
    return base / f"{stem}.arrow", base / f"{stem}.quarantine.arrow", base / f"{stem}.stats.json"
