"""Human-readable build summaries (terminal table and Markdown for Prefect artifacts)."""

from __future__ import annotations

from clamp.data.build import BuildSummary
from clamp.data.views import CHORD_VIEW


def summary_rows(s: BuildSummary) -> list[tuple[str, str]]:
    rows = [
        ("dataset", s.dataset_dir),
        ("patch mode", s.patch_mode),
        ("records in", f"{s.records_in:,}"),
        ("rows written", f"{s.rows_written:,} in {s.shards} shards ({s.shards_skipped} already done)"),
        ("quarantined", f"{s.quarantined:,}" + (f" ({_fmt(s.quarantine_reasons)})" if s.quarantine_reasons else "")),
        ("duplicates", f"{s.duplicates:,} ({_fmt(s.duplicates_by_kind)})"),
        (
            "decontaminated",
            f"{s.decontaminated:,}"
            + (f" ({_fmt(s.decontaminated_by_benchmark)})" if s.decontaminated_by_benchmark else "")
            + f"; {s.decontamination}",
        ),
        (
            "check",
            f"{s.records_in:,} = {s.rows_written:,} + {s.quarantined:,} + {s.duplicates:,} + {s.decontaminated:,}",
        ),
        ("formats in", _fmt(s.formats_in)),
        ("converted to ABC", f"{s.converted:,}"),
        ("splits", _fmt(s.splits)),
        ("split groups", _grouping(s.grouping)),
        ("patches", f"{s.patches:,} (median {s.median_patches:g} per tune)"),
        ("patches / characters", f"{s.patches_per_char:.4f} overall, median {s.median_patches_per_char:.4f} per tune"),
        (
            "length reduction",
            f"{1 / s.patches_per_char:.1f}x fewer positions than characters" if s.patches_per_char else "-",
        ),
        (
            "captions",
            f"{s.caption_coverage:.1%} of rows with 3+ texts, {s.distinct_captions:,} distinct captions,"
            f" {s.caption_failures:,} tunes not analysed",
        ),
        ("seconds", _fmt(s.seconds)),
        ("throughput", _fmt(s.throughput)),
    ]
    for view, v in s.views.items():
        if view == CHORD_VIEW:  # made from the tune itself: nothing cached, nothing that fails
            detail = (
                f"{v['rows']:,} of {v['train_rows']:,} train tunes ({v['failed']:,} with chords or no notes);"
                f" {v['converted']:,} made now ({v['seconds']:g} s of worker time), the rest in earlier runs"
            )
        else:
            detail = (
                f"{v['rows']:,} of {v['train_rows']:,} train tunes ({v['failed']:,} failed); {v['converted']:,}"
                f" converted now ({v['seconds']:g} s of worker time), the rest from the cache or earlier runs"
            )
        rows.append((f"{view} views", detail))
    for seeds, c in s.acquisition.items():
        kinds = _fmt(c.get("texts_by_kind", {})) or "none"
        failed = sum(c.get("errors", {}).values()) + c.get("skipped_too_large", 0) + c.get("redirect_loops", 0)
        rows.append((
            f"crawled {seeds}",
            f"{c['fetched'] + c['skipped_robots']:,} pages ({c['skipped_robots']:,} disallowed, {failed:,} failed, "
            f"{c['skipped_duplicate']:,} duplicate); {c['downloaded']:,} music files new, {c['replayed']:,} from "
            f"earlier crawls; texts by kind: {kinds}",
        ))  # fmt: skip
    return rows


def _grouping(g: dict) -> str:
    if not g:
        return "-"
    return (
        f"by {g.get('split_by', '?')}: {g.get('groups', 0):,} groups of 2+ rows ({g.get('grouped_rows', 0):,} rows,"
        f" largest {g.get('largest_group', 0):,}); across splits {g.get('crossed_before', 0):,} by row,"
        f" {g.get('crossed_after', 0):,} now; {g.get('rows_moved', 0):,} rows moved,"
        f" {g.get('heldout_rows', 0):,} held out ({g.get('heldout_by_group', 0):,} by their group)"
    )


def _fmt(d: dict) -> str:
    return ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in d.items())


def summary_markdown(s: BuildSummary) -> str:
    lines = [f"# build-dataset: {s.name}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary_rows(s)]
    return "\n".join(lines) + "\n"


def print_summary(s: BuildSummary) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"build-dataset: {s.name}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in summary_rows(s):
        table.add_row(k, v)
    Console().print(table)
