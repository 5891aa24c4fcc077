"""Arrow shards: schema, atomic writing with a stats file, manifest, readers.

A shard is an Arrow IPC file (uncompressed, so it can be memory-mapped) of at most
`shard_size` rows. It is written atomically (`clamp.io.atomic_path`); its stats file, written after
the rename, is the completion marker: a rerun skips a shard whose stats file records the same
input fingerprint. Nothing time- or host-dependent is written into a shard, so the same input
gives byte-identical files.

A shard's file name carries its fingerprint, so a rebuild never rewrites a file that the current
`manifest.json` lists: it writes new names, switches the manifest by an atomic rename, and only
then deletes what the old manifest listed. `open_shards` reads the manifest and its shards as one
set (docs/reliability.md, "Dataset locks, atomic manifests, disk full").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa

from clamp.abc.patching import PATCH_SIZE
from clamp.errors import DiskFullError
from clamp.io import atomic_path
from clamp.io import write_bytes_atomic as _write_bytes_atomic
from clamp.io import write_json_atomic as _write_json_atomic

SHARD_SCHEMA_VERSION = 1
PATCH_TYPE = pa.list_(pa.list_(pa.uint8(), PATCH_SIZE))

SHARD_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # stable id: "<source>:<path>[#<tune>]"
        pa.field("source", pa.string(), nullable=False),  # music21 | local | web
        pa.field("source_format", pa.string(), nullable=False),  # abc | musicxml | mxl | humdrum | midi
        pa.field("abc", pa.large_string(), nullable=False),  # the tune in ABC, as converted (before normalisation)
        pa.field("texts", pa.list_(pa.string()), nullable=False),  # cleaned text candidates
        pa.field("metadata", pa.string(), nullable=False),  # JSON object: labels (rhythm, origin, composer ...)
        pa.field("provenance", pa.string(), nullable=False),  # path or URL it came from
        pa.field("license", pa.string(), nullable=False),
        pa.field("patches", PATCH_TYPE, nullable=False),  # (n_patches, 64) uint8
        pa.field("n_patches", pa.int32(), nullable=False),
        pa.field("n_chars", pa.int32(), nullable=False),  # characters the patcher saw
        pa.field("content_hash", pa.string(), nullable=False),  # exact-dedup key of the normalized music
        pa.field("split", pa.string(), nullable=False),  # train | valid | test
    ]
)


def shard_name(index: int, fingerprint: str) -> str:
    """`shard-00003-<12 hex of the shard fingerprint>.arrow`: other contents, another name."""
    return f"shard-{index:05d}-{fingerprint[:12]}.arrow"


def stats_path(shard_path: Path) -> Path:
    return shard_path.with_suffix(".stats.json")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def patches_array(patch_bytes: list[bytes]) -> pa.Array:
    """list<fixed_size_list<uint8, 64>> from per-row patch bytes, without Python loops over patches."""
    lengths = np.fromiter((len(b) // PATCH_SIZE for b in patch_bytes), dtype=np.int32, count=len(patch_bytes))
    offsets = np.zeros(len(patch_bytes) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = pa.array(np.frombuffer(b"".join(patch_bytes), dtype=np.uint8), type=pa.uint8())
    inner = pa.FixedSizeListArray.from_arrays(values, PATCH_SIZE)
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), inner, type=PATCH_TYPE)


@contextmanager
def no_room_is_one_line(path: str | Path) -> Iterator[None]:
    """Turn a write's "disk full" (ENOSPC, EDQUOT, EFBIG) into a one-line `DiskFullError`.

    The writes below go through `atomic_path`, which has removed the temporary file by the time
    the error arrives here, so the message can say that nothing partial was left."""
    try:
        yield
    except OSError as exc:
        error = DiskFullError.wrap(exc, path)
        if error is None:
            raise
        raise error from exc


def write_atomic(table: pa.Table, path: str | Path) -> None:
    """Write an Arrow IPC file atomically, fsynced before the rename."""
    with (
        no_room_is_one_line(path),
        atomic_path(path, fsync=True) as tmp,
        pa.OSFile(str(tmp), "wb") as sink,
        pa.ipc.new_file(sink, table.schema) as writer,
    ):
        writer.write_table(table)


def write_json_atomic(data: dict, path: str | Path) -> None:
    """Write stats files and manifests atomically (fsynced: they are the completion markers and
    the switch to a new shard set): indent 2, sorted keys, trailing newline."""
    with no_room_is_one_line(path):
        _write_json_atomic(data, path, indent=2, sort_keys=True, fsync=True)


def write_bytes_atomic(data: bytes, path: str | Path) -> None:
    """`clamp.io.write_bytes_atomic`, with "disk full" as a one-line error."""
    with no_room_is_one_line(path):
        _write_bytes_atomic(data, path)


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Read an Arrow IPC file (memory-mapped)."""
    with pa.memory_map(str(path), "r") as source:
        table = pa.ipc.open_file(source).read_all()
    return table.select(columns) if columns else table


