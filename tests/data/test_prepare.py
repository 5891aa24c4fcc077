"""prepare_table: every raw row is prepared or quarantined with the exact reason code."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from clamp.abc.normalize import normalize_abc
from clamp.data.clean import content_hash
from clamp.data.dedup import NUM_PERM, minhash
from clamp.data.prepare import (
    PREPARED_SCHEMA,
    QUARANTINE_SCHEMA,
    ConversionCache,
    PrepareConfig,
    prepare_table,
)
from clamp.data.records import RawRecord, records_to_table
from clamp.text.captions import captions


def patches_of(patch_bytes: bytes) -> np.ndarray:
    """(n_patches, 64) view of a prepared row's `patch_bytes`."""
    return np.frombuffer(patch_bytes, dtype=np.uint8).reshape(-1, 64)


GOOD_ABC = "X:1\nT:Good Tune\nR:jig\nM:6/8\nL:1/8\nK:G\n|:GAB cde|dcB A2G:|\n"
GOOD_NORMALIZED = "M:6/8\nL:1/8\nK:G\n|:GAB cde|dcB A2G:|\n"
MAX_BYTES = 200

# id -> (record, expected (stage, reason)) ; None means prepared
CASES: dict[str, tuple[RawRecord, tuple[str, str] | None]] = {}


def _add(rid: str, fmt: str, content: bytes, expected: tuple[str, str] | None, **kw) -> None:
    CASES[rid] = (
        RawRecord(id=rid, source="test", format=fmt, content=content, provenance=f"mem://{rid}", **kw),
        expected,
    )


_add("good", "abc", GOOD_ABC.encode(), None, texts=["A lively jig."], metadata={"k": "v"}, license="CC0")
_add("empty", "abc", b"", ("convert", "empty"))
_add("blank", "abc", b"  \n\n ", ("convert", "empty"))
_add("binary", "abc", b"X:1\nK:C\nab\x00c|\n", ("convert", "binary"))
_add("header_only", "abc", b"X:2\nT:Nothing\nM:4/4\nK:C\n", ("clean", "header_only"))
_add("undecodable", "abc", b"X:3\nT:\x81\x8d\x8f\x90\x9d\nK:C\nabc|\n", ("convert", "undecodable"))
_add("too_large", "abc", b"X:4\nK:C\n" + b"abc|" * 60, ("convert", "too_large"))
_add("control", "abc", b"X:5\nK:C\n" + b"a\x01b\x02c|" * 5, ("clean", "control_characters"))
_add(
    "bad_xml",
    "musicxml",
    b"<?xml version='1.0'?><score-partwise><part id='P1'><measure",
    ("convert", "unparseable_musicxml"),
)
_add("bad_mxl", "mxl", b"PK\x03\x04 not a zip", ("convert", "unparseable_musicxml"))
_add("bad_midi", "midi", b"MThd garbage", ("convert", "unparseable_midi"))
_add("bad_format", "mp3", b"ID3 something", ("convert", "unsupported_format"))


def test_cases_are_what_they_claim():
    assert len(CASES["too_large"][0].content) > MAX_BYTES
    assert all(len(rec.content) <= MAX_BYTES for rid, (rec, _) in CASES.items() if rid != "too_large")


@pytest.fixture(scope="module")
def result() -> tuple[pa.Table, pa.Table]:
    raw = records_to_table(rec for rec, _ in CASES.values())
    return prepare_table(raw, PrepareConfig(max_record_bytes=MAX_BYTES))


def test_every_row_lands_exactly_once(result):
    prepared, quarantined = result
    assert prepared.num_rows + quarantined.num_rows == len(CASES)
    ids = prepared.column("id").to_pylist() + quarantined.column("id").to_pylist()
    assert sorted(ids) == sorted(CASES)


def test_schemas(result):
    prepared, quarantined = result
    assert prepared.schema.equals(PREPARED_SCHEMA)
    assert quarantined.schema.equals(QUARANTINE_SCHEMA)


@pytest.mark.parametrize("rid", [rid for rid, (_, exp) in CASES.items() if exp is not None])
def test_quarantine_reason(result, rid):
    _, quarantined = result
    rows = {r["id"]: r for r in quarantined.to_pylist()}
    assert rid in rows, f"{rid} was not quarantined"
    row = rows[rid]
    record, (stage, reason) = CASES[rid]
    assert (row["stage"], row["reason"]) == (stage, reason), row["detail"]
    assert row["content"] == record.content
    assert row["format"] == record.format
    assert row["provenance"] == f"mem://{rid}"
    assert row["source"] == "test"


