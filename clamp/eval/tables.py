"""The tables of an evaluation: quality, targets, controls and probes as rows, printed with
rich, and the collapse warnings."""

from __future__ import annotations

from clamp.eval.result import EvalResult
from clamp.model.geometry import COLLAPSE_COSINE


def collapse_warnings(results: list[EvalResult], threshold: float = COLLAPSE_COSINE) -> list[str]:
    """One line per (trained model, benchmark) whose music embeddings have collapsed: mean pairwise
    cosine above `threshold`. The untrained twin's narrow cone is expected and not reported."""
    lines = []
    for r in results:
        cos = r.metrics.get(f"{r.benchmark}/embedding/mean_cosine")
        if cos is not None and cos > threshold and not r.model.endswith("-untrained"):
            shown = f"{cos:.2f}" if round(cos, 2) > threshold else f"{cos:.3f}"  # never "0.95" for 0.953
            lines.append(f"embeddings have collapsed on {r.benchmark}: mean pairwise cosine {shown} ({r.model})")
    return lines


def format_ci(value: float | None, low: float | None = None, high: float | None = None, digits: int = 2) -> str:
    """ "0.62 [0.55, 0.69]": a metric with its 95% interval; "0.62" without one; "-" for none."""
    if value is None:
        return "-"
    if low is None or high is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _metric(metrics: dict[str, float], name: str, digits: int = 2) -> str:
    return format_ci(metrics.get(name), metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high"), digits)


def results_table(results: list[EvalResult]) -> dict[str, list]:
    """The quality report (docs/evaluation.md, "Results tables"), JSON-ready:

    - `quality`: per benchmark, one row for each model (the trained one and its untrained twin),
      then `chance` and `majority`; zero-shot accuracy and macro-F1, text-to-music MRR and
      HitRate@10, each "value [95% interval]", the linear probe's accuracy and the embeddings'
      mean pairwise cosine;
    - `probes`: the retrieval probes, one row per fixed query and per task mean, precision@10 of
      each model beside the random share;
    - `warnings`: the collapse lines (`collapse_warnings`).
    """
    quality: list[dict] = []
    by_bench: dict[str, list[EvalResult]] = {}
    probe_results = [r for r in results if r.rows is not None]
    for r in results:
        if r.rows is None:
            by_bench.setdefault(r.benchmark, []).append(r)
    for b, rs in by_bench.items():
        m0 = rs[0].metrics
        common = {
            "benchmark": b,
            "classes": str(int(m0.get(f"{b}/classes", 0))),
            "items": str(int(m0.get(f"{b}/items", 0))),
        }
        has_texts = f"{b}/text_to_music/mrr" in m0
        for r in rs:
            m = r.metrics
            cos = m.get(f"{b}/embedding/mean_cosine")
            quality.append(
                {
                    **common,
                    "model": r.model,
                    "user prompts acc": _metric(m, f"{b}/user_prompts/accuracy"),
                    "user F1": _metric(m, f"{b}/user_prompts/macro_f1"),
                    "training prompts acc": _metric(m, f"{b}/zero_shot/accuracy"),
                    "linear probe acc": _metric(m, f"{b}/linear_probe/accuracy"),
                    "t2m MRR": _metric(m, f"{b}/text_to_music/mrr", 3),
                    "t2m hit@10": _metric(m, f"{b}/text_to_music/hit_at_10"),
                    "mean cos": format_ci(cos) if cos is not None else "-",
                }
            )
        for base, label in (("header", "header-only LR"), ("chance", "chance"), ("majority", "majority")):
            if f"{b}/baseline/{base}/accuracy" not in m0:
                continue
            quality.append(
                {
                    **common,
                    "model": label,
                    "user prompts acc": _metric(m0, f"{b}/baseline/{base}/accuracy"),
                    "user F1": _metric(m0, f"{b}/baseline/{base}/macro_f1"),
                    "training prompts acc": "-",
                    "linear probe acc": "-",
                    "t2m MRR": _metric(m0, f"{b}/baseline/chance/mrr", 3) if has_texts and base == "chance" else "-",
                    "t2m hit@10": _metric(m0, f"{b}/baseline/chance/hit_at_10")
                    if has_texts and base == "chance"
                    else "-",
                    "mean cos": "-",
                }
            )
    return {
        "quality": quality,
        "controls": controls_table(results),
        "targets": targets_table(results),
        "probes": probes_table(probe_results),
        "warnings": collapse_warnings(results),
    }


def targets_table(results: list[EvalResult]) -> list[dict]:
    """The CPU recipe's quality targets (`clamp.eval.targets`) judged on this one run, when it has
    the held-out tasks they read (a dataset was given)."""
    from clamp.eval.targets import cpu_targets, format_targets, judge_all

    trained: dict[str, float] = {}
    twin: dict[str, float] = {}
    for r in results:
        (twin if r.model.endswith("-untrained") else trained if "-untrained" not in r.model else {}).update(r.metrics)
    if not any(k.startswith("corpus-tune_type/") for k in trained):
        return []
    return format_targets(judge_all(cpu_targets(), [(trained, twin)]))


def controls_table(results: list[EvalResult]) -> list[dict]:
    """The input controls of the trained model: per benchmark, the unchanged input, then each
    control's user-prompt accuracy and macro-F1 [95% interval], training-prompt accuracy and
    agreement with the unchanged input's predictions."""
    from clamp.eval.controls import INPUT_CONTROLS, control_benchmark_name

    rows: list[dict] = []
    for r in results:
        if r.rows is not None:
            continue
        m, b = r.metrics, r.benchmark
        found = [c for c in INPUT_CONTROLS if f"{control_benchmark_name(b, c)}/user_prompts/accuracy" in m]
        if not found:
            continue
        rows.append(
            {
                "benchmark": b,
                "input": "as given",
                "items": str(int(m.get(f"{b}/items", 0))),
                "user prompts acc": _metric(m, f"{b}/user_prompts/accuracy"),
                "user F1": _metric(m, f"{b}/user_prompts/macro_f1"),
                "training prompts acc": _metric(m, f"{b}/zero_shot/accuracy"),
                "agreement": "-",
            }
        )
        for c in found:
            cb = control_benchmark_name(b, c)
            rows.append(
                {
                    "benchmark": b,
                    "input": c,
                    "items": str(int(m.get(f"{cb}/items", 0))),
                    "user prompts acc": _metric(m, f"{cb}/user_prompts/accuracy"),
                    "user F1": _metric(m, f"{cb}/user_prompts/macro_f1"),
                    "training prompts acc": _metric(m, f"{cb}/zero_shot/accuracy"),
                    "agreement": format_ci(m.get(f"{cb}/agreement")),
                }
            )
    return rows


def probes_table(results: list[EvalResult]) -> list[dict]:
    """The retrieval probes: fixed queries, then the per-task means; P@10 per model beside the random share."""
    if not results:
        return []
    models = list(dict.fromkeys(r.model for r in results))
    first = results[0]
    rows: list[dict] = []
    for q in first.rows or []:
        if q["group"] not in ("fixed", "user"):
            continue
        row = {
            "probe": q["query"],
            "target": q["target"],
            "matches": str(q["matches"]),
            "random": format_ci(q["random"]),
        }
        for r in results:
            mine = next((x for x in r.rows or [] if x["query"] == q["query"] and x["group"] == q["group"]), None)
            row[f"{r.model} P@10"] = format_ci(mine["p_at_10"], mine["ci_low"], mine["ci_high"]) if mine else "-"
        rows.append(row)
    groups = list(dict.fromkeys(q["group"] for q in first.rows or []))
    for group in groups:
        name = f"{first.benchmark}/{group}"
        m0 = first.metrics
        label = {"fixed": "all fixed probes", "user": "all user-phrased probes (held out)"}.get(
            group, f"{group}: one query per class"
        )
        row = {
            "probe": f"mean: {label}",
            "target": _queries(int(m0.get(f"{name}/queries", 0))),
            "matches": "-",
            "random": format_ci(m0.get(f"{name}/random")),
        }
        for r in results:
            row[f"{r.model} P@10"] = _metric(r.metrics, f"{name}/p_at_10")
        rows.append(row)
    for row in rows:  # every row has every model's column
        for model in models:
            row.setdefault(f"{model} P@10", "-")
    return rows


def _queries(n: int) -> str:
    return f"{n} query" if n == 1 else f"{n} queries"


def print_results_table(report: dict | list[dict], title: str = "evaluation") -> None:
    """The results tables on the terminal (wide enough for their columns even when piped): the
    quality report, the retrieval probes and the collapse warnings of `results_table`. A plain list
    of rows is printed as one table."""
    import shutil

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(width=max(200, shutil.get_terminal_size().columns))

    def table_of(rows: list[dict], caption: str, section_key: str | None = None) -> Table:
        table = Table(title=caption)
        for col in rows[0] if rows else []:
            table.add_column(col, no_wrap=col not in ("probe", "target"))
        for i, r in enumerate(rows):
            last_of_section = (
                section_key is not None and i + 1 < len(rows) and rows[i + 1][section_key] != r[section_key]
            )
            table.add_row(
                *[Text(f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v))) for v in r.values()],
                end_section=last_of_section,
            )
        return table

    if isinstance(report, list):
        console.print(table_of(report, title))
        return
    console.print(
        table_of(
            report.get("quality", []),
            f"{title}: value [95% bootstrap interval]; user prompts are held out from training's captions",
            "benchmark",
        )
    )
    if report.get("controls"):
        console.print(
            table_of(
                report["controls"],
                "input controls (trained model): the same items with the music written "
                "another way, or without its K:/M:/L: lines; agreement = share of "
                "unchanged predictions",
                "benchmark",
            )
        )
    if report.get("targets"):
        console.print(
            table_of(
                report["targets"],
                "quality targets of the CPU recipe, this run (margin = value - bar "
                '[95% bootstrap interval]; docs/evaluation.md, "Targets")',
            )
        )
    if report.get("probes"):
        console.print(
            table_of(
                report["probes"],
                "retrieval probes: precision@10 over the held-out items "
                "[95% interval]; random = share of the items that match",
            )
        )
    for line in report.get("warnings", []):
        console.print(f"warning: {line}", markup=False, highlight=False)
