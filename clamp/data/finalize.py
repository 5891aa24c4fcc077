"""The last stage of a build: the manifest, the summary, the quarantine, Data Docs, switched in
atomically; and the summary a build reports (`BuildSummary`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from clamp.abc.patching import get_patch_mode
from clamp.config import BuildConfig
from clamp.data.dedup import ReferenceIndex
from clamp.data.ingest import acquisition_stats
from clamp.data.layout import DatasetLayout, ReconciliationError, fingerprint_of, prepared_paths_for
from clamp.data.plan import PlanResult, split_settings
from clamp.data.prepare import (
    QUARANTINE_SCHEMA,
    caption_counts,
)
from clamp.data.shards import (
    SHARD_SCHEMA,
    SHARD_SCHEMA_VERSION,
    read_table,
    stats_path,
    write_atomic,
    write_bytes_atomic,
    write_json_atomic,
)
from clamp.data.views import manifest_views, remove_unlisted_views, views_summary

log = logging.getLogger("clamp.data.build")


# --- finalize -----------------------------------------------------------------------------
@dataclass
class BuildSummary:
    name: str
    dataset_dir: str
    patch_mode: str
    records_in: int
    rows_written: int
    quarantined: int
    duplicates: int
    decontaminated: int
    quarantine_reasons: dict[str, int]
    duplicates_by_kind: dict[str, int]
    decontaminated_by_benchmark: dict[str, int]
    decontamination: str
    formats_in: dict[str, int]
    converted: int
    splits: dict[str, int]
    shards: int
    shards_skipped: int
    chunks_skipped: int
    patches: int
    chars: int
    patches_per_char: float
    median_patches: float
    median_patches_per_char: float
    seconds: dict[str, float] = field(default_factory=dict)
    throughput: dict[str, float] = field(default_factory=dict)
    # captions (docs/shard-schema.md, "Captions and labels"): share of written rows with 3 or
    # more text candidates, distinct caption sentences in the shards, and prepared rows whose
    # analysis failed (they kept their cleaned raw texts only)
    caption_coverage: float = 0.0
    distinct_captions: int = 0
    caption_failures: int = 0
    # the split by tune group (docs/shard-schema.md, "Split assignment"): `split_by`, groups of
    # more than one row, groups the per-row rule split across splits (`crossed_before`) and the
    # build's split (`crossed_after`), rows moved, held-out rows; counted in plan, before the contract
    grouping: dict[str, int | str] = field(default_factory=dict)
    # each web source's latest crawl (`clamp.data.ingest.acquisition_stats`): pages, music files, text kinds
    acquisition: dict[str, dict] = field(default_factory=dict)
    # second views of the train tunes (`clamp.data.views.views_summary`): per view, train rows, rows
    # with a view, failed, converted (cache misses) and the seconds of this run
    views: dict[str, dict] = field(default_factory=dict)

    def reconcile(self) -> None:
        accounted = self.rows_written + self.quarantined + self.duplicates + self.decontaminated
        if accounted != self.records_in:
            raise ReconciliationError(
                f"records in {self.records_in} != written {self.rows_written} + quarantined {self.quarantined}"
                f" + duplicates {self.duplicates} + decontaminated {self.decontaminated} (= {accounted})"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def finalize(
    layout: DatasetLayout,
    cfg: BuildConfig,
    chunk_stats: list[dict],
    plan: PlanResult,
    shard_stats: list[dict],
    seconds: dict[str, float],
    view_stats: list[dict] | None = None,
) -> BuildSummary:
    """Write the consolidated quarantine, manifest and summary; check the counts reconcile."""
    q_parts = [read_table(prepared_paths_for(layout.input_dir / f"{s['chunk']}.arrow", layout)[1]) for s in chunk_stats]
    q_parts += [read_table(layout.quarantine_dir / f"contract-{Path(s['shard']).stem}.arrow") for s in shard_stats]
    quarantine = pa.concat_tables(q_parts) if q_parts else QUARANTINE_SCHEMA.empty_table()
    write_atomic(quarantine, layout.quarantine_dir / "quarantine.arrow")
    reasons = Counter(quarantine.column("reason").to_pylist())

    lengths: list[np.ndarray] = []
    ratios: list[np.ndarray] = []
    with_three_texts = 0
    caption_keys: set[bytes] = set()
    for s in shard_stats:
        t = read_table(layout.shards_dir / s["shard"], ["n_patches", "n_chars", "texts", "metadata"])
        p, c = t.column("n_patches").to_numpy(), t.column("n_chars").to_numpy()
        lengths.append(p)
        ratios.append(p / np.maximum(c, 1))
        rich, keys = _caption_stats(t)
        with_three_texts += rich
        caption_keys |= keys
    all_p = np.concatenate(lengths) if lengths else np.zeros(0)
    all_r = np.concatenate(ratios) if ratios else np.zeros(0)
    patches = sum(s["patches"] for s in shard_stats)
    chars = sum(s["chars"] for s in shard_stats)
    formats: Counter[str] = Counter()
    for s in chunk_stats:
        formats.update(s["formats"])
    splits: Counter[str] = Counter()
    for s in shard_stats:
        splits.update(s["splits"])
    records_in = sum(s["records_in"] for s in chunk_stats)
    rows_written = sum(s["rows"] for s in shard_stats)
    summary = BuildSummary(
        name=cfg.name,
        dataset_dir=str(layout.root),
        patch_mode=cfg.patch_mode,
        records_in=records_in,
        rows_written=rows_written,
        quarantined=quarantine.num_rows,
        duplicates=plan.duplicates_exact + plan.duplicates_near,
        decontaminated=plan.decontaminated_exact + plan.decontaminated_near,
        quarantine_reasons=dict(reasons.most_common()),
        duplicates_by_kind={"exact": plan.duplicates_exact, "near": plan.duplicates_near},
        decontaminated_by_benchmark=plan.decontaminated_by_benchmark,
        decontamination=plan.decontamination,
        formats_in=dict(sorted(formats.items())),
        converted=sum(s["converted"] for s in chunk_stats),
        splits=dict(sorted(splits.items())),
        shards=len(shard_stats),
        shards_skipped=sum(1 for s in shard_stats if s.get("skipped")),
        chunks_skipped=sum(1 for s in chunk_stats if s.get("skipped")),
        patches=patches,
        chars=chars,
        patches_per_char=round(patches / chars, 4) if chars else 0.0,
        median_patches=float(statistics.median(all_p)) if len(all_p) else 0.0,
        median_patches_per_char=round(float(statistics.median(all_r)), 4) if len(all_r) else 0.0,
        seconds={k: round(v, 2) for k, v in seconds.items()},
        throughput={f"{k}_records_per_s": round(records_in / v, 1) for k, v in seconds.items() if v > 0 and records_in},
        caption_coverage=round(with_three_texts / rows_written, 4) if rows_written else 0.0,
        distinct_captions=len(caption_keys),
        caption_failures=sum(
            caption_counts(prepared_paths_for(layout.input_dir / f"{s['chunk']}.arrow", layout)[0])["caption_failures"]
            for s in chunk_stats
        ),
        grouping=dict(plan.grouping),
        acquisition=acquisition_stats(cfg),
        views=views_summary(view_stats or []),
    )
    summary.reconcile()
    manifest = {
        "name": cfg.name,
        "schema_version": SHARD_SCHEMA_VERSION,
        "schema": [f"{f.name}: {f.type}" for f in SHARD_SCHEMA],
        "patch_mode": cfg.patch_mode,
        "notation": cfg.notation,
        "max_patches": cfg.max_patches,
        "vocab_size": get_patch_mode(cfg.patch_mode).vocab_size,
        "rows": summary.rows_written,
        "splits": summary.splits,
        "split": split_settings(cfg),
        "shards": [
            {"path": f"shards/{s['shard']}", "rows": s["rows"], "sha256": s["sha256"], "bytes": s["bytes"]}
            for s in shard_stats
        ],
    }
    views = manifest_views(view_stats or [])
    identity = [manifest["shards"], cfg.patch_mode, cfg.max_patches, cfg.notation, manifest["split"]]
    if views:  # a dataset with views trains otherwise; without them its fingerprint is as before
        manifest["views"] = views
        identity.append(views)
    manifest["fingerprint"] = fingerprint_of(*identity)
    # the switch: one atomic rename replaces the old shard list by the new one. Only after it
    # may the shards that only the old manifest lists go.
    write_json_atomic(manifest, layout.root / "manifest.json")
    remove_unlisted_shards(layout, {s["shard"] for s in shard_stats})
    remove_unlisted_views(layout, {v["path"] for files in views.values() for v in files})
    write_json_atomic(summary.to_dict(), layout.root / "summary.json")
    if cfg.data_docs:
        _write_docs_index(layout, shard_stats)
    return summary


def _caption_stats(shard: pa.Table) -> tuple[int, set[bytes]]:
    """(rows of the shard with 3 or more text candidates, 8-byte keys of its captions).

    A row's captions are its last `n_captions` texts (the count is in its metadata JSON);
    they are kept as BLAKE2b digests so that a large dataset's distinct count stays small.
    """
    rich = 0
    keys: set[bytes] = set()
    for texts, meta in zip(shard.column("texts").to_pylist(), shard.column("metadata").to_pylist(), strict=True):
        rich += len(texts) >= 3
        try:
            n = int(json.loads(meta).get("n_captions", 0))
        except (ValueError, AttributeError, TypeError):
            n = 0
        if n > 0:
            keys.update(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest() for t in texts[-n:])
    return rich, keys


def docs_name(shard_file: str) -> str:
    """A shard's Data Docs folder, `shard-00003`: by position, so a rebuild replaces it in place
    (Data Docs are a report, not data a reader must see whole)."""
    return shard_file.split(".")[0][: len("shard-00000")]


def _write_docs_index(layout: DatasetLayout, shard_stats: list[dict]) -> None:
    items = "\n".join(
        f'<li><a href="{docs_name(s["shard"])}/index.html">{s["shard"]}</a>: {s["rows"]} rows,'
        f" {s['contract_quarantined']} quarantined by the contract</li>"
        for s in shard_stats
    )
    html = f"<!doctype html><title>Data Docs</title><h1>Shard contract results</h1><ul>\n{items}\n</ul>\n"
    write_bytes_atomic(html.encode("utf-8"), layout.docs_dir / "index.html")


def load_reference(cfg: BuildConfig) -> tuple[ReferenceIndex | None, dict]:
    if not cfg.decontaminate:
        return None, {"skipped": "decontaminate=false"}
    if cfg.benchmarks_dir is None or not Path(cfg.benchmarks_dir).is_dir():
        log.warning("no benchmarks directory (set CLAMP_BENCHMARKS_DIR): decontamination skipped")
        return None, {"skipped": "no benchmarks directory"}
    from clamp.data.decontam import load_reference_index

    return load_reference_index(Path(cfg.benchmarks_dir), cfg.cache_dir, cfg.notation)


def remove_unlisted_shards(layout: DatasetLayout, listed: set[str]) -> None:
    """After the manifest switch: delete the shards it does not list (an earlier plan's, or the
    overwritten dataset's) with their markers and contract quarantine, the Data Docs of shards
    no longer planned, and the temporary files a killed build left. Runs under the dataset lock."""
    import shutil

    for path in sorted(layout.shards_dir.glob("shard-*.arrow")):
        if path.name not in listed:
            layout.inside(path).unlink()
            stats_path(path).unlink(missing_ok=True)
            (layout.quarantine_dir / f"contract-{path.stem}.arrow").unlink(missing_ok=True)
    docs = {docs_name(name) for name in listed}
    for folder in sorted(layout.docs_dir.glob("shard-*")) if layout.docs_dir.is_dir() else []:
        if folder.is_dir() and folder.name not in docs:
            shutil.rmtree(layout.inside(folder))
    # `clamp.io.atomic_path` temporaries in the build's own folders and files: under the lock, no
    # build writes them now (`clamp search` writes its cache at the top level: left alone)
    own = [layout.shards_dir, layout.quarantine_dir, layout.dedup_dir, layout.root / "_work"]
    leftovers = [t for d in own if d.is_dir() for t in d.rglob(".*.tmp-*")]
    for name in ("manifest.json", "summary.json", layout.build_config_file.name):
        leftovers += layout.root.glob(f".{name}.tmp-*")
    for stale in leftovers:
        if stale.is_file():
            layout.inside(stale).unlink(missing_ok=True)