def load_manifest(dataset_dir: str | Path) -> dict:
    path = Path(dataset_dir) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"no manifest.json in {dataset_dir}: build the dataset first")
    return json.loads(path.read_text(encoding="utf-8"))


def shard_paths(dataset_dir: str | Path) -> list[Path]:
    """The shard files the manifest lists now (a later rebuild may delete them: to read them,
    use `open_shards`)."""
    manifest = load_manifest(dataset_dir)
    return [Path(dataset_dir) / s["path"] for s in manifest["shards"]]


def open_shards(
    dataset_dir: str | Path, columns: list[str] | None = None, attempts: int = 5
) -> tuple[dict, list[pa.Table]]:
    """The manifest and every shard it lists, memory-mapped, as one consistent set.

    A rebuild deletes the shards of the old manifest only after the new one is in place. So a
    reader that listed the old shards and then finds one gone has raced a finished rebuild: it
    reads the new manifest and starts again. Once mapped, a table stays readable even if its
    file is deleted later (POSIX keeps the data until it is unmapped).
    """
    root = Path(dataset_dir)
    for _ in range(attempts):
        manifest = load_manifest(root)
        tables: list[pa.Table] = []
        try:
            for entry in manifest["shards"]:
                path = root / entry["path"]
                tables.append(read_table(path, columns))
            return manifest, tables
        except FileNotFoundError as exc:
            if load_manifest(root) == manifest:  # not a race: the folder lost a listed shard
                raise FileNotFoundError(
                    f"{path}: listed in {root / 'manifest.json'} but missing; rebuild the dataset"
                ) from exc
    raise RuntimeError(f"{root / 'manifest.json'} changed {attempts} times while its shards were read")


def read_dataset(dataset_dir: str | Path, columns: list[str] | None = None, split: str | None = None) -> pa.Table:
    """All shards of a built dataset as one table (optionally one split), from one manifest."""
    _, tables = open_shards(dataset_dir, columns if not split or not columns else list({*columns, "split"}))
    table = pa.concat_tables(tables) if tables else SHARD_SCHEMA.empty_table()
    if split:
        import pyarrow.compute as pc

        table = table.filter(pc.equal(table.column("split"), split))
        if columns:
            table = table.select(columns)
    return table


def row_patches(table: pa.Table, row: int) -> np.ndarray:
    """(n_patches, 64) uint8 view of one row's patches."""
    patches = table.column("patches")
    chunk_row = row
    for chunk in patches.chunks:
        if chunk_row < len(chunk):
            offsets = chunk.offsets.to_numpy()
            values = chunk.values.values.to_numpy(zero_copy_only=False)
            return values[offsets[chunk_row] * PATCH_SIZE : offsets[chunk_row + 1] * PATCH_SIZE].reshape(-1, PATCH_SIZE)
        chunk_row -= len(chunk)
    raise IndexError(row)
