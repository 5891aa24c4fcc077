"""`clamp report`: an evaluation rendered as a Markdown file and one self-contained HTML page.

The source is an evaluation's output folder (its `evaluation.json`, written by
`clamp.eval.run.evaluate`, beside the figures of each model) or an MLflow run id of the
`clamp-eval` experiment. The report has the tables of `clamp.eval.tables` (targets, quality,
controls, probes), and the figures a reader would rather look at: quality against training
steps (from the training folder's `metrics-rank0.jsonl` and `validation.jsonl`), the probes'
P@10 as bars with their intervals, and every confusion matrix and rank histogram. The HTML page
embeds its images, so it can be mailed or attached as it is.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from clamp.errors import UserError
from clamp.eval.plots import pyplot_agg, save_figure

EVALUATION_FILE = "evaluation.json"
_CI = re.compile(r"^\s*(-?[\d.]+)\s*\[\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*\]")
TABLES = (
    ("targets", "Targets"),
    ("quality", "Quality"),
    ("controls", "Input controls"),
    ("probes", "Retrieval probes"),
)


@dataclass
class Evaluation:
    """What a report is made from."""

    title: str
    tables: dict[str, list[dict]]
    figures: list[Path] = field(default_factory=list)  # the evaluation's own PNGs
    training_dir: Path | None = None  # where metrics-rank0.jsonl (and validation.jsonl) are
    provenance: dict[str, str] = field(default_factory=dict)


def load_folder(folder: str | Path) -> Evaluation:
    """An evaluation output folder: `evaluation.json` and the PNGs beside it."""
    folder = Path(folder)
    record = folder / EVALUATION_FILE
    if not record.is_file():
        raise UserError(
            f"{folder} is not an evaluation folder: no {EVALUATION_FILE} in it (`clamp eval --out FOLDER` writes one)"
        )
    try:
        data = json.loads(record.read_text())
        tables = data["tables"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{record} is not an evaluation record: {exc}") from None
    model_dir = Path(data.get("model_dir", ""))
    lineage = model_dir / "lineage.json"
    provenance = {
        "model": str(model_dir),
        "dataset": str(data.get("dataset_dir") or "-"),
        "evaluated": str(data.get("date") or "-"),
    }
    if lineage.is_file():
        info = json.loads(lineage.read_text())
        provenance.update(
            {
                "training commit": str(info.get("git_commit", ""))[:12],
                "dataset fingerprint": str(info.get("dataset_fingerprint", "")),
            }
        )
    training = model_dir.parent if model_dir.name == "model" else model_dir
    return Evaluation(
        title=model_dir.parent.name if model_dir.name == "model" else model_dir.name or folder.name,
        tables=tables,
        figures=sorted(folder.rglob("*.png")),
        training_dir=training if (training / "metrics-rank0.jsonl").is_file() else None,
        provenance=provenance,
    )


def load_mlflow_run(run_id: str, work_dir: Path) -> Evaluation:
    """An evaluation run of MLflow (one (model, benchmark) pair): its metrics as a quality table
    and its figures, downloaded into `work_dir`."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from clamp.tracking import tracking_uri

    client = MlflowClient(tracking_uri())
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise UserError(f"no MLflow run {run_id} in {tracking_uri()}: {str(exc).splitlines()[0][:160]}") from None
    work_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    for art in client.list_artifacts(run_id):
        if art.path.endswith(".png"):
            figures.append(Path(client.download_artifacts(run_id, art.path, str(work_dir))))
    rows = [
        {"metric": k, "value": f"{v:.4g}"}
        for k, v in sorted(run.data.metrics.items())
        if not k.endswith(("_ci_low", "_ci_high"))
    ]
    tags = run.data.tags
    return Evaluation(
        title=run.info.run_name or run_id,
        tables={"quality": rows},
        figures=figures,
        provenance={
            "MLflow run": run_id,
            "model": tags.get("model", "-"),
            "benchmark": tags.get("benchmark", "-"),
            "dataset fingerprint": tags.get("dataset_fingerprint", "-"),
        },
    )


def _interval(text: str) -> tuple[float, float, float] | None:
    m = _CI.match(str(text))
    return (float(m[1]), float(m[2]), float(m[3])) if m else None


def plot_probes(rows: list[dict], path: Path) -> Path | None:
    """P@10 of each probe query as a bar with its interval, beside the random baseline."""
    column = next((k for r in rows for k in r if k.endswith("P@10")), None)
    points = [(r["probe"], _interval(r.get(column, "")), r.get("random")) for r in rows] if column else []
    points = [(q, ci, rnd) for q, ci, rnd in points if ci is not None]
    if not points:
        return None
    plt = pyplot_agg()
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(points) + 1.2))
    y = range(len(points))
    values = [ci[0] for _, ci, _ in points]
    errors = [[ci[0] - ci[1] for _, ci, _ in points], [ci[2] - ci[0] for _, ci, _ in points]]
    ax.barh(list(y), values, xerr=errors, color="#4c78a8", ecolor="#333", capsize=2)
    randoms = [float(rnd) if rnd not in (None, "-", "") else None for _, _, rnd in points]
    ax.scatter(
        [r for r in randoms if r is not None],
        [i for i, r in zip(y, randoms, strict=True) if r is not None],
        marker="|",
        s=120,
        color="#e45756",
        label="random",
        zorder=3,
    )
    ax.set_yticks(list(y), [q for q, _, _ in points], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"{column} (95% interval)")
    ax.legend(loc="lower right", fontsize=7)
    return save_figure(fig, path)


