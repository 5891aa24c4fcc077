"""Captions (clamp.text.captions): phrasings, determinism, failures, and the build that writes them."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pytest

from clamp.data.prepare import (
    CAPTION_FAILURES_KEY,
    CAPTIONED_KEY,
    PrepareConfig,
    caption_counts,
    prepare_table,
)
from clamp.data.records import RawRecord, records_to_table
from clamp.text import tune_facts as tune_facts_module
from clamp.text.captions import (
    CAPTIONS_VERSION,
    PHRASINGS,
    captions,
    describe,
    seed_of,
)
from clamp.text.labels import labels_of
from clamp.text.tune_facts import facts_of, origin
from tests.conftest import write_tunes
from tests.data.test_labels import BACH_CHORALE, BACH_ID, ESSEN_ID, ESSEN_SONG, RYAN_ID, RYAN_REEL

# oneills1850/0101-0200.abc, tune 6 (as in the corpus)
ONEILL_AIR = """X: 106
T: Lord Doneraile
N:"With spirit" "collected by J.O'Neill"
B:O'Neill's 106
Z:Transcribed by henrik.norbeck@mailbox.swipnet.se
M:6/8
L:1/8
K:Gm
D|G>AG (Gc>)c|(A<F)F F2 A|G>AG (Gg>)g|(fd>)d d2 (d/=e/)|
f>gf {g}fed|c>dB ABc|d>ed {e}dzc|(B<G)G G2||
d|g>dg gab|(a<f).f f2 a|g>ag gfe|(f<d).d d2 =e|
f>gf Tfed|cdB ABc|d>ed {e}dzc|(B<G)G G2||
D|G3 c3|(A<F)F F2 A|G3 g2 e|(f<d)d d2 =e|
f>gf Tfed|cdB ABc|d>ed {e}dzc|(B<G)G G2||
"""
ONEILL_ID = "music21:oneills1850/0101-0200.abc#6"


def _all_phrasings(abc: str, metadata: dict, row_id: str, texts: list[str] | None = None) -> dict[str, str]:
    facts = facts_of(abc, labels_of(abc, texts or [], metadata, row_id), metadata, row_id)
    return {p.__name__: text for p in PHRASINGS if (text := p(facts))}


def test_phrasings_of_a_ryans_reel():
    assert _all_phrasings(RYAN_REEL, {}, RYAN_ID) == {
        "p_key": "In D major.",
        "p_meter": "In 2/2 time.",
        "p_tempo_kind_key": "A reel in D major, in 2/2.",
        "p_collection_bars_range": "Reel from Ryan's Mammoth Collection, 16 bars, ranging from D4 to B5.",
        "p_title": "The Alhambra: a reel in D major.",
        "p_length_range": "A 16-bar reel in 2/2 whose melody spans D4 to B5.",
        "p_mode": "Reel in a major key (D major), for fiddle.",
        "p_meter_tempo": "In 2/2 time: a reel.",
        "p_instrument": "A fiddle tune: a reel in D major from Ryan's Mammoth Collection.",
    }


def test_phrasings_of_an_essen_song():
    assert _all_phrasings(ESSEN_SONG, {}, ESSEN_ID) == {
        "p_tempo_kind_key": "A German folk song in G major, in 3/4.",
        "p_collection_bars_range": (
            "German folk song from the Essen Folksong Collection, 4 bars, ranging from D4 to B4."
        ),
        "p_origin_key_time": "A German folk song from Hesse in G major, 3/4 time.",
        "p_title": "Das Bauerntoechterlein: a German folk song in G major.",
        "p_length_range": "A 4-bar German folk song in 3/4 whose melody spans D4 to B4.",
        "p_mode": "German folk song in a major key (G major).",
        "p_meter_tempo": "In 3/4 time: a German folk song.",
        "p_key": "In G major.",
        "p_meter": "In 3/4 time.",
    }


def test_phrasings_of_an_oneills_air_with_a_tempo_word():
    phrasings = _all_phrasings(ONEILL_AIR, {}, ONEILL_ID)
    assert phrasings["p_tempo_kind_key"] == "A spirited tune in G minor, in 6/8."
    assert phrasings["p_collection_bars_range"] == (
        "Irish tune from O'Neill's Music of Ireland, 24 bars, ranging from D4 to B5."
    )
    assert phrasings["p_meter_tempo"] == "Spirited, in 6/8 time: an Irish tune."


def test_phrasings_of_a_bach_chorale():
    phrasings = _all_phrasings(BACH_CHORALE, {"composer": "J.S. Bach"}, BACH_ID, ["Title: BWV 10.7"])
    assert phrasings["p_composer"] == (
        "A chorale by Johann Sebastian Bach, a Baroque composer, for four voices (Soprano, Alto, Tenor, Bass)."
    )
    assert phrasings["p_tempo_kind_key"] == "A chorale in G minor, in 4/4."
    assert phrasings["p_title"] == "BWV 10.7: a chorale in G minor."  # the file name and copyright titles are skipped
    assert phrasings["p_period_style"] == "Baroque music for four voices (Soprano, Alto, Tenor, Bass), in G minor."


def test_origin():
    assert origin(ESSEN_SONG, ESSEN_ID) == ("German", "Hesse")
    assert origin("X:1\nO: China, Shaanxi, Yanchang\nK:G\nG|\n") == ("Chinese", "Shaanxi")
    assert origin("X:1\nO: Lothringen\nK:G\nG|\n") == (None, "Lorraine")
    assert origin("X:1\nC:Irish.\nK:G\nG|\n", "music21:airdsAirs/book1.abc#2") == ("Irish", None)
    assert origin(ONEILL_AIR, ONEILL_ID) == ("Irish", None)  # the collection's
    assert origin(RYAN_REEL, RYAN_ID) == (None, None)


@pytest.mark.parametrize(
    ("abc", "row_id", "metadata"),
    [
        (RYAN_REEL, RYAN_ID, {}),
        (ESSEN_SONG, ESSEN_ID, {}),
        (ONEILL_AIR, ONEILL_ID, {}),
        (BACH_CHORALE, BACH_ID, {"composer": "J.S. Bach"}),
    ],
)
def test_captions_are_3_to_6_distinct_sentences_with_the_plain_one_first(abc, row_id, metadata):
    out = captions(abc, [], metadata, row_id, 20)
    assert 3 <= len(out) <= 7
    assert len(set(out)) == len(out)
    assert all(c.endswith(".") and c[0].isupper() for c in out)
    assert set(out) <= set(_all_phrasings(abc, metadata, row_id).values())
    assert out[0] == _all_phrasings(abc, metadata, row_id)["p_tempo_kind_key"]


def test_captions_always_name_the_collection_and_the_composer():
    assert "Reel from Ryan's Mammoth Collection, 16 bars, ranging from D4 to B5." in captions(
        RYAN_REEL, [], {}, RYAN_ID
    )
    bach = captions(BACH_CHORALE, [], {}, BACH_ID)
    assert any("by Johann Sebastian Bach, a Baroque composer" in c for c in bach)


def test_captions_are_deterministic_from_the_row_id():
    first = captions(RYAN_REEL, [], {}, RYAN_ID, 20)
    assert captions(RYAN_REEL, [], {}, RYAN_ID, 20) == first
    # pinned: the choice depends only on SHA-256 of the id and Python's documented Random
    assert seed_of(RYAN_ID) == int.from_bytes(hashlib.sha256(RYAN_ID.encode()).digest()[:8], "big")
    assert first == [
        "A reel in D major, in 2/2.",
        "Reel from Ryan's Mammoth Collection, 16 bars, ranging from D4 to B5.",
        "In 2/2 time: a reel.",
        "In D major.",
        "In 2/2 time.",
    ]
    # other ids draw other phrasings of the same tune
    draws = {tuple(captions(RYAN_REEL, [], {}, f"music21:ryansMammoth/x{i}.abc#1")) for i in range(20)}
    assert len(draws) > 3


def test_a_tune_that_cannot_be_analysed_gets_no_captions(monkeypatch):
    def broken(abc: str) -> tuple[str, str] | None:
        raise ValueError("cannot read this tune")

    monkeypatch.setattr(tune_facts_module, "pitch_range", broken)
    found = describe(RYAN_REEL, [], {}, RYAN_ID, 20)
    assert found.captions == []
    assert found.error == "ValueError: cannot read this tune"
    assert found.labels["tune_type"] == "reel"  # what was found before the failure is kept
    assert captions(RYAN_REEL, [], {}, RYAN_ID) == []


def _fail_analysis_of(monkeypatch, marker: str) -> None:
    """Make the analysis of any tune containing `marker` raise (an injected fault)."""
    real = tune_facts_module.pitch_range

    def failing(abc: str) -> tuple[str, str] | None:
        if marker in abc:
            raise RuntimeError("boom")
        return real(abc)

    monkeypatch.setattr(tune_facts_module, "pitch_range", failing)


def test_prepare_adds_captions_and_labels_and_counts_failures(monkeypatch):
    _fail_analysis_of(monkeypatch, "Bauerntoechterlein")
    raw = records_to_table(
        [
            RawRecord(
                id=RYAN_ID,
                source="music21",
                format="abc",
                content=RYAN_REEL.encode(),
                metadata={"collection": "ryansMammoth"},
            ),
            RawRecord(id=ESSEN_ID, source="music21", format="abc", content=ESSEN_SONG.encode()),
        ]
    )
    prepared, quarantined = prepare_table(raw, PrepareConfig())
    assert quarantined.num_rows == 0
    reel, song = prepared.to_pylist()
    # cleaned raw fields first (the credit and the bare number dropped), then the captions
    assert reel["texts"][:3] == ["Title: The Alhambra -- Reel", "Rhythm: reel", "Book: Ryan's Mammoth Collection"]
    assert reel["texts"][3:] == captions(RYAN_REEL, [], {"collection": "ryansMammoth"}, RYAN_ID)
    meta = json.loads(reel["metadata"])
    assert meta["collection"] == "ryansMammoth"  # the source's keys are kept
    assert meta["labels"] == {
        "tune_type": "reel",
        "key": "D major",
        "mode": "major",
        "meter": "2/2",
        "collection": "Ryan's Mammoth Collection",
    }
    assert meta["n_captions"] == len(reel["texts"]) - 3
    # the failing tune keeps its raw fields only, and is counted
    assert song["texts"] == [
        "Title: Das Bauerntoechterlein",
        "Origin: Mitteleuropa, Deutschland (BRD) , Hessen, Odenwald",
        "Rhythm: song",
    ]
    assert json.loads(song["metadata"])["n_captions"] == 0
    assert prepared.schema.metadata[CAPTIONED_KEY] == b"1"
    assert prepared.schema.metadata[CAPTION_FAILURES_KEY] == b"1"


def test_build_writes_captions_labels_and_coverage(tmp_path, monkeypatch):
    from clamp.config import BuildConfig, SourceSpec
    from clamp.data import build
    from clamp.data.shards import read_dataset

    _fail_analysis_of(monkeypatch, "T:Tune number 4\n")
    write_tunes(tmp_path / "src", 9)
    cfg = BuildConfig(
        name="captions",
        output_dir=tmp_path / "out",
        cache_dir=tmp_path / "cache",
        sources=[SourceSpec(kind="local", path=str(tmp_path / "src"))],
        shard_size=4,
        chunk_size=5,
        decontaminate=False,
        data_docs=False,
        valid_fraction=0.0,
        test_fraction=0.0,
    )
    summary = build.build_dataset(cfg)
    assert summary.rows_written == 9
    rows = {r["id"]: r for r in read_dataset(cfg.dataset_dir).to_pylist()}
    jig = rows["local:tune000.abc"]
    assert jig["texts"][:2] == ["Title: Tune number 0", "Rhythm: jig"]
    assert jig["texts"][2] == "A jig in G major, in 6/8."
    labels = json.loads(jig["metadata"])["labels"]
    assert labels == {"tune_type": "jig", "key": "G major", "mode": "major", "meter": "6/8"}
    waltz = rows["local:tune002.abc"]
    assert json.loads(waltz["metadata"])["labels"]["tune_type"] == "waltz"
    assert rows["local:tune004.abc"]["texts"] == ["Title: Tune number 4", "Rhythm: reel"]
    on_disk = json.loads((cfg.dataset_dir / "summary.json").read_text())
    assert on_disk["caption_coverage"] == summary.caption_coverage == round(8 / 9, 4)
    assert on_disk["caption_failures"] == summary.caption_failures == 1
    captions_written = {
        t for r in rows.values() for t in r["texts"][len(r["texts"]) - json.loads(r["metadata"])["n_captions"] :]
    }
    assert on_disk["distinct_captions"] == len(captions_written) > 9
    assert not any(t.startswith(("Title:", "Rhythm:")) for t in captions_written)
    assert (
        sum(caption_counts(p)["captioned"] for p in (cfg.dataset_dir / "_work" / "prepared").glob("chunk-?????.arrow"))
        == 8
    )

    # a rerun skips preparation; a new CAPTIONS_VERSION redoes it
    again = build.build_dataset(cfg)
    assert again.chunks_skipped == 2
    monkeypatch.setattr(build, "CAPTIONS_VERSION", CAPTIONS_VERSION + 1)
    assert build.build_dataset(cfg).chunks_skipped == 0


def test_prepared_tables_without_caption_counts_read_as_zero(tmp_path):
    from clamp.data.shards import write_atomic

    path = tmp_path / "old.arrow"
    write_atomic(pa.table({"id": ["a"]}), path)
    assert caption_counts(path) == {"captioned": 0, "caption_failures": 0}
