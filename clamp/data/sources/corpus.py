"""The music21 corpus, the offline default source (docs/architecture.md, "Sources").

Every ABC tune becomes one record (multi-tune files are split on `X:`); Humdrum and
MusicXML works become one record each with the composer/title of music21's metadata bundle.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

from clamp.abc.tunes import split_tunes
from clamp.data.records import FORMAT_BY_SUFFIX, RawRecord
from clamp.io import write_json_atomic

log = logging.getLogger("clamp.data.sources.corpus")

SOURCE = "music21"
LICENSE = "music21 corpus (software BSD-3-Clause; some encodings non-commercial, see music21 corpus notes)"
SCORE_SUFFIXES = (".krn", ".xml", ".mxl", ".musicxml")


def corpus_root() -> Path:
    from music21 import corpus

    return Path(corpus.__file__).parent


def _score_metadata(cache_dir: Path | None = None) -> dict[str, dict[str, str]]:
    """Composer/title per corpus-relative path, from music21's shipped metadata bundle.

    Reading the bundle takes ~3 s, so the result is cached per music21 version, but only when
    every entry was read: entries that raise are counted in a warning, and a partial result is
    not cached, so the next build reads the bundle again. An entry without metadata (86 of the
    bundle's 15,112 in music21 9) is read, not unreadable: its score simply has none.
    """
    import music21
    from music21 import corpus

    cache = cache_dir / f"music21-{music21.__version__}-metadata.json" if cache_dir else None
    if cache is not None and cache.is_file():
        return json.loads(cache.read_text(encoding="utf-8"))
    root = corpus_root()
    out: dict[str, dict[str, str]] = {}
    try:
        bundle = corpus.corpora.CoreCorpus().metadataBundle
        # The bundle has no __iter__, and its __getitem__ copies every entry into a list, so
        # list(bundle) is quadratic: 68 s for 15,112 entries, on every build. Its entry mapping
        # is read once instead.
        by_key = getattr(bundle, "_metadataEntries", None)
        entries = list(by_key.values()) if isinstance(by_key, dict) else list(bundle)
    except Exception as exc:  # the bundle is an optimisation; paths still give a composer
        log.warning("music21 metadata bundle unreadable (%s): scores get no title or composer", type(exc).__name__)
        return out
    dropped = 0
    for entry in entries:
        try:
            rel = (
                str(Path(entry.sourcePath).relative_to(root))
                if Path(entry.sourcePath).is_absolute()
                else str(entry.sourcePath)
            )
            md = entry.metadata
            if md is None:
                continue
            fields = {"composer": md.composer or "", "title": md.title or ""}
        except Exception:
            dropped += 1
            continue
        out.setdefault(rel, {k: v for k, v in fields.items() if v})
    if dropped:
        log.warning(
            "music21 metadata: %d of %d entries unreadable, their scores get no title or composer "
            "(not cached: the next build reads the bundle again)",
            dropped,
            len(entries),
        )
        return out
    if cache is not None:
        write_json_atomic(out, cache, indent=None)  # compact, sorted keys, as before
    return out


def iter_corpus(
    formats: tuple[str, ...] = ("abc", "humdrum", "musicxml", "mxl"),
    limit: int | None = None,
    path_filter: str | None = None,
    cache_dir: Path | None = None,
) -> Iterator[RawRecord]:
    """Yield the corpus records in a stable order (sorted paths, tune order in a file).

    `path_filter` keeps only files whose corpus-relative path contains it (e.g. "essenFolksong");
    `limit` caps the number of records, for quick runs and tests.
    """
    from music21 import corpus

    root = corpus_root()
    paths = sorted(corpus.getCorePaths(), key=lambda p: str(p))
    score_meta: dict[str, dict[str, str]] | None = None
    count = 0
    for path in paths:
        fmt = FORMAT_BY_SUFFIX.get(path.suffix.lower())
        if fmt is None or fmt not in formats:
            continue
        rel = str(path.relative_to(root))
        if path_filter and path_filter not in rel:
            continue
        collection = rel.split("/", 1)[0]
        if fmt == "abc":
            text = path.read_bytes().decode("utf-8", errors="surrogateescape")
            for ordinal, tune in enumerate(split_tunes(text), start=1):
                yield RawRecord(
                    id=f"{SOURCE}:{rel}#{ordinal}",
                    source=SOURCE,
                    format="abc",
                    # surrogateescape round-trips the file's bytes exactly; decoding is a cleaning step.
                    content=tune.encode("utf-8", errors="surrogateescape"),
                    metadata={"collection": collection, "path": rel, "tune": str(ordinal)},
                    provenance=f"music21-corpus:{rel}",
                    license=LICENSE,
                )
                count += 1
                if limit is not None and count >= limit:
                    return
        else:
            if score_meta is None:
                score_meta = _score_metadata(cache_dir)
            meta = {"collection": collection, "path": rel, **score_meta.get(rel, {})}
            texts = [f"{k.capitalize()}: {meta[k]}" for k in ("title", "composer") if meta.get(k)]
            yield RawRecord(
                id=f"{SOURCE}:{rel}",
                source=SOURCE,
                format=fmt,
                content=path.read_bytes(),
                texts=texts,
                metadata=meta,
                provenance=f"music21-corpus:{rel}",
                license=LICENSE,
            )
            count += 1
            if limit is not None and count >= limit:
                return