def plot_training(training_dir: Path, path: Path) -> Path | None:
    """Training loss, and the valid split's text-to-music MRR when it was validated, against steps."""
    losses = [json.loads(line) for line in (training_dir / "metrics-rank0.jsonl").read_text().splitlines() if line]
    valid_file = training_dir / "validation.jsonl"
    by_step = {}  # a run resumed after a validation repeats it: the last record of a step wins
    for line in valid_file.read_text().splitlines() if valid_file.is_file() else []:
        if line.strip():
            record = json.loads(line)
            by_step[record["step"]] = record
    valid = [by_step[s] for s in sorted(by_step)]
    if not losses:
        return None
    plt = pyplot_agg()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.plot([r["step"] for r in losses], [r["loss"] for r in losses], color="#4c78a8", lw=0.8, label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if valid:
        right = ax.twinx()
        right.plot(
            [r["step"] for r in valid],
            [r.get("valid/text_to_music/mrr", float("nan")) for r in valid],
            color="#f58518",
            marker="o",
            label="valid text-to-music MRR",
        )
        right.set_ylabel("valid MRR")
        right.legend(loc="upper right", fontsize=7)
    ax.legend(loc="upper left", fontsize=7)
    return save_figure(fig, path)


def _markdown_table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["(none)"]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    return [
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
        *("| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows),
    ]


def _caption(path: Path) -> str:
    return (
        path.stem.replace("-zero_shot-confusion", ": zero-shot confusion matrix")
        .replace("-text_to_music-ranks", ": text-to-music rank histogram")
        .replace("-", " ")
    )


def write_report(evaluation: Evaluation, out_dir: str | Path) -> tuple[Path, Path]:
    """Write `report.md` (with its figures beside it) and `report.html` (figures embedded)."""
    out = Path(out_dir)
    figures_dir = out / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    made = [
        p
        for p in (
            plot_training(evaluation.training_dir, figures_dir / "training.png") if evaluation.training_dir else None,
            plot_probes(evaluation.tables.get("probes", []), figures_dir / "probes.png"),
        )
        if p
    ]
    copied = []
    for fig in evaluation.figures:
        target = figures_dir / f"{fig.parent.name}-{fig.name}"
        if fig.resolve() != target.resolve():
            shutil.copyfile(fig, target)
        copied.append(target)
    sections: list[tuple[str, list[dict] | None, list[Path]]] = []
    for key, heading in TABLES:
        if evaluation.tables.get(key):
            extra = [p for p in made if p.stem == "probes"] if key == "probes" else []
            sections.append((heading, evaluation.tables[key], extra))
    training = [p for p in made if p.stem == "training"]
    if training:
        sections.append(("Training", None, training))
    if copied:
        sections.append(("Figures of each task", None, copied))
    warnings = evaluation.tables.get("warnings") or []

    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    md = [
        f"# Evaluation report: {evaluation.title}",
        "",
        *(f"- {k}: {v}" for k, v in evaluation.provenance.items()),
        f"- report written: {generated}",
        "",
    ]
    md += [f"**warning:** {w}" for w in warnings] + ([""] if warnings else [])
    for heading, rows, images in sections:
        md += [f"## {heading}", ""]
        if rows is not None:
            md += [*_markdown_table(rows), ""]
        md += [f"![{_caption(p)}]({p.relative_to(out).as_posix()})" for p in images] + ([""] if images else [])
    (out / "report.md").write_text("\n".join(md))

    def img(p: Path) -> str:
        data = base64.b64encode(p.read_bytes()).decode()
        return (
            f'<figure><img alt="{html.escape(_caption(p))}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(_caption(p))}</figcaption></figure>"
        )

    def table(rows: list[dict]) -> str:
        cols = list(dict.fromkeys(k for r in rows for k in r))
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    page = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>Evaluation report: {html.escape(evaluation.title)}</title><style>",
        "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}",
        "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:12px}td,th{border:1px solid #ccc;",
        "padding:2px 6px;text-align:left}th{background:#f3f3f3}figure{display:inline-block;margin:.5em;",
        "vertical-align:top}img{max-width:520px}figcaption{font-size:12px;color:#555}",
        ".warn{color:#a00}</style></head><body>",
        f"<h1>Evaluation report: {html.escape(evaluation.title)}</h1><ul>",
        *(f"<li>{html.escape(k)}: {html.escape(str(v))}</li>" for k, v in evaluation.provenance.items()),
        f"<li>report written: {generated}</li></ul>",
        *(f'<p class="warn">warning: {html.escape(w)}</p>' for w in warnings),
    ]
    for heading, rows, images in sections:
        page.append(f"<h2>{html.escape(heading)}</h2>")
        if rows is not None:
            page.append(table(rows))
        page += [img(p) for p in images]
    page.append("</body></html>")
    (out / "report.html").write_text("\n".join(page))
    return out / "report.md", out / "report.html"
