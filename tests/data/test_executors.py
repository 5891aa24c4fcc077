"""One stage list, interchangeable executors: the same build gives byte-identical shards
in this process and in a process pool (the Prefect-on-Dask executor is compared with an
in-process build in tests/infra/test_interrupted_builds.py)."""

from __future__ import annotations

import pytest

from clamp.config import BuildConfig, SourceSpec
from clamp.data.build import build_dataset
from clamp.data.executors import InProcessExecutor, PoolExecutor
from tests.conftest import write_tunes


@pytest.mark.slow
def test_in_process_and_pool_builds_are_identical(tmp_path):
    write_tunes(tmp_path / "src", 30)

    def cfg(name: str) -> BuildConfig:
        return BuildConfig(
            name=name,
            output_dir=tmp_path / "out",
            cache_dir=tmp_path / "cache",
            decontaminate=False,
            data_docs=False,
            shard_size=7,
            chunk_size=8,
            sources=[SourceSpec(kind="local", path=str(tmp_path / "src"))],
        )

    inline = build_dataset(cfg("inline"), executor=InProcessExecutor())
    pooled = build_dataset(cfg("pooled"), executor=PoolExecutor(2))
    assert (inline.rows_written, inline.shards) == (pooled.rows_written, pooled.shards) == (30, 5)
    shards = sorted(p.name for p in (tmp_path / "out" / "inline" / "shards").glob("*.arrow"))
    assert len(shards) == 5
    for name in shards:
        assert (tmp_path / "out" / "inline" / "shards" / name).read_bytes() == (
            tmp_path / "out" / "pooled" / "shards" / name
        ).read_bytes()


def test_executor_map_keeps_order_and_passes_keywords():
    for executor in (InProcessExecutor(), PoolExecutor(2)):
        assert executor.map("prepare", int, ["11", "101", "1"], base=2) == [3, 5, 1]
        assert executor.run("plan", divmod, 9, 2) == (4, 1)
