"""Second views of the training tunes, stored beside the shards (docs/shard-schema.md, "Views").

The MIDI-route view (`midi-route`) is each train-split tune rendered by abc2midi and read back by
midi2abc, then patched exactly as prepare patches any MIDI file: the notation a user's MIDI input
arrives in (quantised timing, a guessed key and meter). Training draws it in place of the tune with
probability `TrainConfig.midi_view`, against the same texts.

One view file per shard, `views/<shard stem>.midi-route.arrow` (id, patches, n_patches), with a
stats file as its completion marker, so a rerun skips finished shards. The conversions are cached
by tune under `<cache_dir>/midi-route`, the cache the evaluation's MIDI-route control reads too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from clamp.abc.midi_route import midi_routed
from clamp.abc.patching import PATCH_SIZE
from clamp.config import BuildConfig
from clamp.data.clean import RejectedRecord, strip_control_chars
from clamp.data.layout import DatasetLayout, fingerprint_of
from clamp.data.prepare import PrepareConfig, patch_music
from clamp.data.shards import PATCH_TYPE, file_sha256, patches_array, read_table, write_atomic, write_json_atomic

MIDI_VIEW = "midi-route"
# Bump when a view's content changes for the same shard, so reruns redo the view files.
VIEWS_VERSION = 1

VIEW_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("patches", PATCH_TYPE, nullable=False),
        pa.field("n_patches", pa.int32(), nullable=False),
    ]
)


def views_dir(layout: DatasetLayout) -> Path:
    return layout.root / "views"


def view_file(shard_file: str, view: str = MIDI_VIEW) -> str:
    """`shard-00003-<fp>.arrow` -> `shard-00003-<fp>.midi-route.arrow`."""
    return f"{Path(shard_file).stem}.{view}.arrow"


def write_midi_views(shard_stat: dict, layout: DatasetLayout, cfg: BuildConfig) -> dict:
    """The MIDI-route view of one shard's train tunes (skipped when done). A tune that abc2midi or
    midi2abc cannot take, or whose reading holds no music, gets no view and is counted `failed`:
    training reads it as written."""
    shard = layout.shards_dir / shard_stat["shard"]
    out = views_dir(layout) / view_file(shard_stat["shard"])
    marker = out.with_suffix(".stats.json")
    pcfg = PrepareConfig.from_build(cfg)
    fingerprint = fingerprint_of(shard_stat["sha256"], pcfg.semantic(), VIEWS_VERSION)
    if marker.is_file() and out.is_file():
        done = json.loads(marker.read_text())
        if done.get("fingerprint") == fingerprint:
            return {**done, "skipped": True}
    start = time.perf_counter()
    table = read_table(shard, ["id", "abc", "split"])
    train = table.filter(pc.equal(table.column("split"), "train"))
    counts: dict[str, int] = {}
    routed = midi_routed(train.column("abc").to_pylist(), cfg.cache_dir, counts)
    ids: list[str] = []
    patch_bytes: list[bytes] = []
    empty = 0
    for row_id, abc in zip(train.column("id").to_pylist(), routed, strict=True):
        if abc is None:
            continue
        try:
            _, _, patches = patch_music(strip_control_chars(abc), pcfg)
        except RejectedRecord:
            empty += 1
            continue
        ids.append(row_id)
        patch_bytes.append(patches)
    views = pa.table(
        {
            "id": pa.array(ids, type=pa.string()),
            "patches": patches_array(patch_bytes),
            "n_patches": pa.array([len(b) // PATCH_SIZE for b in patch_bytes], type=pa.int32()),
        },
        schema=VIEW_SCHEMA,
    )
    write_atomic(views, out)
    stats = {
        "shard": shard_stat["shard"],
        "view": MIDI_VIEW,
        "path": f"views/{out.name}",
        "fingerprint": fingerprint,
        "train_rows": train.num_rows,
        "rows": views.num_rows,
        "failed": counts.get("failed", 0) + empty,
        "converted": counts.get("converted", 0),
        "sha256": file_sha256(out),
        "seconds": round(time.perf_counter() - start, 3),
    }
    write_json_atomic(stats, marker)
    return {**stats, "skipped": False}


def views_summary(view_stats: list[dict]) -> dict[str, dict[str, float]]:
    """Per view: train rows, rows with a view, failed, converted (not from the cache), seconds."""
    if not view_stats:
        return {}
    out: dict[str, float] = {k: sum(s[k] for s in view_stats) for k in ("train_rows", "rows", "failed")}
    fresh = [s for s in view_stats if not s.get("skipped")]  # a skipped file converted nothing now
    out["converted"] = sum(s["converted"] for s in fresh)
    out["seconds"] = round(sum(s["seconds"] for s in fresh), 2)
    return {MIDI_VIEW: out}


def manifest_views(view_stats: list[dict]) -> dict[str, list[dict]]:
    """The manifest's `views` entry: per view, one file per shard."""
    if not view_stats:
        return {}
    keys = ("shard", "path", "rows", "sha256")
    return {MIDI_VIEW: [{k: s[k] for k in keys} for s in view_stats]}


def remove_unlisted_views(layout: DatasetLayout, listed: set[str]) -> None:
    """After the manifest switch: delete view files (and markers) the manifest does not list."""
    folder = views_dir(layout)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("shard-*.arrow")):
        if f"views/{path.name}" not in listed:
            layout.inside(path).unlink()
            path.with_suffix(".stats.json").unlink(missing_ok=True)
