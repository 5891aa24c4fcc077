"""Held-out tasks from rows with and without `metadata["labels"]`, the whole evaluation on them
(intervals, probes, report tables), and `clamp classify` on a file of several tunes."""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import pyarrow as pa
import pytest

from clamp.eval.benchmarks import (
    heldout_benchmark,
    heldout_items,
    item_labels,
    key_from_abc,
    load_heldout,
    meter_from_abc,
)

NOTES = "CDEFGABcdefg"
MOTIF = {"reel": ("4/4", "GABc dBGB"), "jig": ("6/8", "dAF DFA"), "waltz": ("3/4", "C2 E2 G2")}


def abc_tune(i: int, rhythm: str, meter: str, key: str, seed: int = 0) -> str:
    rng = random.Random(seed * 1000 + i)
    bars = ["".join(rng.choice(NOTES) for _ in range(6)) for _ in range(6 + i % 4)]
    motif = MOTIF.get(rhythm, ("", "CDEF GABc"))[1].replace(" ", "")
    return f"X:1\nT:Tune {i}\nR:{rhythm}\nM:{meter}\nL:1/8\nK:{key}\n|{motif}|" + "|".join(bars) + "|\n"


def write_rows(dataset_dir: Path, rows: list[dict]) -> Path:
    """A dataset folder of one shard with hand-made rows (id, abc, texts, metadata, split)."""
    from clamp.data.shards import SHARD_SCHEMA, patches_array, write_atomic

    n = len(rows)
    table = pa.table(
        {
            "id": [r["id"] for r in rows],
            "source": ["local"] * n,
            "source_format": ["abc"] * n,
            "abc": [r["abc"] for r in rows],
            "texts": [r["texts"] for r in rows],
            "metadata": [json.dumps(r["metadata"]) for r in rows],
            "provenance": [r["id"] for r in rows],
            "license": ["test"] * n,
            "patches": patches_array([bytes(64)] * n),
            "n_patches": [1] * n,
            "n_chars": [len(r["abc"]) for r in rows],
            "content_hash": [f"{i:032x}" for i in range(n)],
            "split": [r.get("split", "test") for r in rows],
        },
        schema=SHARD_SCHEMA,
    )
    write_atomic(table, dataset_dir / "shards" / "shard-00000.arrow")
    (dataset_dir / "manifest.json").write_text(
        json.dumps({"name": "hand-made", "shards": [{"path": "shards/shard-00000.arrow"}]})
    )
    return dataset_dir


def labelled_rows() -> list[dict]:
    """30 test rows carrying `labels` (and 5 train rows, never read)."""
    rows = []
    composers = ["Johann Sebastian Bach"] * 6 + ["Turlough O'Carolan"] * 5 + ["Niel Gow"] * 4 + [None] * 15
    collections = ["Ryan's Mammoth Collection"] * 12 + ["O'Neill's Music of Ireland"] * 12 + ["Aird's Airs"] * 6
    for i in range(30):
        rhythm = ["reel", "jig", "waltz"][i % 3]
        meter = MOTIF[rhythm][0]
        key = "G major" if i % 2 == 0 else "D major"
        labels = {"tune_type": rhythm, "key": key, "mode": "major", "meter": meter, "collection": collections[i]}
        if composers[i]:
            labels["composer"] = composers[i]
        # the ABC's own K: says A: the labels win over the header when a row has them
        rows.append(
            {
                "id": f"local:t{i:02d}",
                "abc": abc_tune(i, rhythm, meter, "A"),
                "texts": [f"Title: Tune {i}", f"Rhythm: {rhythm}"],
                "metadata": {"path": f"t{i:02d}.abc", "labels": labels},
            }
        )
    for i in range(5):
        rows.append(
            {
                "id": f"local:train{i}",
                "abc": abc_tune(100 + i, "polka", "2/4", "G"),
                "texts": ["Rhythm: polka"],
                "metadata": {"labels": {"tune_type": "polka", "key": "E minor"}},
                "split": "train",
            }
        )
    return rows


