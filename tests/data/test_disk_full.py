"""A full disk during a real build: one clear line, no partial file, and a rerun finishes.

Each run is `clamp build` in a subprocess under `RLIMIT_FSIZE` (with SIGXFSZ ignored, a write
past the limit fails with EFBIG as a write to a full disk fails with ENOSPC), the limit set
just under the size of one kind of file, so that the build fails exactly when writing it: an
input chunk (ingest), a prepared chunk (prepare), a shard (write shards), and on a rerun of a
finished build, the manifest (finalize). Run with `-s` to see the counts.
"""

from __future__ import annotations

import resource
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from clamp.config import BuildConfig
from clamp.data.build import build_dataset
from clamp.data.lock import lock_paths
from clamp.data.shards import load_manifest, open_shards, read_table
from tests.conftest import write_tunes
from tests.data.build_procs import clamp_build, nonblank_lines, write_config


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:  # in the child, before exec: both survive exec
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _sizes(root: Path, pattern: str) -> list[int]:
    return [p.stat().st_size for p in root.glob(pattern)]


def _partial_files(root: Path) -> list[Path]:
    """Temporary files left behind, and Arrow files that do not open (half written)."""
    bad = [p for p in root.rglob(".*.tmp-*")]
    for path in root.rglob("*.arrow"):
        try:
            read_table(path)
        except Exception:  # noqa: BLE001 - any failure to read counts as partial
            bad.append(path)
    return bad


@pytest.mark.slow
def test_a_full_disk_fails_in_one_line_and_leaves_no_partial_file(tmp_path):
    write_tunes(tmp_path / "src", 20)
    fields = {"chunk_size": 2, "shard_size": 8}
    reference = build_dataset(
        BuildConfig.load(write_config(tmp_path / "ref.yaml", tmp_path / "ref", "mine", tmp_path / "src", **fields))
    )
    ref = Path(reference.dataset_dir)
    small = max([*_sizes(ref, "build_config.json"), 400])  # written first, with the lock's record
    inputs, prepared = _sizes(ref, "_work/input/*.arrow"), _sizes(ref, "_work/prepared/chunk-?????.arrow")
    shards_ = _sizes(ref, "shards/*.arrow")
    before_shards = [*prepared, *_sizes(ref, "_work/prepared/*quarantine.arrow"), *_sizes(ref, "dedup/*.arrow")]
    cases = [  # (stage, the limit, what the error must name)
        ("ingest", min(inputs) - 1, "/_work/input/chunk-", small),
        ("prepare", min(prepared) - 1, "/_work/prepared/chunk-", max(inputs)),
        ("write shards", min(shards_) - 1, "/shards/shard-", max(before_shards)),
    ]
    failures = one_line = partial = 0
    out_dir = tmp_path / "runs"
    out_dir.mkdir()
    for stage, limit, names, largest_before in cases:
        assert largest_before <= limit, f"{stage}: the files written before it are larger than its own"
        run_dir = out_dir / stage.replace(" ", "-")
        config = write_config(run_dir.with_suffix(".yaml"), run_dir, "mine", tmp_path / "src", **fields)
        proc = clamp_build(tmp_path, "--config", str(config), preexec_fn=_file_size_limit(limit))
        _, err = proc.communicate(timeout=600)
        lines = nonblank_lines(err)
        failures += proc.returncode == 2
        assert proc.returncode == 2, err[-3000:]
        assert len(lines) == 1 and lines[0].startswith("error: no room to write ") and names in lines[0], err[-3000:]
        assert "File too large (errno 27)" in lines[0] and "rerun" in lines[0]
        one_line += 1
        dataset = run_dir / "datasets" / "mine"
        left = _partial_files(dataset)
        partial += len(left)
        assert not left
        assert not lock_paths(dataset)[1].exists()  # the failed build released its lock
        assert not (dataset / "manifest.json").exists()

        resumed = build_dataset(BuildConfig.load(config))  # the space is back: the rerun finishes
        assert resumed.rows_written == reference.rows_written
        assert {p.name: p.read_bytes() for p in (dataset / "shards").glob("*.arrow")} == {
            p.name: p.read_bytes() for p in (ref / "shards").glob("*.arrow")
        }

    # finalize: a rerun of the finished build rewrites only small files, then the manifest
    dataset = out_dir / "write-shards" / "datasets" / "mine"
    manifest_bytes = (dataset / "manifest.json").read_bytes()
    limit = len(manifest_bytes) - 1
    assert max(*_sizes(dataset, "dedup/*.arrow"), *_sizes(dataset, "quarantine/quarantine.arrow"), small) <= limit
    proc = clamp_build(tmp_path, "--config", str(out_dir / "write-shards.yaml"), preexec_fn=_file_size_limit(limit))
    _, err = proc.communicate(timeout=600)
    lines = nonblank_lines(err)
    failures += proc.returncode == 2
    assert (
        proc.returncode == 2 and len(lines) == 1 and "no room to write " in lines[0] and "manifest.json" in lines[0]
    ), err
    one_line += 1
    left = _partial_files(dataset)
    partial += len(left)
    assert not left
    assert (dataset / "manifest.json").read_bytes() == manifest_bytes  # the old manifest, whole
    _, tables = open_shards(dataset)
    assert sum(t.num_rows for t in tables) == load_manifest(dataset)["rows"] == reference.rows_written
    print(
        f"\ndisk full: {failures} builds hit the limit (ingest, prepare, write shards, manifest):"
        f" {one_line} one-line errors, {partial} partial files left; every rerun finished"
    )


@pytest.mark.slow
def test_a_manifest_write_that_fails_keeps_the_old_manifest(tmp_path, monkeypatch):
    """The same without a subprocess: the disk fills exactly at the manifest's write."""
    import errno

    import clamp.io as io

    write_tunes(tmp_path / "src", 6)
    cfg = BuildConfig.load(write_config(tmp_path / "c.yaml", tmp_path, "mine", tmp_path / "src"))
    build_dataset(cfg)
    dataset = cfg.dataset_dir
    before = (dataset / "manifest.json").read_bytes()
    real = io.write_text_atomic

    def full_at_manifest(text: str, path, fsync: bool = False) -> None:
        if Path(path).name == "manifest.json":
            with io.atomic_path(path) as tmp:
                tmp.write_text(text[: len(text) // 2])  # half of it made it to disk
                raise OSError(errno.ENOSPC, "No space left on device")
        real(text, path, fsync=fsync)

    monkeypatch.setattr(io, "write_text_atomic", full_at_manifest)
    with pytest.raises(Exception, match=r"no room to write .*manifest.json: No space left on device \(errno 28\)"):
        build_dataset(cfg.model_copy(update={"shard_size": 2}))
    assert (dataset / "manifest.json").read_bytes() == before
    assert not list(dataset.rglob(".*.tmp-*"))
    shutil.rmtree(dataset)
