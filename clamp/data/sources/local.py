"""A local directory of ABC / MusicXML / Humdrum / MIDI files, with optional text sidecars.

Sidecars, both optional:
- `<name>.json` beside `<name>.<ext>` (or `<name>.<ext>.json`): either a list of texts or an
  object with `texts` (list or string) and any other string fields as metadata;
- `texts.csv` (or `metadata.csv`) in the root: a `file` column with paths relative to the
  root, a `text` column (one text per row; several rows per file allowed) and any other
  columns as metadata.
A sidecar that cannot be read is reported in the record's metadata, never fatal.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from clamp.abc.tunes import split_tunes
from clamp.data.records import FORMAT_BY_SUFFIX, RawRecord

SOURCE = "local"
CSV_SIDECARS = ("texts.csv", "metadata.csv")
log = logging.getLogger("clamp.data.local")


def _read_json_sidecar(path: Path) -> tuple[list[str], dict[str, str]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, list):
        return [str(t) for t in data if str(t).strip()], {}
    if not isinstance(data, dict):
        raise ValueError("sidecar JSON must be a list of texts or an object")
    raw_texts = data.get("texts", data.get("text", []))
    texts = [raw_texts] if isinstance(raw_texts, str) else [str(t) for t in raw_texts]
    meta = {k: str(v) for k, v in data.items() if k not in ("texts", "text") and isinstance(v, str | int | float)}
    return [t for t in texts if t.strip()], meta


def _read_csv_sidecars(root: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    out: dict[str, tuple[list[str], dict[str, str]]] = {}
    for name in CSV_SIDECARS:
        path = root / name
        if not path.is_file():
            continue
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                rel = (row.get("file") or "").strip()
                if not rel:
                    continue
                texts, meta = out.setdefault(rel, ([], {}))
                text = (row.get("text") or "").strip()
                if text:
                    texts.append(text)
                meta.update({k: v for k, v in row.items() if k not in ("file", "text") and k and v})
    return out


def iter_local(root: str | Path, limit: int | None = None, license: str = "") -> Iterator[RawRecord]:
    """Yield records for every music file under `root`, in sorted path order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"local source directory not found: {root}")
    try:
        csv_texts = _read_csv_sidecars(root)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        log.warning("could not read CSV sidecar in %s: %s", root, exc)
        csv_texts = {}
    count = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        fmt = FORMAT_BY_SUFFIX.get(path.suffix.lower())
        if fmt is None:
            continue
        rel = path.relative_to(root).as_posix()
        csv_t, csv_m = csv_texts.get(rel, ([], {}))
        texts, meta = list(csv_t), dict(csv_m)
        for sidecar in (path.with_suffix(".json"), path.with_name(path.name + ".json")):
            if sidecar.is_file():
                try:
                    more_texts, more_meta = _read_json_sidecar(sidecar)
                    texts += more_texts
                    meta.update(more_meta)
                except (OSError, ValueError, UnicodeDecodeError) as exc:
                    meta["sidecar_error"] = f"{sidecar.name}: {exc}"
                    log.warning("bad sidecar %s: %s", sidecar, exc)
                break
        meta["path"] = rel
        content = path.read_bytes()
        pieces: list[tuple[str, bytes]] = [(f"{SOURCE}:{rel}", content)]
        if fmt == "abc" and b"\0" not in content:
            tunes = split_tunes(content.decode("utf-8", errors="surrogateescape"))
            if len(tunes) > 1:
                pieces = [
                    (f"{SOURCE}:{rel}#{i}", t.encode("utf-8", errors="surrogateescape"))
                    for i, t in enumerate(tunes, start=1)
                ]
        for rid, piece in pieces:
            yield RawRecord(
                id=rid,
                source=SOURCE,
                format=fmt,
                content=piece,
                texts=list(texts),
                metadata=dict(meta),
                provenance=str(path),
                license=license or meta.get("license", ""),
            )
            count += 1
            if limit is not None and count >= limit:
                return
