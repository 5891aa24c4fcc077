"""Raw records: what every source yields, before conversion and cleaning."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa

FORMAT_BY_SUFFIX = {
    ".abc": "abc",
    ".xml": "musicxml",
    ".musicxml": "musicxml",
    ".mxl": "mxl",
    ".krn": "humdrum",
    ".mid": "midi",
    ".midi": "midi",
}


@dataclass
class RawRecord:
    """One item from a source: a single tune or score, with its texts and provenance.

    `content` is bytes so a record carries exactly what the source gave (binary MIDI, zipped
    MusicXML, or text in an unknown encoding); decoding is a cleaning step that can fail and
    quarantine the record instead of crashing a reader.
    """

    id: str
    source: str
    format: str
    content: bytes
    texts: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    provenance: str = ""
    license: str = ""


RAW_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("format", pa.string(), nullable=False),
        pa.field("content", pa.large_binary(), nullable=False),
        pa.field("texts", pa.list_(pa.string()), nullable=False),
        pa.field("metadata", pa.string(), nullable=False),  # JSON object of str -> str
        pa.field("provenance", pa.string(), nullable=False),
        pa.field("license", pa.string(), nullable=False),
    ]
)


def records_to_table(records: Iterable[RawRecord]) -> pa.Table:
    rows = list(records)
    return pa.table(
        {
            "id": [r.id for r in rows],
            "source": [r.source for r in rows],
            "format": [r.format for r in rows],
            "content": [r.content for r in rows],
            "texts": [list(r.texts) for r in rows],
            "metadata": [json.dumps(r.metadata, sort_keys=True, ensure_ascii=False) for r in rows],
            "provenance": [r.provenance for r in rows],
            "license": [r.license for r in rows],
        },
        schema=RAW_SCHEMA,
    )


def table_to_records(table: pa.Table) -> Iterator[RawRecord]:
    for row in table.to_pylist():
        yield RawRecord(
            id=row["id"],
            source=row["source"],
            format=row["format"],
            content=row["content"],
            texts=row["texts"],
            metadata=json.loads(row["metadata"]),
            provenance=row["provenance"],
            license=row["license"],
        )


def batched(records: Iterable[RawRecord], size: int, max_conversions: int | None = None) -> Iterator[pa.Table]:
    """Stream records as Arrow tables of at most `size` rows (bounded memory).

    A non-ABC record costs ~1000x an ABC tune to prepare (score conversion), so a chunk is
    also closed after `max_conversions` of them; otherwise one chunk of scores would keep
    one worker busy while the others idle.
    """
    chunk: list[RawRecord] = []
    conversions = 0
    for record in records:
        chunk.append(record)
        conversions += record.format != "abc"
        if len(chunk) >= size or (max_conversions is not None and conversions >= max_conversions):
            conversions = 0
            yield records_to_table(chunk)
            chunk = []
    if chunk:
        yield records_to_table(chunk)