def test_good_record_prepared(result):
    prepared, _ = result
    assert prepared.column("id").to_pylist() == ["good"]
    row = prepared.to_pylist()[0]
    assert row["abc"] == GOOD_ABC
    assert row["source_format"] == "abc"
    assert row["n_chars"] == len(GOOD_NORMALIZED) == 36
    assert row["content_hash"] == content_hash(GOOD_NORMALIZED)
    assert len(row["patch_bytes"]) % 64 == 0
    patches = patches_of(row["patch_bytes"])
    # M:, L:, K: headers, the two bars (leading |: glued), and the end patch
    assert patches.shape == (6, 64)
    assert patches[3].tolist()[:11] == [ord(c) - 31 for c in "|:GAB cde|"] + [97]
    assert patches[-1].tolist() == [97] * 64
    assert row["minhash"] == minhash(GOOD_NORMALIZED).tobytes()
    assert len(row["minhash"]) == NUM_PERM * 4
    # cleaned info fields and source texts, then the captions (docs/shard-schema.md, "Captions and labels")
    assert row["texts"][:3] == ["Title: Good Tune", "Rhythm: jig", "A lively jig."]
    assert row["texts"][3:] == captions(GOOD_ABC, ["A lively jig."], {"k": "v"}, "good")
    assert row["texts"][3] == "A jig in G major, in 6/8."
    assert json.loads(row["metadata"]) == {
        "k": "v",
        "labels": {"tune_type": "jig", "key": "G major", "mode": "major", "meter": "6/8"},
        "n_captions": len(row["texts"]) - 3,
    }
    assert row["license"] == "CC0"
    assert normalize_abc(row["abc"]) == GOOD_NORMALIZED


def test_m3_mode_patches_the_tune_as_written_without_text_fields():
    raw = records_to_table([CASES["good"][0]])
    prepared, quarantined = prepare_table(raw, PrepareConfig(patch_mode="m3"))
    assert quarantined.num_rows == 0
    row = prepared.to_pylist()[0]
    m3_input = "X:1\nM:6/8\nL:1/8\nK:G\n|:GAB cde|dcB A2G:|\n"  # T: and R: are the text side
    assert row["n_chars"] == len(m3_input)
    patches = patches_of(row["patch_bytes"])
    # begin, X:, M:, L:, K:, two bars, end
    assert patches.shape == (8, 64)
    assert patches[0].tolist() == [1] * 64
    # the exact-duplicate key is the same in both modes (it is over clamp-v1-normalized text)
    assert row["content_hash"] == content_hash(GOOD_NORMALIZED)


def test_max_patches_respected():
    raw = records_to_table([CASES["good"][0]])
    prepared, _ = prepare_table(raw, PrepareConfig(max_patches=2))
    assert len(prepared.column("patch_bytes")[0].as_py()) == 2 * 64


def test_conversion_cache_records_failures(tmp_path):
    raw = records_to_table([CASES["bad_midi"][0], CASES["good"][0]])
    cfg = PrepareConfig(conversion_cache_dir=str(tmp_path))
    first = prepare_table(raw, cfg)
    cached = ConversionCache(tmp_path).get("midi", b"MThd garbage")
    assert cached is not None
    abc, error = cached
    assert abc is None and error.startswith("unparseable_midi")
    # only the converted record is cached; ABC records are not
    assert len(list(tmp_path.rglob("*.json"))) == 1
    second = prepare_table(raw, cfg)
    assert second[1].column("reason").to_pylist() == first[1].column("reason").to_pylist() == ["unparseable_midi"]


def test_empty_table():
    prepared, quarantined = prepare_table(records_to_table([]), PrepareConfig())
    assert prepared.num_rows == quarantined.num_rows == 0
    assert np.array_equal(prepared.schema.names, PREPARED_SCHEMA.names)


