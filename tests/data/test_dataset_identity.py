"""A dataset folder belongs to one set of sources: the wrong-dataset bug and its guards.

The bug: `python -m flows.build_dataset --config my.yaml` ignored the file's `name:` (the
flow's defaults overrode it), wrote a user's build into `music21-corpus`, and the plan step
then deleted the corpus shards as stale. These tests build real (small) datasets in-process;
tests/flows/test_build_cli.py runs the same through the Prefect flow's command line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clamp.config import BuildConfig, SourceSpec
from clamp.data.build import DatasetLayout, build_dataset, check_dataset_claim
from clamp.errors import UserError
from tests.conftest import write_tunes


def _cfg(tmp_path: Path, name: str, src: str, **kw) -> BuildConfig:
    return BuildConfig(
        name=name,
        output_dir=tmp_path / "datasets",
        cache_dir=tmp_path / "cache",
        decontaminate=False,
        data_docs=False,
        sources=[SourceSpec(kind="local", path=str(tmp_path / src))],
        **{"shard_size": 8, **kw},
    )


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_build_records_its_sources_and_refuses_other_sources(tmp_path):
    write_tunes(tmp_path / "a", 20)
    write_tunes(tmp_path / "b", 12, seed=5)
    first = build_dataset(_cfg(tmp_path, "mine", "a"))
    assert first.rows_written == 20
    layout = DatasetLayout(tmp_path / "datasets" / "mine")
    record = json.loads(layout.build_config_file.read_text())
    assert record["sources_fingerprint"] == _cfg(tmp_path, "mine", "a").sources_fingerprint()
    assert record["config"]["sources"][0]["path"] == str(tmp_path / "a")
    before = _files(layout.root)

    with pytest.raises(
        UserError, match=r"built from other sources \(local .*/a\) than this build \(local .*/b\).*--overwrite"
    ):
        build_dataset(_cfg(tmp_path, "mine", "b"))
    assert _files(layout.root) == before  # refused before anything was written

    # the same sources with another cap, shard size or patch window rebuild the same dataset
    again = build_dataset(_cfg(tmp_path, "mine", "a", shard_size=16))
    assert again.rows_written == 20 and again.shards == 2

    replaced = build_dataset(_cfg(tmp_path, "mine", "b"), overwrite=True)
    assert replaced.rows_written == 12
    ids = {i for p in (layout.root / "shards").glob("*.arrow") for i in _ids(p)}
    assert len(ids) == 12
    assert not any("tune019" in i for i in ids)  # nothing of the first dataset is left


def _ids(path: Path) -> list[str]:
    from clamp.data.shards import read_table

    return read_table(path, ["id"]).column("id").to_pylist()


@pytest.mark.slow
def test_a_build_never_touches_another_dataset(tmp_path):
    write_tunes(tmp_path / "a", 20)
    write_tunes(tmp_path / "b", 12, seed=5)
    build_dataset(_cfg(tmp_path, "first", "a"))
    first = tmp_path / "datasets" / "first"
    before = _files(first)
    build_dataset(_cfg(tmp_path, "second", "b", shard_size=4))
    build_dataset(_cfg(tmp_path, "second", "b", shard_size=16))  # shrinks: stale shards of `second` go
    assert _files(first) == before
    assert len(list((tmp_path / "datasets" / "second" / "shards").glob("*.arrow"))) == 1


def test_the_guard_refuses_paths_outside_the_dataset(tmp_path):
    layout = DatasetLayout(tmp_path / "datasets" / "x")
    with pytest.raises(RuntimeError, match="outside the dataset folder"):
        layout.inside(tmp_path / "datasets" / "y" / "shards" / "shard-00000.arrow")
    with pytest.raises(RuntimeError, match="outside the dataset folder"):
        layout.inside(layout.root / ".." / "y")
    assert layout.inside(layout.root / "shards" / "shard-00003.arrow").name == "shard-00003.arrow"


def test_a_folder_that_is_not_a_dataset_is_refused(tmp_path):
    write_tunes(tmp_path / "a", 4)
    cfg = _cfg(tmp_path, "notes", "a")
    cfg.dataset_dir.mkdir(parents=True)
    (cfg.dataset_dir / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="not a dataset folder"):
        check_dataset_claim(DatasetLayout(cfg.dataset_dir), cfg)
    assert (cfg.dataset_dir / "thesis.tex").read_text() == "precious"


def test_clamp_build_uses_the_config_files_name(tmp_path, monkeypatch):
    """`clamp build --config` (in-process executor): the file's name and fields win over defaults."""
    from clamp.cli import app

    write_tunes(tmp_path / "a", 10)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.yaml").write_text(
        f"name: my-tunes\nshard_size: 4\ndecontaminate: false\ndata_docs: false\ncache_dir: {tmp_path / 'cache'}\n"
        f"sources:\n  - kind: local\n    path: {tmp_path / 'a'}\n"
    )
    result = CliRunner().invoke(app, ["build", "--config", "my.yaml", "--workers", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["name"] == "my-tunes"
    assert (tmp_path / "data" / "datasets" / "my-tunes" / "manifest.json").is_file()
    assert not (tmp_path / "data" / "datasets" / "music21-corpus").exists()
    # the same file into a dataset of other sources: one line, exit 2, nothing lost
    write_tunes(tmp_path / "b", 3, seed=9)
    (tmp_path / "other.yaml").write_text(
        (tmp_path / "my.yaml").read_text().replace(str(tmp_path / "a"), str(tmp_path / "b"))
    )
    refused = CliRunner().invoke(app, ["build", "--config", "other.yaml", "--workers", "1"])
    assert refused.exit_code == 2
    assert refused.output.strip().startswith("error: ") and "--overwrite" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    assert len(list((tmp_path / "data" / "datasets" / "my-tunes" / "shards").glob("*.arrow"))) == 3


def test_a_dataset_from_before_the_record_is_adopted_only_by_its_source_kind(tmp_path):
    write_tunes(tmp_path / "a", 10)
    cfg = _cfg(tmp_path, "old", "a")
    build_dataset(cfg)
    layout = DatasetLayout(cfg.dataset_dir)
    layout.build_config_file.unlink()  # as written by an older version
    corpus = cfg.model_copy(update={"sources": [SourceSpec(kind="music21", limit=5)]})
    with pytest.raises(UserError, match=r"other sources \(local, recorded before source fingerprints\)"):
        check_dataset_claim(layout, corpus)
    assert build_dataset(cfg).rows_written == 10  # the same kind of source: adopted and recorded
    assert json.loads(layout.build_config_file.read_text())["sources_fingerprint"] == cfg.sources_fingerprint()
