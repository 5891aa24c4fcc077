"""Second views of the training tunes, stored beside the shards (docs/shard-schema.md, "Views").

The MIDI-route view (`midi-route`) is each train-split tune rendered by abc2midi and read back by
midi2abc, then patched exactly as prepare patches any MIDI file: the notation a user's MIDI input
arrives in (quantised timing, a guessed key and meter). Training draws it in place of the tune with
probability `TrainConfig.midi_view`, against the same texts.

The chord view (`chords-added`) is each train-split tune without chord symbols given one per bar
(`clamp.abc.variants.add_chord_symbols`), as lead sheets carry them: the augmentation that an
as-written dataset can train with (`TrainConfig.chord_view`) instead of taking chords out of the
input, as the canonical notation does. A tune that has chord symbols gets no view.

One view file per shard and view, `views/<shard stem>.<view>.arrow` (id, patches, n_patches), with
a stats file as its completion marker, so a rerun skips finished shards. The MIDI conversions are
cached by tune under `<cache_dir>/midi-route`, the cache the evaluation's MIDI-route control reads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from clamp.abc.midi_route import midi_routed
from clamp.abc.patching import PATCH_SIZE
from clamp.abc.variants import add_chord_symbols
from clamp.config import BuildConfig
from clamp.data.clean import RejectedRecord, strip_control_chars
from clamp.data.layout import DatasetLayout, fingerprint_of
from clamp.data.prepare import PrepareConfig, patch_music
from clamp.data.shards import PATCH_TYPE, file_sha256, patches_array, read_table, write_atomic, write_json_atomic

MIDI_VIEW = "midi-route"
CHORD_VIEW = "chords-added"
# the `clamp train` option that draws each view; `clamp build` stores it with the plural (--midi-views)
VIEW_OPTIONS = {MIDI_VIEW: "--midi-view", CHORD_VIEW: "--chord-view"}
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

    def render(abcs: list[str], counts: dict[str, int]) -> list[str | None]:
        return midi_routed(abcs, cfg.cache_dir, counts)

    return _write_view(shard_stat, layout, cfg, MIDI_VIEW, render)


def _chords_added(abcs: list[str], counts: dict[str, int]) -> list[str | None]:
    """Each tune with a chord symbol per bar; None (no view, counted `failed`) for one that has
    chords already or whose music `add_chord_symbols` cannot read (it comes back unchanged)."""
    out: list[str | None] = []
    for abc in abcs:
        added = add_chord_symbols(abc)
        out.append(added if added != abc else None)
    counts["converted"] = sum(a is not None for a in out)
    counts["failed"] = len(out) - counts["converted"]
    return out


def write_chord_views(shard_stat: dict, layout: DatasetLayout, cfg: BuildConfig) -> dict:
    """The chord view of one shard's train tunes (skipped when done): a tune that has chord
    symbols, or whose music cannot be read, gets none and is counted `failed`."""
    return _write_view(shard_stat, layout, cfg, CHORD_VIEW, _chords_added)


def _write_view(
    shard_stat: dict,
    layout: DatasetLayout,
    cfg: BuildConfig,
    view: str,
    render: Callable[[list[str], dict[str, int]], list[str | None]],
) -> dict:
    shard = layout.shards_dir / shard_stat["shard"]
    out = views_dir(layout) / view_file(shard_stat["shard"], view)
    marker = out.with_suffix(".stats.json")
    pcfg = PrepareConfig.from_build(cfg)
    # MIDI-route views keep the fingerprint they had before there were other views
    named = () if view == MIDI_VIEW else (view,)
    fingerprint = fingerprint_of(shard_stat["sha256"], pcfg.semantic(), VIEWS_VERSION, *named)
    if marker.is_file() and out.is_file():
        done = json.loads(marker.read_text())
        if done.get("fingerprint") == fingerprint:
            return {**done, "skipped": True}
    start = time.perf_counter()
    table = read_table(shard, ["id", "abc", "split"])
    train = table.filter(pc.equal(table.column("split"), "train"))
    counts: dict[str, int] = {}
    rendered = render(train.column("abc").to_pylist(), counts)
    ids: list[str] = []
    patch_bytes: list[bytes] = []
    empty = 0
    for row_id, abc in zip(train.column("id").to_pylist(), rendered, strict=True):
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
        "view": view,
        "path": f"views/{out.name}",
        "fingerprint": fingerprint,
        "train_rows": train.num_rows,
        "rows": views.num_rows,
        # no view: `render` gave none (abc2midi or midi2abc failed; no chord added), or no music came back
        "failed": counts.get("failed", 0) + empty,
        "converted": counts.get("converted", 0),
        "sha256": file_sha256(out),
        "seconds": round(time.perf_counter() - start, 3),
    }
    write_json_atomic(stats, marker)
    return {**stats, "skipped": False}


def _by_view(view_stats: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for s in view_stats:
        out.setdefault(s.get("view", MIDI_VIEW), []).append(s)
    return out


def views_summary(view_stats: list[dict]) -> dict[str, dict[str, float]]:
    """Per view: train rows, rows with a view, failed, converted (not from the cache), seconds."""
    summary: dict[str, dict[str, float]] = {}
    for view, stats in _by_view(view_stats).items():
        out: dict[str, float] = {k: sum(s[k] for s in stats) for k in ("train_rows", "rows", "failed")}
        fresh = [s for s in stats if not s.get("skipped")]  # a skipped file converted nothing now
        out["converted"] = sum(s["converted"] for s in fresh)
        out["seconds"] = round(sum(s["seconds"] for s in fresh), 2)
        summary[view] = out
    return summary


def manifest_views(view_stats: list[dict]) -> dict[str, list[dict]]:
    """The manifest's `views` entry: per view, one file per shard."""
    keys = ("shard", "path", "rows", "sha256")
    return {view: [{k: s[k] for k in keys} for s in stats] for view, stats in _by_view(view_stats).items()}


def remove_unlisted_views(layout: DatasetLayout, listed: set[str]) -> None:
    """After the manifest switch: delete view files (and markers) the manifest does not list."""
    folder = views_dir(layout)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("shard-*.arrow")):
        if f"views/{path.name}" not in listed:
            layout.inside(path).unlink()
            path.with_suffix(".stats.json").unlink(missing_ok=True)
