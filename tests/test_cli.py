"""The `clamp` command: real models and files; user errors are one line with exit code 2."""

from __future__ import annotations

import json
import random

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from clamp.cli import app
from clamp.errors import UserError
from tests.conftest import one_line_error as _error

runner = CliRunner()
TUNE = "X:1\nT:Test Jig\nR:jig\nM:6/8\nL:1/8\nK:D\n|:dAF DFA|dAF GFE|dAF DFA|GFE D3:|\n"


@pytest.mark.parametrize(
    "command", ["build", "train", "embed", "search", "classify", "eval", "ablations", "dataset", "import"]
)
def test_every_command_has_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_user_errors_are_one_clear_line(tmp_path, tiny_model, tiny_dataset):
    assert "file not found" in _error(
        runner.invoke(
            app, ["classify", str(tmp_path / "missing.abc"), "--labels", "jig,reel", "--model", str(tiny_model)]
        )
    )
    (tmp_path / "notes.txt").write_text("hello")
    assert "unsupported format .txt" in _error(
        runner.invoke(
            app, ["classify", str(tmp_path / "notes.txt"), "--labels", "jig,reel", "--model", str(tiny_model)]
        )
    )
    (tmp_path / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    assert "unusable score" in _error(
        runner.invoke(
            app, ["classify", str(tmp_path / "broken.mid"), "--labels", "jig,reel", "--model", str(tiny_model)]
        )
    )
    (tmp_path / "t.abc").write_text(TUNE)
    assert "model folder not found" in _error(
        runner.invoke(
            app, ["classify", str(tmp_path / "t.abc"), "--labels", "jig,reel", "--model", str(tmp_path / "nomodel")]
        )
    )
    assert "at least two labels" in _error(
        runner.invoke(app, ["classify", str(tmp_path / "t.abc"), "--labels", "jig", "--model", str(tiny_model)])
    )
    assert "no built dataset" in _error(runner.invoke(app, ["train", "--dataset", str(tmp_path)]))
    assert "no built dataset" in _error(runner.invoke(app, ["ablations", "--dataset", str(tmp_path)]))
    (tmp_path / "aw.yaml").write_text(f"as_written_dataset_dir: {tmp_path / 'none'}\n")
    assert f"no built dataset at {tmp_path / 'none'}" in _error(
        runner.invoke(app, ["ablations", "--config", str(tmp_path / "aw.yaml"), "--dataset", str(tiny_dataset)])
    )
    assert "unknown cell 'patch-td'" in _error(runner.invoke(app, ["ablations", "--cells", "patch-td"]))
    assert "--seeds must be comma-separated integers" in _error(runner.invoke(app, ["ablations", "--seeds", "0,one"]))
    assert "must be a built dataset" in _error(
        runner.invoke(app, ["search", "a jig", "--index", str(tmp_path), "--model", str(tiny_model)])
    )


def test_classify_ranks_every_label(tmp_path, tiny_model):
    (tmp_path / "t.abc").write_text(TUNE)
    result = runner.invoke(
        app, ["classify", str(tmp_path / "t.abc"), "--labels", "jig,reel,waltz", "--model", str(tiny_model), "--json"]
    )
    assert result.exit_code == 0, result.output
    tunes = json.loads(result.output)  # one object per tune of the file
    assert [(t["index"], t["title"]) for t in tunes] == [(1, "Test Jig")]
    ranked = tunes[0]["labels"]
    assert sorted(r["label"] for r in ranked) == ["jig", "reel", "waltz"]
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)