def unlabelled_rows() -> list[dict]:
    """Rows built before labels existed: composer from the texts, key and meter from the ABC header."""
    keys = ["Ador", "Gm", "Bb", "A Dorian"]  # A dorian, G minor, B flat major, A dorian
    meters = ["C|", "6/8", "6/8", "2/2"]
    composers = ["J.S. Bach", "J. S. Bach", "J.S. Bach", "Monteverdi"]
    rows = []
    for i in range(24):
        rows.append(
            {
                "id": f"music21:old/{i}",
                "abc": abc_tune(i, "hornpipe", meters[i % 4], keys[i % 4]),
                "texts": [f"Title: Old {i}", "Rhythm: Hornpipe", f"Composer: {composers[i % 4]}"],
                "metadata": {"collection": "oneills1850", "path": f"old/{i}"},
            }
        )
    return rows


def test_labels_come_from_metadata_labels(tmp_path):
    items = heldout_items(write_rows(tmp_path / "ds", labelled_rows()))
    assert len(items) == 30 and not any(i.startswith("local:train") for i in items.ids)  # the test split only
    assert items.labels[0]["key"] == "G major"  # not the header's K:A
    tune_type = heldout_benchmark(items, "tune_type")
    assert (tune_type.name, tune_type.task, tune_type.classes) == (
        "corpus-tune_type",
        "tune_type",
        ["jig", "reel", "waltz"],
    )
    assert heldout_benchmark(items, "key").classes == ["D major", "G major"]
    assert heldout_benchmark(items, "meter").classes == ["3/4", "4/4", "6/8"]
    # Aird's Airs has 6 items, under the 10 a collection needs
    collection = heldout_benchmark(items, "collection")
    assert collection.classes == ["O'Neill's Music of Ireland", "Ryan's Mammoth Collection"] and len(collection) == 24
    # every composer with 5 or more test items (Niel Gow has 4); the top-10 composer task needs 10
    composers = heldout_benchmark(items, "composer_all")
    assert (composers.task, composers.classes) == ("composer", ["Johann Sebastian Bach", "Turlough O'Carolan"])
    assert heldout_benchmark(items, "composer").classes == []
    assert load_heldout(tmp_path / "ds", "rhythm").classes == ["jig", "reel", "waltz"]  # still from "Rhythm: ..."
    assert load_heldout(tmp_path / "ds", "key", min_count=16).classes == []
    with pytest.raises(ValueError, match="must be one of"):
        load_heldout(tmp_path / "ds", "tempo")


def test_rows_without_labels_fall_back_to_texts_and_header(tmp_path):
    items = heldout_items(write_rows(tmp_path / "old", unlabelled_rows()))
    assert items.labels[0] == {
        "composer": "j.s. bach",
        "key": "A dorian",
        "mode": "dorian",
        "meter": "2/2",
        "rhythm": "hornpipe",
    }
    assert heldout_benchmark(items, "key", min_count=5).classes == ["A dorian", "B flat major", "G minor"]
    assert heldout_benchmark(items, "meter").classes == ["2/2", "6/8"]
    # "J.S. Bach" and "J. S. Bach" are one class, shown in its most frequent spelling
    assert heldout_benchmark(items, "composer").classes == ["j.s. bach"]
    assert len(heldout_benchmark(items, "composer_all")) == 24
    assert heldout_benchmark(items, "composer_all").classes == ["j.s. bach", "monteverdi"]
    assert len(heldout_benchmark(items, "tune_type")) == 0  # tune types only from labels
    assert len(heldout_benchmark(items, "collection")) == 0


@pytest.mark.parametrize(
    ("field", "want"),
    [
        ("K:G", ("G major", "major")),
        ("K:Em", ("E minor", "minor")),
        ("K:Bbm", ("B flat minor", "minor")),
        ("K:F#", ("F sharp major", "major")),
        ("K:Dmix", ("D mixolydian", "mixolydian")),
        ("K:A Minor", ("A minor", "minor")),
        ("K:E phr -8va", ("E phrygian", "phrygian")),
        ("K:C clef=bass", ("C major", "major")),
        ("K:G treble", ("G major", "major")),
        ("K:Gmin % comment", ("G minor", "minor")),
        ("K:HP", None),
        ("K:none", None),
        ("K:", None),
    ],
)
def test_key_from_the_header(field, want):
    assert key_from_abc(f"X:1\nT:t\n{field}\nabc|\n") == want


