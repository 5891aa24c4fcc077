"""Caption and label coverage on the music21 corpus, without running a build.

Reads the corpus source's records (`clamp.data.sources.corpus.iter_corpus`) and puts them
through the build's own preparation (`clamp.data.prepare.prepare_table`: decode, clean,
normalise, patch, text candidates, captions, labels), with no score conversion:

- by default only the ABC records (12,978 tunes);
- with `--scores`, also the Humdrum/MusicXML works whose conversion is already in the
  conversion cache (`<cache-dir>/conversions`, written by an earlier build); the others are
  skipped and counted.

It prints the share of tunes with 3 or more text candidates (with and without captions), the
number of distinct captions, analysis failures, per-label coverage, the tune-type
distribution and a few example tunes with their candidates. It reads nothing else (no
benchmark data) and writes nothing.

Usage: ``python benchmarks/caption_coverage.py [--limit N] [--scores] [--examples 5] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clamp.data.prepare import CAPTION_FAILURES_KEY, ConversionCache, PrepareConfig, prepare_table  # noqa: E402
from clamp.data.records import RawRecord, batched  # noqa: E402
from clamp.text.captions import CAPTIONS_VERSION  # noqa: E402
from clamp.text.labels import LABEL_KEYS  # noqa: E402


def _records(limit: int | None, scores: bool, cache_dir: Path) -> tuple[list[RawRecord], int]:
    """The corpus records to prepare, and how many scores were skipped (no cached conversion)."""
    from clamp.data.sources.corpus import iter_corpus

    formats = ("abc", "humdrum", "musicxml", "mxl") if scores else ("abc",)
    cache = ConversionCache(cache_dir / "conversions")
    kept: list[RawRecord] = []
    skipped = 0
    for record in iter_corpus(formats, None, None, cache_dir if scores else None):
        if record.format != "abc" and cache.get(record.format, record.content) is None:
            skipped += 1
            continue
        kept.append(record)
        if limit is not None and len(kept) >= limit:
            break
    return kept, skipped


def _share(n: int, total: int) -> str:
    return f"{n / total:6.1%} ({n:,})" if total else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--limit", type=int, default=None, help="prepare at most N records (default: all)")
    parser.add_argument(
        "--scores", action="store_true", help="also the corpus scores whose conversion is in the conversion cache"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=ROOT / ".clamp" / "cache",
        help="the build cache folder (conversions, music21 metadata); default .clamp/cache",
    )
    parser.add_argument("--examples", type=int, default=5, help="example tunes to print (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed for picking the examples")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    records, skipped = _records(args.limit, args.scores, args.cache_dir)
    cfg = PrepareConfig(conversion_cache_dir=str(args.cache_dir / "conversions") if args.scores else None)
    rows: list[dict] = []
    quarantined = failures = 0
    for table in batched(records, 2048):
        prepared, bad = prepare_table(table, cfg)
        quarantined += bad.num_rows
        failures += int((prepared.schema.metadata or {}).get(CAPTION_FAILURES_KEY, b"0"))
        rows += prepared.select(["id", "source_format", "texts", "metadata"]).to_pylist()
    seconds = time.perf_counter() - start

    n = len(rows)
    metas = [json.loads(r["metadata"]) for r in rows]
    n_caps = [m.get("n_captions", 0) for m in metas]
    raw_counts = [len(r["texts"]) - k for r, k in zip(rows, n_caps, strict=True)]
    all_captions = [t for r, k in zip(rows, n_caps, strict=True) if k for t in r["texts"][-k:]]
    formats = Counter(r["source_format"] for r in rows)

    print(f"caption coverage on the music21 corpus (CAPTIONS_VERSION {CAPTIONS_VERSION})")
    print(
        f"records prepared   {n:,} ({', '.join(f'{k} {v:,}' for k, v in sorted(formats.items()))});"
        f" quarantined {quarantined:,}; scores skipped (not in the conversion cache) {skipped:,}; {seconds:.1f} s"
    )
    print(
        f"3+ text candidates {_share(sum(len(r['texts']) >= 3 for r in rows), n)}"
        f"   (cleaned raw fields alone: {_share(sum(c >= 3 for c in raw_counts), n).strip()})"
    )
    print(
        f"captioned          {_share(sum(k > 0 for k in n_caps), n)}; captions per tune: "
        f"{', '.join(f'{k}: {v:,}' for k, v in sorted(Counter(n_caps).items()))}"
    )
    print(f"distinct captions  {len(set(all_captions)):,} of {len(all_captions):,}")
    print(f"analysis failures  {failures:,}")
    print(
        "label coverage     "
        + "  ".join(f"{key} {sum(key in m.get('labels', {}) for m in metas) / n:.1%}" for key in LABEL_KEYS)
        if n
        else "-"
    )
    types = Counter(m.get("labels", {}).get("tune_type", "(none)") for m in metas)
    print("tune types         " + ", ".join(f"{t} {c:,}" for t, c in types.most_common()))
    for key in ("mode", "meter", "tempo", "collection", "period"):
        values = Counter(m["labels"][key] for m in metas if key in m.get("labels", {}))
        print(f"{key:<18} " + ", ".join(f"{v} {c:,}" for v, c in values.most_common(8)))
    rng = random.Random(args.seed)
    for i in sorted(rng.sample(range(n), min(args.examples, n))):
        print(f"\n{rows[i]['id']}  labels {json.dumps(metas[i].get('labels', {}), ensure_ascii=False)}")
        for j, text in enumerate(rows[i]["texts"]):
            print(f"  {'caption' if j >= raw_counts[i] else 'field  '}  {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