def test_a_timeout_is_not_cached_and_the_next_run_converts_the_score(tmp_path):
    """A busy machine must not quarantine a good score for good: the conversion that runs out of
    time is labelled conversion_timeout, is not cached, and a run with time converts it."""
    from pathlib import Path

    import music21

    from clamp.abc.converters import TransientConversionError

    bach = Path(music21.corpus.getWork("bwv66.6")).read_bytes()
    raw = records_to_table([RawRecord(id="bach", source="test", format="mxl", content=bach, provenance="mem://bach")])
    hurried = PrepareConfig(conversion_cache_dir=str(tmp_path), conversion_timeout_s=0.001)
    _, quarantined = prepare_table(raw, hurried)
    assert quarantined.column("reason").to_pylist() == ["conversion_timeout"]
    assert quarantined.column("detail").to_pylist() == ["xml2abc timed out after 0.001s"]
    assert list(tmp_path.rglob("*.json")) == []  # nothing cached
    prepared, quarantined = prepare_table(raw, hurried.model_copy(update={"conversion_timeout_s": 120.0}))
    assert prepared.num_rows == 1 and quarantined.num_rows == 0
    assert len(list(tmp_path.rglob("*.json"))) == 1  # the converted score is
    cache = ConversionCache(tmp_path)
    assert cache.get("mxl", bach)[0] == prepared.column("abc")[0].as_py()
    # a timeout cached by an older version is a miss, not a verdict
    cache.put("mxl", b"other", None, "unparseable_musicxml: xml2abc timed out after 1s")
    assert cache.get("mxl", b"other") is None
    cache.remember("mxl", b"other", None, TransientConversionError("converter_crashed: xml2abc converter crashed"))
    assert cache.get("mxl", b"other") is None


def test_a_partly_unreadable_metadata_bundle_is_counted_and_not_cached(tmp_path, monkeypatch, caplog):
    """music21's bundle is outside our control: it is replaced by one whose second entry raises."""
    from types import SimpleNamespace

    import music21
    from music21 import corpus

    from clamp.data.sources import corpus as source

    root = source.corpus_root()

    class Broken:
        sourcePath = str(root / "bach" / "bwv1.krn")

        @property
        def metadata(self):
            raise ValueError("unreadable entry")

    good = SimpleNamespace(
        sourcePath=str(root / "bach" / "bwv2.krn"), metadata=SimpleNamespace(composer="J.S. Bach", title="Chorale")
    )
    bundle = [good, Broken()]
    monkeypatch.setattr(corpus.corpora, "CoreCorpus", lambda: SimpleNamespace(metadataBundle=bundle))
    with caplog.at_level("WARNING", logger="clamp.data.sources.corpus"):
        found = source._score_metadata(tmp_path)
    assert found == {"bach/bwv2.krn": {"composer": "J.S. Bach", "title": "Chorale"}}
    assert "1 of 2 entries unreadable" in caplog.text
    assert not (tmp_path / f"music21-{music21.__version__}-metadata.json").exists()
    bundle.pop()  # every entry readable: cached
    assert source._score_metadata(tmp_path) == found
    assert (tmp_path / f"music21-{music21.__version__}-metadata.json").is_file()


def test_the_real_bundle_is_read_whole_and_cached_with_its_entries_without_metadata(tmp_path):
    """music21 9's bundle has 86 entries whose metadata is None. They are read (the score has no
    title), not unreadable, so the first build caches the result and later builds skip the bundle."""
    import music21

    from clamp.data.sources import corpus as source

    found = source._score_metadata(tmp_path)
    assert (tmp_path / f"music21-{music21.__version__}-metadata.json").is_file()
    assert found["bach/bwv101.7.mxl"] == {"composer": "J.S. Bach"}
    assert len(found) == 3194  # scores (an opus of many tunes is one path)
    assert source._score_metadata(tmp_path) == found


def test_contacts_are_scrubbed_from_the_stored_tunes_free_text_fields():
    """`clamp serve` shows a row's `abc` with its score: a transcriber's address must not be in it."""
    from clamp.text.clean import scrub_music_fields

    tune = (
        "X:106\nT:Lord Doneraile\nN:collected by J. O'Neill\nZ:Transcribed by henrik.norbeck@mailbox.swipnet.se\n"
        "H:see http://www.example.org/t\n+:or write to a.b@c.com\nZ:bob:at:example.com\nM:6/8\nL:1/8\nK:G\n"
        "d2e|fed|\n"
    )
    expected = (
        "X:106\nT:Lord Doneraile\nN:collected by J. O'Neill\nZ:Transcribed by\nH:see\n+:or write to\nM:6/8\nL:1/8\n"
        "K:G\nd2e|fed|\n"
    )
    assert scrub_music_fields(tune) == expected
    assert scrub_music_fields(GOOD_ABC) == GOOD_ABC  # nothing to scrub: the same string
    raw = records_to_table([RawRecord(id="t", source="test", format="abc", content=tune.encode(), provenance="m")])
    prepared, _ = prepare_table(raw, PrepareConfig())
    assert prepared.column("abc").to_pylist() == [expected]
    plain = records_to_table(
        [RawRecord(id="t", source="test", format="abc", content=expected.encode(), provenance="m")]
    )
    # the model reads the same patches: text fields are not music
    assert prepared.column("patch_bytes")[0] == prepare_table(plain, PrepareConfig())[0].column("patch_bytes")[0]
