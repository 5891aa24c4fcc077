"""Readers never see a half-replaced shard set.

A rebuild writes shards under new names (their fingerprint is in the name), switches
`manifest.json` by one atomic rename, and only then deletes what the old manifest listed;
readers (`open_shards`, `read_dataset`, `ShardDataset`) read the file list from one manifest and
start again if a rebuild finished under them. Run with `-s` to see the counts.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import clamp.data.shards as shards
from clamp.config import BuildConfig, SourceSpec
from clamp.data.build import build_dataset
from clamp.data.executors import InProcessExecutor
from clamp.data.shards import file_sha256, load_manifest, open_shards, read_dataset
from tests.conftest import write_tunes
from tests.data.build_procs import env, write_config


def _cfg(tmp_path: Path, src: str, **kw) -> BuildConfig:
    return BuildConfig(
        name="mine",
        output_dir=tmp_path / "datasets",
        cache_dir=tmp_path / "cache",
        decontaminate=False,
        data_docs=False,
        sources=[SourceSpec(kind="local", path=str(tmp_path / src))],
        **{"shard_size": 4, **kw},
    )


def _ids(dataset: Path) -> frozenset[str]:
    return frozenset(read_dataset(dataset, ["id"]).column("id").to_pylist())


def _rows(dataset: Path) -> tuple[tuple[str, str], ...]:
    """Every row's (id, content hash), sorted: the two datasets share ids, not contents."""
    t = read_dataset(dataset, ["id", "content_hash"])
    return tuple(sorted(zip(t.column("id").to_pylist(), t.column("content_hash").to_pylist(), strict=True)))


class _StopsBeforeFinalize(InProcessExecutor):
    """A build killed after writing its shards, before the manifest switch."""

    def run(self, stage, fn, *args, **kwargs):
        if stage == "finalize":
            raise KeyboardInterrupt("killed before finalize")
        return super().run(stage, fn, *args, **kwargs)


def _listed_intact(dataset: Path) -> bool:
    manifest = load_manifest(dataset)
    return all(file_sha256(dataset / s["path"]) == s["sha256"] for s in manifest["shards"])


@pytest.mark.slow
@pytest.mark.parametrize("rebuild", ["reshard", "overwrite"])
def test_an_unfinished_rebuild_leaves_the_old_dataset_whole(tmp_path, rebuild):
    write_tunes(tmp_path / "a", 20)
    write_tunes(tmp_path / "b", 9, seed=7)
    build_dataset(_cfg(tmp_path, "a"))
    dataset = tmp_path / "datasets" / "mine"
    old_manifest, old_ids = (dataset / "manifest.json").read_bytes(), _ids(dataset)
    new_cfg, overwrite = (
        (_cfg(tmp_path, "a", shard_size=3), False) if rebuild == "reshard" else (_cfg(tmp_path, "b"), True)
    )

    with pytest.raises(KeyboardInterrupt):
        build_dataset(new_cfg, executor=_StopsBeforeFinalize(), overwrite=overwrite)
    # the new shards are on disk beside the old ones, but the old manifest and its shards are whole
    assert len(list((dataset / "shards").glob("shard-*.arrow"))) > len(load_manifest(dataset)["shards"])
    assert (dataset / "manifest.json").read_bytes() == old_manifest and _listed_intact(dataset)
    assert _ids(dataset) == old_ids

    summary = build_dataset(new_cfg, overwrite=overwrite)  # the rerun finishes: switch, then clean up
    listed = {Path(s["path"]).name for s in load_manifest(dataset)["shards"]}
    assert {p.name for p in (dataset / "shards").glob("shard-*.arrow")} == listed
    assert {p.name for p in (dataset / "shards").glob("*.stats.json")} == {
        n.replace(".arrow", ".stats.json") for n in listed
    }
    assert len(_ids(dataset)) == summary.rows_written and _listed_intact(dataset)
    assert not list(dataset.rglob(".*.tmp-*"))