@pytest.mark.parametrize(
    ("field", "want"),
    [
        ("M:6/8", "6/8"),
        ("M:C", "4/4"),
        ("M:C|", "2/2"),
        ("M: 3/4 ", "3/4"),
        ("M:2+3/8", "2+3/8"),
        ("M:none", None),
        ("", None),
    ],
)
def test_meter_from_the_header(field, want):
    assert meter_from_abc(f"X:1\n{field}\nK:G\nabc|\nM:3/4\n") == want  # a change after K: is not the header


def test_labels_ignore_bad_values():
    meta = {"labels": {"key": "G major", "tempo": "", "composer": "???", "meter": None, "period": True}}
    assert item_labels(["Origin: Europa, Deutschland"], meta, "K:D\n") == {"key": "G major", "origin": "deutschland"}
    assert item_labels([], "not json", "M:6/8\nK:D\n") == {"key": "D major", "mode": "major", "meter": "6/8"}


# ------------------------------------------------------------------ the evaluation and its tables


@pytest.mark.slow
def test_evaluation_with_intervals_probes_and_report(tmp_path, tiny_model, capsys):
    from clamp.eval.config import EvalConfig
    from clamp.eval.run import evaluate
    from clamp.eval.tables import print_results_table, results_table

    dataset = write_rows(tmp_path / "ds", labelled_rows())
    (tmp_path / "no-benchmarks").mkdir()
    cfg = EvalConfig(
        model_dir=str(tiny_model),
        benchmarks=["wikimt"],
        benchmarks_dir=str(tmp_path / "no-benchmarks"),
        dataset_dir=str(dataset),
        out_dir=str(tmp_path / "eval"),
        mlflow=False,
        bootstrap_resamples=200,
    )
    results = evaluate(cfg)
    names = [(r.model.endswith("-untrained"), r.benchmark) for r in results]
    heldout = [
        "corpus-rhythm",
        "corpus-tune_type",
        "corpus-key",
        "corpus-meter",
        "corpus-collection",
        "corpus-composer_all",
    ]
    assert names == [(False, b) for b in [*heldout, "corpus-probe"]] + [(True, b) for b in [*heldout, "corpus-probe"]]
    key = results[2].metrics
    for name in ("corpus-key/zero_shot/accuracy", "corpus-key/zero_shot/macro_f1"):
        assert key[f"{name}_ci_low"] <= key[name] <= key[f"{name}_ci_high"]
    assert key["corpus-key/baseline/chance/accuracy"] == 0.5 and key["corpus-key/classes"] == 2.0
    assert -1.0 <= key["corpus-key/embedding/mean_cosine"] <= 1.0 and key["corpus-key/embedding/uniformity"] <= 0.0
    probe = results[6].metrics
    for name in (
        "a_tune_in_g_major",
        "a_jig_in_6-8",
        "key",
        "meter",
        "tune_type",
        "fixed",
        "user",
        "user-key",
        "user/a_fast_reel",
    ):
        assert f"corpus-probe/{name}/p_at_10" in probe and f"corpus-probe/{name}/p_at_10_ci_high" in probe
    assert probe["corpus-probe/a_jig_in_6-8/random"] == pytest.approx(10 / 30)
    assert probe["corpus-probe/key/queries"] == 2.0 and probe["corpus-probe/tune_type/queries"] == 3.0
    assert "corpus-probe/a_polka/p_at_10" not in probe  # the polkas are in the train split
    assert (tmp_path / "eval" / results[0].model / "corpus-probe-queries.csv").is_file()

    report = results_table(results)
    json.dumps(report)  # what the Prefect flow returns
    key_rows = [r for r in report["quality"] if r["benchmark"] == "corpus-key"]
    assert [r["model"] for r in key_rows] == [
        results[0].model,
        f"{results[0].model}-untrained",
        "header-only LR",
        "chance",
        "majority",
    ]
    assert re.fullmatch(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\]", key_rows[0]["user prompts acc"])
    assert re.fullmatch(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\]", key_rows[0]["training prompts acc"])
    # the train rows' keys (E minor) are not the task's classes: the header baseline falls back
    # to the first class, D major, which 15 of the 30 test rows have
    assert key["corpus-key/baseline/header/accuracy"] == 0.5
    assert key_rows[3]["user prompts acc"] == "0.50"
    # the input controls, for the trained model only: the canonical model reads L:1/4 and L:1/16
    # rewrites of a tune as the tune itself, so nothing it predicts changes
    for control in ("unit-1-4", "unit-1-16", "chords-removed"):
        assert key[f"corpus-key.{control}/agreement"] == 1.0, control
        assert key[f"corpus-key.{control}/user_prompts/accuracy"] == key["corpus-key/user_prompts/accuracy"]
    assert 0.0 <= key["corpus-key.notes-only/agreement"] <= 1.0 and key["corpus-key.notes-only/items"] == 30.0
    assert 0.0 <= key["corpus-key.midi-route/agreement"] <= 1.0
    assert not any(k.startswith("corpus-key.") for k in results[9].metrics)  # not for the twin
    # each control's predictions, item by item, for paired comparisons of two models
    rows = list(csv.DictReader((tmp_path / "eval" / results[0].model / "corpus-key.notes-only-predictions.csv").open()))
    assert len(rows) == 30
    hits = sum(r["user_prompts_prediction"] == r["label"] for r in rows)
    assert hits / 30 == pytest.approx(key["corpus-key.notes-only/user_prompts/accuracy"])
    assert not (tmp_path / "eval" / results[9].model / "corpus-key.notes-only-predictions.csv").exists()
    controls = [r for r in report["controls"] if r["benchmark"] == "corpus-key"]
    assert [r["input"] for r in controls] == [
        "as given",
        "notes-only",
        "chords-added",
        "chords-removed",
        "unit-1-4",
        "unit-1-16",
        "midi-route",
        "notes-only-chords-added",
        "notes-only-unit-1-4",
    ]
    assert controls[4]["agreement"] == "1.00"
    # ... and with the header gone, chords or L:1/4 change nothing the canonical form does not undo
    for control in ("notes-only-chords-added", "notes-only-unit-1-4"):
        assert key[f"corpus-key.{control}/user_prompts/accuracy"] == key["corpus-key.notes-only/user_prompts/accuracy"]
    probes = {r["probe"]: r for r in report["probes"]}
    assert probes["a jig in 6/8"]["random"] == "0.33"
    assert re.fullmatch(
        r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\]", probes["mean: key: one query per class"][f"{results[0].model} P@10"]
    )
    print_results_table(report, "benchmarks")
    out = capsys.readouterr().out
    assert re.search(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\]", out)
    assert "retrieval probes" in out and "a jig in 6/8" in out