def test_search_over_a_dataset_and_embed(tmp_path, tiny_model, tiny_dataset):
    result = runner.invoke(
        app,
        ["search", "a lively jig", "--index", str(tiny_dataset), "--model", str(tiny_model), "--top", "5", "--json"],
    )
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert all(h["title"].startswith("Tune number") for h in hits)
    assert list(tiny_dataset.glob("embeddings-*.parquet"))  # cached for the next query
    (tmp_path / "t.abc").write_text(TUNE)
    out = tmp_path / "f.parquet"
    result = runner.invoke(app, ["embed", str(tmp_path / "t.abc"), "--model", str(tiny_model), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.num_rows == 1 and len(table.column("embedding")[0]) == 16


def test_search_like_a_score_in_abc_and_in_midi(tmp_path, tiny_model, tiny_dataset):
    from clamp.abc.render import abc_to_midi
    from clamp.data.shards import read_dataset

    abc = read_dataset(tiny_dataset, ["abc"]).column("abc")[0].as_py()
    (tmp_path / "t.abc").write_text(abc)
    args = ["--index", str(tiny_dataset), "--model", str(tiny_model), "--top", "3", "--json"]
    result = runner.invoke(app, ["search", "--like", str(tmp_path / "t.abc"), *args])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)  # the tune itself is in the index
    (tmp_path / "t.mid").write_bytes(abc_to_midi(abc))  # the same tune as a user's MIDI file
    result = runner.invoke(app, ["search", "--like", str(tmp_path / "t.mid"), *args])
    assert result.exit_code == 0, result.output
    assert [h["rank"] for h in json.loads(result.output)] == [1, 2, 3]
    result = runner.invoke(
        app, ["classify", str(tmp_path / "t.mid"), "--labels", "jig,reel", "--model", str(tiny_model), "--json"]
    )
    assert result.exit_code == 0 and {x["label"] for x in json.loads(result.output)[0]["labels"]} == {"jig", "reel"}
    assert "give a text query or --like FILE" in _error(runner.invoke(app, ["search", *args]))
    assert "give a text query or --like FILE" in _error(
        runner.invoke(app, ["search", "a jig", "--like", str(tmp_path / "t.abc"), *args])
    )


def test_crlf_files_read_like_training_data(tmp_path):
    from clamp.inference.files import read_music_file

    (tmp_path / "lf.abc").write_bytes(TUNE.encode())
    (tmp_path / "crlf.abc").write_bytes(TUNE.replace("\n", "\r\n").encode())
    assert read_music_file(tmp_path / "crlf.abc") == read_music_file(tmp_path / "lf.abc")


def test_an_invalid_build_config_names_the_field(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: x\nsources: [{kind: ftp}]\n")
    line = _error(runner.invoke(app, ["build", "--config", str(tmp_path / "bad.yaml")]))
    assert line == (
        "error: invalid BuildConfig setting sources.0.kind: Input should be 'music21', 'local', 'web' or 'manifest'"
    )


def test_bad_inputs_get_one_line_errors(tmp_path, tiny_model, tiny_dataset):
    model = ["--model", str(tiny_model)]
    assert "empty query" in _error(runner.invoke(app, ["search", "  ", "--index", str(tiny_dataset), *model]))
    assert "--top must be 1 or more, not 0" in _error(
        runner.invoke(app, ["search", "a jig", "--index", str(tiny_dataset), "--top", "0", *model])
    )
    # 4 MB of random text: the build's 1 MB record limit, checked before reading the file
    big = tmp_path / "noise.abc"
    big.write_bytes(bytes(random.Random(0).choices(b"abcdefgh |\n", k=4_000_000)))
    assert "too_large: 4000000 bytes > 1000000" in _error(
        runner.invoke(app, ["classify", str(big), "--labels", "jig,reel", *model])
    )
    small = tmp_path / "words.abc"
    small.write_text("the quick brown fox jumps over the lazy dog\n" * 20)
    assert "not_abc: no K: (key) field" in _error(
        runner.invoke(app, ["classify", str(small), "--labels", "jig,reel", *model])
    )
    # a folder of two unusable files: nothing to classify, and the first reason is named
    assert "no usable tune in 2 files; the first: unusable score" in _error(
        runner.invoke(app, ["classify", str(tmp_path), "--labels", "jig,reel", *model])
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no music files" in _error(
        runner.invoke(app, ["embed", str(empty), *model, "--out", str(tmp_path / "f.npy")])
    )
    assert "empty text" in _error(runner.invoke(app, ["embed", "--text", "", *model, "--out", str(tmp_path / "f.npy")]))
    assert "unknown benchmark 'mnist'" in _error(runner.invoke(app, ["eval", "--benchmarks", "mnist", *model]))
    (tmp_path / "train.yaml").write_text("steps: 0\n")
    assert _error(runner.invoke(app, ["train", "--config", str(tmp_path / "train.yaml")])).startswith(
        "error: invalid TrainConfig setting steps: Input should be greater than or equal to 1"
    )
    assert "invalid TrainConfig setting precision" in _error(runner.invoke(app, ["train", "--precision", "fp8"]))


def test_embed_a_directory_embeds_its_music_files(tmp_path, tiny_model):
    scores = tmp_path / "scores"
    (scores / "sub").mkdir(parents=True)
    (scores / "a.abc").write_text(TUNE)
    (scores / "sub" / "b.abc").write_text(TUNE.replace("Test Jig", "Other"))
    (scores / "readme.txt").write_text("not music")
    out = tmp_path / "f.parquet"
    result = runner.invoke(app, ["embed", str(scores), "--model", str(tiny_model), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).column("id").to_pylist() == [str(scores / "a.abc"), str(scores / "sub" / "b.abc")]


def test_debug_shows_the_traceback_and_internal_errors_keep_theirs(tmp_path, tiny_model, monkeypatch):
    missing = str(tmp_path / "missing.abc")
    shown = runner.invoke(app, ["--debug", "classify", missing, "--labels", "jig,reel", "--model", str(tiny_model)])
    assert shown.exit_code == 1 and isinstance(shown.exception, UserError)

    import clamp.inference.files as files

    def broken(path, max_bytes=None):
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(files, "read_music_tunes", broken)  # an internal failure, injected
    (tmp_path / "t.abc").write_text(TUNE)
    crashed = runner.invoke(
        app, ["classify", str(tmp_path / "t.abc"), "--labels", "jig,reel", "--model", str(tiny_model)]
    )
    assert crashed.exit_code == 1 and isinstance(crashed.exception, KeyError)
    assert "error:" not in crashed.output