@pytest.mark.slow
def test_a_reader_that_raced_a_rebuild_reads_the_new_set_whole(tmp_path, monkeypatch):
    """The reader lists the old shards, opens the first, and a whole --overwrite rebuild runs
    before it opens the next one: it must come back with the new dataset, not a mix."""
    write_tunes(tmp_path / "a", 20)
    write_tunes(tmp_path / "b", 9, seed=7)
    build_dataset(_cfg(tmp_path, "a"))
    dataset = tmp_path / "datasets" / "mine"
    original = shards.read_table
    calls = {"n": 0}

    def slow_reader(path, columns=None):
        calls["n"] += 1
        table = original(path, columns)
        if calls["n"] == 1:
            build_dataset(_cfg(tmp_path, "b"), overwrite=True)
        return table

    monkeypatch.setattr(shards, "read_table", slow_reader)
    manifest, tables = open_shards(dataset, ["id", "content_hash"])
    monkeypatch.undo()
    rows = tuple(
        sorted(
            (i, h)
            for t in tables
            for i, h in zip(t.column("id").to_pylist(), t.column("content_hash").to_pylist(), strict=True)
        )
    )
    assert len(rows) == 9 and rows == _rows(dataset)  # the new dataset, whole
    assert manifest == load_manifest(dataset)
    assert calls["n"] > len(manifest["shards"])  # it started again


def test_a_shard_missing_without_a_rebuild_is_a_clear_error(tmp_path):
    write_tunes(tmp_path / "a", 6)
    build_dataset(_cfg(tmp_path, "a"))
    dataset = tmp_path / "datasets" / "mine"
    first = dataset / load_manifest(dataset)["shards"][0]["path"]
    first.unlink()
    with pytest.raises(FileNotFoundError, match=r"listed in .*manifest.json but missing; rebuild the dataset"):
        open_shards(dataset)


# Rebuild the dataset again and again, alternating between configs, with --overwrite (a no-op
# when the sources are the same).
REBUILDER = r"""
import sys
from clamp.config import BuildConfig
from clamp.data.build import build_dataset

configs = sys.argv[2:]
for i in range(int(sys.argv[1])):
    build_dataset(BuildConfig.load(configs[i % len(configs)]), overwrite=True)
print("done", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("rebuild", ["overwrite", "reshard"])
def test_readers_never_see_a_mix_while_a_real_process_rebuilds(tmp_path, rebuild):
    """overwrite: sources b and a in turn, each replacing the other (before this change most
    reads failed: the folder was emptied first); reshard: the same sources cut into 3 and 5 rows
    per shard in turn (before, reads mixed old and new shards: rows missing or twice)."""
    write_tunes(tmp_path / "a", 24)
    write_tunes(tmp_path / "b", 10, seed=7)
    first = ("b", 3) if rebuild == "overwrite" else ("a", 3)
    configs = [
        write_config(tmp_path / "1.yaml", tmp_path, "mine", tmp_path / first[0], shard_size=first[1]),
        write_config(tmp_path / "2.yaml", tmp_path, "mine", tmp_path / "a", shard_size=5),
    ]
    reference = write_config(tmp_path / "ref.yaml", tmp_path, "reference-b", tmp_path / "b")
    version_b = _rows(Path(build_dataset(BuildConfig.load(reference)).dataset_dir))
    build_dataset(BuildConfig.load(configs[1]))
    dataset = tmp_path / "datasets" / "mine"
    version_a = _rows(dataset)
    assert len(version_a) == 24 and len(version_b) == 10
    rebuilds = 6
    writer = subprocess.Popen(
        [sys.executable, "-c", REBUILDER, str(rebuilds), *map(str, configs)],
        cwd=tmp_path,
        env=env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: dict[str, int] = {"a": 0, "b": 0}
    mixed = errors = 0
    try:
        while writer.poll() is None:
            try:
                rows = _rows(dataset)
            except Exception:  # noqa: BLE001 - counted: there must be none
                errors += 1
                continue
            if rows == version_a:
                seen["a"] += 1
            elif rows == version_b:
                seen["b"] += 1
            else:
                mixed += 1
            time.sleep(0.005)
    finally:
        out, err = writer.communicate(timeout=600)
    assert writer.returncode == 0 and "done" in out, err[-3000:]
    reads = sum(seen.values()) + mixed + errors
    print(
        f"\nmanifest: {reads} reads during {rebuilds} {rebuild} rebuilds by another process:"
        f" {seen['a']} saw dataset a, {seen['b']} saw dataset b, {mixed} mixed, {errors} errors"
    )
    assert mixed == 0 and errors == 0
    assert seen["a"] and (seen["b"] or rebuild == "reshard")
