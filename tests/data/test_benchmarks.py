"""The benchmark registry: decontamination and evaluation read every benchmark the same way.

Most tests use a small benchmarks directory built from real files (a WikiMT subset, a few
VGMIDI phrases including a piece whose csv `id` repeats, a few Pianist8 files) plus a broken
MIDI file and a missing one, so conversion failures show up.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clamp.abc.normalize import normalize_abc
from clamp.abc.notation import canonical_abc, rewrite_unit_length
from clamp.data.benchmarks import BENCHMARKS, BenchmarkNotFound, conversion_cache, load_benchmark
from clamp.data.clean import content_hash
from clamp.data.decontam import load_reference_index
from clamp.data.dedup import minhash
from clamp.errors import UserError

# Two phrases of one piece share csv id 8016: ids must still be unique.
VGMIDI_PIECES = ("Boggys Igloo Happy", "Boggys Igloo Sad", "Caverns")
PIANISTS = ("Bethel", "Yiruma")


def _write_vgmidi(src: Path, dst: Path) -> int:
    with (src / "vgmidi_labelled.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = [r for r in reader if r["piece"] in VGMIDI_PIECES]
    for r in rows:
        (dst / r["midi"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / r["midi"], dst / r["midi"])
    missing = {**rows[0], "id": "9999", "midi": "labelled/phrases/missing_0.mid"}  # listed, file absent
    with (dst / "vgmidi_labelled.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows + [missing])
    return len(rows)


@pytest.fixture(scope="module")
def small_benchmarks(benchmarks_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("benchmarks")
    wikimt = json.loads((benchmarks_dir / "wikimt" / "wikimusictext.json").read_text(encoding="utf-8"))
    (root / "wikimt").mkdir()
    (root / "wikimt" / "wikimusictext.json").write_text(json.dumps(wikimt[:6]), encoding="utf-8")
    (root / "vgmidi").mkdir()
    assert _write_vgmidi(benchmarks_dir / "vgmidi", root / "vgmidi") == 4
    for pianist in PIANISTS:
        (root / "pianist8" / "midi" / pianist).mkdir(parents=True)
        for p in sorted((benchmarks_dir / "pianist8" / "midi" / pianist).glob("*.mid"))[:2]:
            shutil.copyfile(p, root / "pianist8" / "midi" / pianist / p.name)
    (root / "pianist8" / "midi" / "Yiruma" / "broken.mid").write_bytes(b"MThd not really a MIDI file")
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _midi_paths(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.mid"))


def test_registry_is_the_one_evaluation_uses():
    import clamp.eval.benchmarks as ev

    assert set(BENCHMARKS) == {"wikimt", "vgmidi", "pianist8"}
    assert ev.BENCHMARKS is BENCHMARKS and ev.load_benchmark is load_benchmark
    for spec in BENCHMARKS.values():
        assert spec.task and spec.source and spec.home.startswith("https://")


def test_every_registered_benchmark_is_decontaminated(small_benchmarks, cache):
    from clamp.eval.benchmarks import load_benchmark as eval_load

    index, stats = load_reference_index(small_benchmarks, cache)
    assert stats["missing"] == {}
    assert {n.split(":", 1)[0] for n in index.names} == set(BENCHMARKS)
    for name, spec in BENCHMARKS.items():
        bench = eval_load(name, small_benchmarks, cache)
        discovered = [it.id for it in spec.discover(small_benchmarks / spec.path)]
        # every discovered item is either evaluated and indexed, or a counted failure
        assert sorted(bench.ids + list(bench.failures)) == sorted(discovered)
        assert {n for n in index.names if n.startswith(f"{name}:")} == set(bench.ids), name
        assert set(bench.failures) <= set(stats["failures"])
        assert stats["by_benchmark"][name] == len(bench) > 0
        # a training row holding a benchmark item's music is caught, under the evaluation id, as the
        # build hashes it (canonical notation), also when it is written with another unit note length
        for item_id, abc in zip(bench.ids, bench.abc, strict=True):
            for written in (abc, rewrite_unit_length(abc, "1/4")):
                normalized = normalize_abc(canonical_abc(written))
                assert index.match(content_hash(normalized), minhash(normalized))[0] == item_id
    assert stats["items"] == len(index.names) == len(set(index.names))
    assert stats["conversion_failures"] == len(stats["failures"]) == 2


def test_conversion_failures_are_counted_per_item(small_benchmarks, cache):
    pianist8 = load_benchmark("pianist8", small_benchmarks, cache)
    assert list(pianist8.failures) == ["pianist8:Yiruma/broken.mid"]
    assert pianist8.failures["pianist8:Yiruma/broken.mid"].startswith("unparseable_midi")
    assert len(pianist8) == 4 and pianist8.classes == sorted(PIANISTS)
    vgmidi = load_benchmark("vgmidi", small_benchmarks, cache)
    assert list(vgmidi.failures) == ["vgmidi:labelled/phrases/missing_0.mid"]
    assert vgmidi.failures["vgmidi:labelled/phrases/missing_0.mid"].startswith("unreadable")


def test_vgmidi_ids_are_unique_midi_paths(small_benchmarks, cache, benchmarks_dir):
    bench = load_benchmark("vgmidi", small_benchmarks, cache)
    assert len(bench) == 4 == len(set(bench.ids))  # two phrases of csv id 8016 stay two items
    assert all(i.startswith("vgmidi:labelled/phrases/") and i.endswith(".mid") for i in bench.ids)
    assert set(bench.labels) <= {"happy", "tense", "sad", "calm"}
    # the full published csv: 204 phrases, 200 distinct csv ids, 204 distinct item ids
    spec = BENCHMARKS["vgmidi"]
    items = spec.discover(benchmarks_dir / spec.path)
    assert len(items) == 204 == len({it.id for it in items})
    assert all(it.midi.is_file() for it in items)


def test_pianist8_discovery_matches_the_published_layout(benchmarks_dir):
    spec = BENCHMARKS["pianist8"]
    items = spec.discover(benchmarks_dir / spec.path)
    on_disk = list((benchmarks_dir / spec.path).rglob("*.mid"))
    assert len(items) == len(on_disk) == 411 == len({it.id for it in items})  # nothing missed at other depths
    counts = {label: sum(it.label == label for it in items) for label in {it.label for it in items}}
    assert counts == {
        "Bethel": 48,
        "Clayderman": 49,
        "Einaudi": 55,
        "Hancock": 50,
        "Hillsong": 52,
        "Hisaishi": 49,
        "Ryuichi": 50,
        "Yiruma": 58,
    }
    assert all(it.id == f"pianist8:{it.label}/{it.midi.name}" for it in items)


def test_second_load_converts_nothing(small_benchmarks, tmp_path):
    conversions = conversion_cache(tmp_path)
    midi_bytes = [p.read_bytes() for p in _midi_paths(small_benchmarks)]
    assert all(conversions.get("midi", b) is None for b in midi_bytes)
    first = {name: load_benchmark(name, small_benchmarks, tmp_path) for name in BENCHMARKS}
    assert first["wikimt"].converted == 0
    assert first["vgmidi"].converted == 4 and first["pianist8"].converted == 5  # a failure is converted once too
    # every MIDI file is in the build's conversion cache, successes and failures alike
    assert all(conversions.get("midi", b) is not None for b in midi_bytes)
    assert conversions.root == tmp_path / "conversions"
    for name, bench in first.items():
        again = load_benchmark(name, small_benchmarks, tmp_path)
        assert again.converted == 0, name
        assert (again.ids, again.abc, again.labels, again.failures) == (
            bench.ids,
            bench.abc,
            bench.labels,
            bench.failures,
        )


def test_decontamination_and_evaluation_share_conversions(small_benchmarks, tmp_path):
    load_reference_index(small_benchmarks, tmp_path)
    assert load_benchmark("vgmidi", small_benchmarks, tmp_path).converted == 0
    assert load_benchmark("pianist8", small_benchmarks, tmp_path).converted == 0
    assert list(tmp_path.glob("decontam-*.npz")) and not list(tmp_path.glob(".*tmp*"))


def test_conversion_cache_is_the_builds(tmp_path, monkeypatch):
    from clamp.config import BuildConfig
    from clamp.data.prepare import PrepareConfig

    cfg = BuildConfig(cache_dir=tmp_path / "c", decontaminate=False, data_docs=False)
    assert Path(PrepareConfig.from_build(cfg).conversion_cache_dir) == conversion_cache(cfg.cache_dir).root
    monkeypatch.delenv("CLAMP_CACHE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    default = BuildConfig(decontaminate=False, data_docs=False)
    assert (
        conversion_cache().root
        == Path(PrepareConfig.from_build(default).conversion_cache_dir)
        == tmp_path / ".clamp/cache/conversions"
    )


def test_missing_benchmark_is_skipped_with_a_reason(small_benchmarks, tmp_path):
    root = tmp_path / "benchmarks"
    shutil.copytree(small_benchmarks, root)
    shutil.rmtree(root / "pianist8")
    with pytest.raises(BenchmarkNotFound, match="pianist8 not found at .*pianist8/midi") as err:
        load_benchmark("pianist8", root, tmp_path / "cache")
    assert isinstance(err.value, UserError) and isinstance(err.value, FileNotFoundError)  # eval skips it
    index, stats = load_reference_index(root, tmp_path / "cache")
    assert set(stats["missing"]) == {"pianist8"} and "pianist8" in stats["missing"]["pianist8"]
    assert not [n for n in index.names if n.startswith("pianist8:")]
    assert {n.split(":", 1)[0] for n in index.names} == {"wikimt", "vgmidi"}


def test_missing_directory_or_unknown_name_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="benchmarks directory not found"):
        load_reference_index(tmp_path / "nowhere", tmp_path / "cache")
    with pytest.raises(BenchmarkNotFound, match="benchmarks directory not found"):
        load_benchmark("wikimt", tmp_path / "nowhere")
    with pytest.raises(UserError, match="unknown benchmark 'nope'"):
        load_benchmark("nope", tmp_path)


def test_bad_labels_are_a_clear_error(small_benchmarks, tmp_path):
    root = tmp_path / "benchmarks"
    shutil.copytree(small_benchmarks, root)
    csv_path = root / "vgmidi" / "vgmidi_labelled.csv"
    csv_path.write_text(csv_path.read_text(encoding="utf-8").replace(",1,1\n", ",0,1\n", 1), encoding="utf-8")
    with pytest.raises(UserError, match=r"vgmidi_labelled.csv line 2: valence and arousal"):
        load_benchmark("vgmidi", root, tmp_path / "cache")


def test_data_layer_never_imports_eval_or_train():
    code = (
        "import sys, clamp.data.benchmarks, clamp.data.decontam; "
        "bad = sorted(m for m in sys.modules if m.startswith(('clamp.eval', 'clamp.train'))); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


@pytest.mark.slow
def test_published_benchmarks_are_all_decontaminated(benchmarks_dir, tmp_path):
    """The real directory: every item evaluation scores is in the reference, under the same id (~2 s)."""
    index, stats = load_reference_index(benchmarks_dir, tmp_path)
    assert stats["missing"] == {}
    sizes = {"wikimt": 1010, "vgmidi": 204, "pianist8": 411}
    for name in BENCHMARKS:
        bench = load_benchmark(name, benchmarks_dir, tmp_path)
        assert bench.converted == 0  # decontamination converted and cached everything
        assert len(bench) + len(bench.failures) == sizes[name]
        assert {n for n in index.names if n.startswith(f"{name}:")} == set(bench.ids)
    assert len(index.names) == len(set(index.names)) == stats["items"]