def test_collapse_is_reported_for_trained_models_only(capsys):
    from clamp.eval.result import EvalResult
    from clamp.eval.tables import collapse_warnings, print_results_table, results_table

    results = [
        EvalResult("m", "b", {"b/embedding/mean_cosine": 0.971, "b/zero_shot/accuracy": 0.5}, []),
        EvalResult("m-untrained", "b", {"b/embedding/mean_cosine": 0.999}, []),
        EvalResult("m", "c", {"c/embedding/mean_cosine": 0.40}, []),
        EvalResult("m", "d", {"d/embedding/mean_cosine": 0.953}, []),
    ]
    assert collapse_warnings(results) == [
        "embeddings have collapsed on b: mean pairwise cosine 0.97 (m)",
        "embeddings have collapsed on d: mean pairwise cosine 0.953 (m)",
    ]
    print_results_table(results_table(results))
    assert "warning: embeddings have collapsed on b: mean pairwise cosine 0.97 (m)" in capsys.readouterr().out


@pytest.mark.slow
def test_classify_every_tune_of_a_file(tmp_path, tiny_model):
    from typer.testing import CliRunner

    from clamp.cli import app

    two = tmp_path / "two.abc"
    two.write_text(
        abc_tune(1, "jig", "6/8", "D").replace("T:Tune 1", "T:First")
        + "\n"
        + abc_tune(2, "reel", "4/4", "G").replace("X:1", "X:2").replace("T:Tune 2", "T:Second")
    )
    args = ["classify", str(two), "--labels", "jig,reel,waltz", "--model", str(tiny_model)]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    tunes = json.loads(result.output)
    assert [(t["index"], t["title"]) for t in tunes] == [(1, "First"), (2, "Second")]
    for t in tunes:
        assert sorted(r["label"] for r in t["labels"]) == ["jig", "reel", "waltz"]
        assert [r["score"] for r in t["labels"]] == sorted((r["score"] for r in t["labels"]), reverse=True)
    text = CliRunner().invoke(app, args)
    assert text.exit_code == 0, text.output
    assert "tune 1: First" in text.output and "tune 2: Second" in text.output
    # a tune with no K: field is reported and skipped; the others are classified
    mixed = tmp_path / "mixed.abc"
    mixed.write_text(two.read_text() + "\nX:3\nT:Just words\nthe quick brown fox\n")
    tunes = json.loads(
        CliRunner()
        .invoke(app, ["classify", str(mixed), "--labels", "jig,reel", "--model", str(tiny_model), "--json"])
        .output
    )
    assert [t.get("error", "")[:7] for t in tunes] == ["", "", "not_abc"] and "labels" not in tunes[2]


@pytest.mark.slow
def test_classify_several_files_and_a_folder(tmp_path, tiny_model):
    from typer.testing import CliRunner

    from clamp.cli import app

    folder = tmp_path / "tunes"
    folder.mkdir()
    (folder / "a.abc").write_text(abc_tune(1, "jig", "6/8", "D").replace("T:Tune 1", "T:First"))
    (folder / "b.abc").write_text("the quick brown fox\n")  # no tune in it: reported, not fatal
    single = tmp_path / "c.abc"
    single.write_text(abc_tune(2, "reel", "4/4", "G").replace("T:Tune 2", "T:Third"))
    args = ["--labels", "jig,reel", "--model", str(tiny_model)]
    result = CliRunner().invoke(app, ["classify", str(folder), str(single), *args, "--json"])
    assert result.exit_code == 0, result.output
    tunes = json.loads(result.output)
    # folders are read recursively and sorted, then the files as given
    assert [(Path(t["file"]).name, t["index"], t["title"]) for t in tunes] == [
        ("a.abc", 1, "First"),
        ("b.abc", None, None),
        ("c.abc", 1, "Third"),
    ]
    assert "not_abc" in tunes[1]["error"] and "labels" not in tunes[1]
    # the same tune gets the same scores alone and in a batch of several files
    alone = json.loads(CliRunner().invoke(app, ["classify", str(single), *args, "--json"]).output)
    assert [r["label"] for r in alone[0]["labels"]] == [r["label"] for r in tunes[2]["labels"]]
    assert [r["score"] for r in alone[0]["labels"]] == pytest.approx([r["score"] for r in tunes[2]["labels"]], abs=2e-4)
    text = CliRunner().invoke(app, ["classify", str(folder), str(single), *args]).output
    assert f"{folder / 'a.abc'}, tune 1: First" in text and f"{single}, tune 1: Third" in text
    assert f"{folder / 'b.abc'}, (whole file)\n  skipped: unusable score" in text


def test_the_config_offers_every_heldout_task():
    from clamp.eval.benchmarks import HELDOUT_TASKS
    from clamp.eval.config import HELDOUT_FIELDS, EvalConfig

    assert set(HELDOUT_FIELDS) == set(HELDOUT_TASKS)
    assert EvalConfig().heldout_fields == list(HELDOUT_FIELDS)  # default: all
