"""The paper's ablations as one grid: text dropout, bar patching vs characters, MMM init; and
the levers that make the model read the notes: header dropout, MIDI-route views, canonical
notation against the tunes as written, and chord views against taking chords out.

Every cell trains with the same steps and batch (equal budgets) for each of several seeds and is
evaluated on the same benchmarks; runs are children of one MLflow parent run, which gets the
comparison table (CSV and Markdown), a bar plot and the paper's three claims, each as the
difference between its two cells paired by seed, with a 95% t-interval over seeds: it holds,
is reversed, or is not separable at this budget (docs/evaluation.md, "Ablations").
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clamp.config import DEFAULT_DATASET_DIR, load_config
from clamp.eval.metrics import t_interval
from clamp.train.config import TrainConfig


@dataclass(frozen=True)
class AblationCell:
    text_dropout: bool
    input_kind: str  # "patch" (bar patching) or "char"
    mmm_init: bool
    header_dropout: bool = False  # HEADER_DROPOUT of the tunes lose their K:/M:/L: patches per step
    midi_view: bool = False  # MIDI_VIEW of the tunes are read as their MIDI-route view (a --midi-views build)
    as_written: bool = False  # trained on `as_written_dataset_dir`: the tunes as written, chords kept
    chord_view: bool = False  # CHORD_VIEW of the tunes read with a chord symbol per bar (a --chord-views build)

    @property
    def name(self) -> str:
        kind = "patch" if self.input_kind == "patch" else "char"
        dropout = "td" if self.text_dropout else "notd"
        base = f"{kind}-{dropout}-{'mmm' if self.mmm_init else 'scratch'}"
        base = f"{base}-hd" if self.header_dropout else base
        base = f"{base}-midi" if self.midi_view else base
        base = f"{base}-aw" if self.as_written else base
        return f"{base}-chords" if self.chord_view else base


HEADER_DROPOUT = 0.5  # the share of a header-dropout cell's tunes that lose their header lines per step
MIDI_VIEW = 0.25  # the share of a MIDI-view cell's tunes read through abc2midi -> midi2abc per step
CHORD_VIEW = 0.5  # the share of a chord-view cell's tunes read with a chord symbol per bar per step


def grid(text_dropout=(True, False), input_kind=("patch", "char"), mmm_init=(True, False)) -> list[AblationCell]:
    cells = [AblationCell(t, k, m) for t, k, m in itertools.product(text_dropout, input_kind, mmm_init)]
    cells = [c for c in cells if not (c.mmm_init and c.input_kind == "char")]  # MMM pre-trains the patch encoder only
    # header dropout against the from-scratch patch cell; MIDI-route views, and the tunes as
    # written (with and without chord views), against header dropout (the main job's recipe)
    return [
        *cells,
        AblationCell(True, "patch", False, header_dropout=True),
        AblationCell(True, "patch", False, header_dropout=True, midi_view=True),
        AblationCell(True, "patch", False, header_dropout=True, as_written=True),
        AblationCell(True, "patch", False, header_dropout=True, as_written=True, chord_view=True),
    ]


# The CPU recipe (recipes/cpu-clamp.yaml: locked MiniLM, 8 text views, batch 64, 64-patch window)
# cut to a budget where it learns in about 12 minutes a cell on 2 cores (400 x 64 tunes at 35/s),
# with its schedule fitted to that budget; recipes/cpu-ablations.yaml is the same, as a file to copy.
GRID_TRAIN: dict[str, Any] = {
    "preset": "small",
    "max_patches": 64,
    "text_tower": "locked",
    "text_views": 8,
    "batch_size": 64,
    "lr": 3e-4,
    "steps": 400,
    "eval_every": 200,
    "keep_best": True,
    "checkpoint_every": 100,
}
# what the MMM warm start changes from `train` (recipes/cpu-mmm.yaml): its own batch and learning
# rate (None: the objective's default), and no valid MRR, which only a contrastive model has
# How a cell is evaluated: on the valid split's held-out tasks (the grid chooses recipes, so it
# never reads the test split), without the input controls and the header baseline (the report's).
DECISION_EVAL: dict[str, Any] = {
    "heldout_split": "valid",
    "controls": ["notes-only", "midi-route", "notes-only-chords-added", "notes-only-unit-1-4"],
    "header_baseline": False,
    "unseen_fields": [],
}
GRID_MMM: dict[str, Any] = {"batch_size": 32, "lr": None, "eval_every": 0, "text_views": 1}


class AblationConfig(BaseModel):
    """The grid's settings: one training budget for every cell (docs/evaluation.md)."""

    model_config = ConfigDict(extra="forbid")

    dataset_dir: str = Field(str(DEFAULT_DATASET_DIR), description="a built dataset folder")
    # the same sources built with `notation: as-written` (and `chord_views` for the -chords cell):
    # its splits hold the same tunes (clamp.data.plan.split_hash)
    as_written_dataset_dir: str | None = Field(
        None, description="the dataset built as written, for the -aw cells (docs/evaluation.md)"
    )
    out_dir: str = Field("outputs/ablations", description="folder of the grid's runs and tables")
    benchmarks: list[str] = Field(
        default_factory=lambda: ["wikimt"], description="comma-separated benchmarks every cell is evaluated on"
    )
    # TrainConfig fields shared by every cell (objective, cell settings and folders are set here)
    train: dict[str, Any] = Field(default_factory=lambda: dict(GRID_TRAIN))
    # TrainConfig fields the MMM warm start changes from `train`
    mmm: dict[str, Any] = Field(default_factory=lambda: dict(GRID_MMM))
    mmm_steps: int = Field(300, ge=1)
    seeds: list[int] = Field(
        default_factory=lambda: [0, 1, 2],
        min_length=1,
        description="comma-separated seeds, each a full pass over the cells",
    )
    # the cells to run (names as in `grid()`, e.g. patch-td-mmm); None: all of them (the MIDI-view
    # cell only on a dataset built with --midi-views). The claims (CLAIMS) compare six of them.
    cells: list[str] | None = Field(
        None,
        description="comma-separated cells, e.g. patch-td-mmm,char-td-scratch",
        json_schema_extra={"default_text": "all eight"},
    )
    # the metrics the claims are judged on (higher is better)
    # (the valid split's held-out tasks: a recipe is chosen without reading the test split)
    claim_metrics: list[str] = Field(
        default_factory=lambda: [
            "valid-tune_type/user_prompts/macro_f1",
            "valid-tune_type.notes-only/user_prompts/macro_f1",
            "valid-tune_type.midi-route/user_prompts/macro_f1",
            "valid-probe/key/p_at_10",
            "valid-probe/meter/p_at_10",
            # key and meter read from the notes: the header lines that name them taken out
            "valid-key.notes-only/user_prompts/accuracy",
            "valid-meter.notes-only/user_prompts/accuracy",
            # ... and from the same notes with a chord per bar, or written in L:1/4
            "valid-key.notes-only-chords-added/user_prompts/accuracy",
            "valid-meter.notes-only-chords-added/user_prompts/accuracy",
            "valid-key.notes-only-unit-1-4/user_prompts/accuracy",
            "valid-meter.notes-only-unit-1-4/user_prompts/accuracy",
            "wikimt/text_to_music/mrr",
        ]
    )
    max_items: int | None = Field(None, ge=1, description="an evenly spaced subset of each benchmark (quick runs)")
    experiment: str = "clamp-ablations"
    tracking_dir: str | None = None
    primary_metric: str | None = None
    # a model folder to compare the cells with (the current champion: ours, or a published
    # checkpoint made into a folder by `clamp import`): evaluated once on the same benchmarks,
    # shown as the row `champion` (not part of the claims)
    champion_dir: str | None = None

    @field_validator("cells")
    @classmethod
    def _known_cells(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            known = [c.name for c in grid()]
            unknown = [v for v in value if v not in known]
            if unknown or not value:
                raise ValueError(
                    f"unknown cell {unknown[0]!r}; choose from {', '.join(known)}"
                    if unknown
                    else "cells must name at least one cell"
                )
        return value

    @model_validator(mode="after")
    def _valid_training(self) -> AblationConfig:
        """`train` and `mmm` are checked as TrainConfigs now, so a misspelt field is a one-line
        error before the grid starts, not a failure in its first cell."""
        from clamp.errors import error_line

        for what, settings in (
            ("train", {**self.train, "objective": "clamp"}),
            ("mmm", {**self.train, **self.mmm, "objective": "mmm", "steps": self.mmm_steps}),
        ):
            try:
                TrainConfig(**settings)
            except ValidationError as exc:
                raise ValueError(f"{what}: {error_line(exc)}") from None
        return self

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> AblationConfig:
        """Defaults < the file at `path` < `overrides` (only what the user gave; None is dropped)."""
        return load_config(cls, path, **overrides)

    def selected_cells(self) -> list[AblationCell]:
        cells = grid()
        return cells if self.cells is None else [c for c in cells if c.name in self.cells]


def cells_the_dataset_allows(cells: list[AblationCell], cfg: AblationConfig) -> list[AblationCell]:
    """The cells, less those whose dataset is missing: the MIDI-view ones when `dataset_dir` has
    no MIDI-route views, the -aw ones without an as-written `as_written_dataset_dir`, the -chords
    ones when it has no chord views. Left out with a line when the grid runs all its cells,
    refused in one line when the user named them."""
    import logging

    from clamp.data import views
    from clamp.data.shards import load_manifest
    from clamp.errors import UserError

    manifest = load_manifest(cfg.dataset_dir)
    written = load_manifest(cfg.as_written_dataset_dir) if cfg.as_written_dataset_dir else None
    if written is not None and written.get("notation") != "as-written":
        raise UserError(
            f"as_written_dataset_dir {cfg.as_written_dataset_dir} is built with notation "
            f"{written.get('notation')!r}: build it with `notation: as-written`"
        )

    def missing(cell: AblationCell) -> str | None:
        if cell.midi_view and views.MIDI_VIEW not in manifest.get("views", {}):
            option = views.VIEW_OPTIONS[views.MIDI_VIEW]
            return f"{cfg.dataset_dir} has no MIDI-route views: rebuild it with `clamp build {option}s`"
        if cell.as_written and written is None:
            return "as_written_dataset_dir is not set: build the sources with `notation: as-written` and name it"
        if cell.chord_view and views.CHORD_VIEW not in (written or {}).get("views", {}):
            option = views.VIEW_OPTIONS[views.CHORD_VIEW]
            return f"{cfg.as_written_dataset_dir} has no chord views: rebuild it with `clamp build {option}s`"
        return None

    why = {c.name: reason for c in cells if (reason := missing(c)) is not None}
    if not why:
        return cells
    if cfg.cells is not None:
        name, reason = next(iter(why.items()))
        raise UserError(f"cell {name} cannot run: {reason}")
    log = logging.getLogger("clamp.ablations")
    for name, reason in why.items():
        log.warning("leaving out %s: %s", name, reason)
    return [c for c in cells if c.name not in why]


def run_ablations(cfg: AblationConfig, cells: list[AblationCell] | None = None) -> dict:
    import mlflow

    from clamp.eval.config import EvalConfig
    from clamp.eval.run import evaluate
    from clamp.tracking import flatten, mlflow_run
    from clamp.train.run import train

    cells = cells if cells is not None else cfg.selected_cells()
    cells = cells_the_dataset_allows(cells, cfg)
    base, dataset_dir, experiment, tracking_dir = cfg.train, cfg.dataset_dir, cfg.experiment, cfg.tracking_dir
    out = Path(cfg.out_dir)
    rows: list[dict] = []
    with mlflow_run(experiment, "ablations", Path(tracking_dir) if tracking_dir else None) as parent:
        mlflow.log_params(
            flatten(
                {
                    "base": base,
                    "mmm_steps": cfg.mmm_steps,
                    "benchmarks": ",".join(cfg.benchmarks),
                    "cells": ",".join(c.name for c in cells),
                }
            )
        )
        for seed in cfg.seeds:
            run = out / f"seed{seed}"
            mmm_out = run / "mmm"
            mmm_trained = False
            for cell in cells:
                train_cfg = TrainConfig(
                    **{
                        **base,
                        "seed": seed,
                        "objective": "clamp",
                        "dataset_dir": cfg.as_written_dataset_dir if cell.as_written else dataset_dir,
                        "output_dir": str(run / cell.name),
                        "text_dropout": cell.text_dropout,
                        "input_kind": cell.input_kind,
                        "header_dropout": HEADER_DROPOUT if cell.header_dropout else 0.0,
                        "midi_view": MIDI_VIEW if cell.midi_view else 0.0,
                        "chord_view": CHORD_VIEW if cell.chord_view else 0.0,
                        "init_music_from": str(mmm_out / "model") if cell.mmm_init else None,
                        "run_name": f"train/{cell.name}/seed{seed}",
                        "experiment": experiment,
                        "tracking_dir": tracking_dir,
                    }
                )
                done = run / cell.name / "row.json"  # the cell's completion marker: a rerun skips it
                key, eval_key = _cell_key(train_cfg, cfg), _eval_key()
                finished = json.loads(done.read_text()) if done.is_file() else {}
                # (markers written before `model_dir` was kept name the folder train() writes)
                model_dir = finished.get("model_dir", str(run / cell.name / "model"))
                trained = finished.get("key") == key and (Path(model_dir) / "config.json").is_file()
                if trained and finished.get("eval_key") == eval_key:
                    rows.append(finished["row"])
                    continue
                # one MMM warm start per seed, shared by its mmm cells (none for a cell only evaluated again)
                if cell.mmm_init and not mmm_trained and not trained:
                    train(
                        TrainConfig(
                            **{
                                **base,
                                **cfg.mmm,
                                "seed": seed,
                                "objective": "mmm",
                                "steps": cfg.mmm_steps,
                                "dataset_dir": dataset_dir,
                                "output_dir": str(mmm_out),
                                "run_name": f"mmm-init/seed{seed}",
                                "experiment": experiment,
                                "tracking_dir": tracking_dir,
                            }
                        )
                    )
                    mmm_trained = True
                if trained:  # trained before, evaluated otherwise (the decision controls changed)
                    last_loss, best_mrr = finished["row"]["final_train_loss"], finished["row"]["best_valid_mrr"]
                else:
                    result = train(train_cfg)
                    model_dir, last_loss = result["model_dir"], result["last_loss"]
                    best_mrr = result.get("best_valid_mrr")
                evals = evaluate(
                    EvalConfig(
                        model_dir=model_dir,
                        benchmarks=cfg.benchmarks,
                        # every cell on the same valid tunes: those of `dataset_dir`, read as written
                        # (an -aw cell's model reads them without the canonical rewrite)
                        dataset_dir=dataset_dir,
                        out_dir=str(run / cell.name / "eval"),
                        include_untrained=False,
                        experiment=experiment,
                        tracking_dir=tracking_dir,
                        max_items=cfg.max_items,
                        **DECISION_EVAL,
                    )
                )
                row = {
                    "cell": cell.name,
                    "seed": seed,
                    "text_dropout": cell.text_dropout,
                    "input": cell.input_kind,
                    "mmm_init": cell.mmm_init,
                    "final_train_loss": last_loss,
                    "best_valid_mrr": best_mrr,
                }
                for e in evals:
                    row.update(e.metrics)
                rows.append(row)
                marker = {"key": key, "eval_key": eval_key, "model_dir": str(model_dir), "row": row}
                done.write_text(json.dumps(marker, default=str))
        claims = paper_claims([r for r in rows if r["cell"] != CHAMPION], cfg.claim_metrics)
        if cfg.champion_dir:
            evals = evaluate(
                EvalConfig(
                    model_dir=cfg.champion_dir,
                    benchmarks=cfg.benchmarks,
                    dataset_dir=dataset_dir,
                    out_dir=str(out / CHAMPION / "eval"),
                    include_untrained=False,
                    experiment=experiment,
                    tracking_dir=tracking_dir,
                    max_items=cfg.max_items,
                    **DECISION_EVAL,
                )
            )
            row = {"cell": CHAMPION, "seed": ""}
            for e in evals:
                row.update(e.metrics)
            rows.append(row)
        claims_path = write_claims(claims, out)
        mlflow.log_artifact(str(claims_path))
        for c in claims:
            if c["mean"] is not None:
                mlflow.log_metric(f"claim/{c['claim_id']}/{c['metric']}/difference", c["mean"])
        table = write_comparison(rows, out, cfg.primary_metric, cfg.claim_metrics)
        for path in table:
            mlflow.log_artifact(str(path))
        run_id = parent.info.run_id
    return {"parent_run_id": run_id, "rows": rows, "claims": claims}


def _cell_key(train_cfg: TrainConfig, cfg: AblationConfig) -> str:
    """What decides a cell's trained model (and the benchmarks it is evaluated on)."""
    train = train_cfg.model_dump(exclude={"run_name", "experiment", "tracking_dir", "progress", "mlflow"})
    if not train["chord_view"]:  # newer than some finished cells: off, it is what they did
        train.pop("chord_view")
    settings = {
        "train": train,
        "mmm": {**cfg.mmm, "steps": cfg.mmm_steps} if train_cfg.init_music_from else None,
        "benchmarks": cfg.benchmarks,
        "max_items": cfg.max_items,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _eval_key() -> str:
    """What decides a cell's evaluation beyond `_cell_key`: the decision settings and controls."""
    return hashlib.sha256(json.dumps(DECISION_EVAL, sort_keys=True).encode()).hexdigest()[:16]


CHAMPION = "champion"  # the row of `champion_dir`

# The paper's claims: (id, what it says, the cell that should win, the cell it should beat).
CLAIMS = [
    ("text_dropout", "text dropout helps", "patch-td-mmm", "patch-notd-mmm"),
    ("bar_patching", "bar patching beats characters", "patch-td-scratch", "char-td-scratch"),
    ("mmm_init", "MMM pre-training helps", "patch-td-mmm", "patch-td-scratch"),
    ("header_dropout", "header dropout helps", "patch-td-scratch-hd", "patch-td-scratch"),
    ("midi_view", "MIDI-route views help", "patch-td-scratch-hd-midi", "patch-td-scratch-hd"),
    ("canonical_notation", "canonical notation helps", "patch-td-scratch-hd", "patch-td-scratch-hd-aw"),
    ("chord_view", "chord views help (as written)", "patch-td-scratch-hd-aw-chords", "patch-td-scratch-hd-aw"),
    # the choice for chord symbols: out of the input (canonical) or in training (views)
    ("chords_out", "chords out beats chord views", "patch-td-scratch-hd", "patch-td-scratch-hd-aw-chords"),
]


def paper_claims(rows: list[dict], metrics: list[str]) -> list[dict]:
    """Each claim on each metric: the per-seed difference (winner - loser), its mean and 95%
    t-interval over seeds, and the verdict: `holds` (interval above 0), `reversed` (below 0) or
    `not separable` (it contains 0; with one seed there is no interval)."""
    by = {(r["cell"], r["seed"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    out = []
    for claim_id, text, win, lose in CLAIMS:
        for metric in metrics:
            diffs = [
                by[(win, s)][metric] - by[(lose, s)][metric]
                for s in seeds
                if (win, s) in by and (lose, s) in by and metric in by[(win, s)] and metric in by[(lose, s)]
            ]
            row = {
                "claim_id": claim_id,
                "claim": text,
                "metric": metric,
                "seeds": len(diffs),
                "mean": None,
                "ci_low": None,
                "ci_high": None,
                "verdict": "not run",
            }
            if diffs:
                row["mean"], row["ci_low"], row["ci_high"] = t_interval(diffs)
                low, high = row["ci_low"], row["ci_high"]
                row["verdict"] = (
                    "not separable"
                    if low is None
                    else "holds"
                    if low > 0
                    else "reversed"
                    if high < 0
                    else "not separable"
                )
            out.append(row)
    return out


def write_claims(claims: list[dict], out: Path) -> Path:
    lines = ["| claim | metric | seeds | difference [95% CI] | verdict |", "|---|---|---|---|---|"]
    for c in claims:
        diff = (
            "-"
            if c["mean"] is None
            else (
                f"{c['mean']:+.3f}" + (f" [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]" if c["ci_low"] is not None else "")
            )
        )
        lines.append(f"| {c['claim']} | {c['metric']} | {c['seeds']} | {diff} | {c['verdict']} |")
    path = out / "claims.md"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_comparison(
    rows: list[dict], out: Path, primary_metric: str | None, claim_metrics: list[str] | None = None
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    csv_path = out / "ablations.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    # the claims' metrics first, then every zero-shot accuracy and MRR (not the _ci_ bounds)
    summary_cols = [c for c in ["best_valid_mrr", *(claim_metrics or [])] if c in columns]
    metric_cols = summary_cols + [
        c for c in columns if c.endswith(("/zero_shot/accuracy", "/text_to_music/mrr")) and c not in summary_cols
    ]

    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"

    md = [
        "Per cell, over its seeds: mean [95% t-interval].",
        "",
        "| cell | seeds | " + " | ".join(summary_cols) + " |",
        "|---|---|" + "---|" * len(summary_cols),
    ]
    for name in dict.fromkeys(r["cell"] for r in rows):
        mine = [r for r in rows if r["cell"] == name]
        parts = []
        for c in summary_cols:
            values = [r[c] for r in mine if isinstance(r.get(c), (int, float))]
            if not values:
                parts.append("-")
                continue
            mean, low, high = t_interval(values)
            parts.append(f"{mean:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None else ""))
        md.append(f"| {name} | {len(mine)} | " + " | ".join(parts) + " |")
    md += [
        "",
        "Every run:",
        "",
        "| cell | seed | " + " | ".join(metric_cols) + " |",
        "|---|---|" + "---|" * len(metric_cols),
    ]
    md += [
        "| " + r["cell"] + f" | {r.get('seed', '')} | " + " | ".join(cell(r.get(c)) for c in metric_cols) + " |"
        for r in rows
    ]
    md_path = out / "ablations.md"
    md_path.write_text("\n".join(md) + "\n")
    # one panel per judged metric (or the primary one): each cell's mean over seeds with its
    # t-interval, every seed as a dot
    shown = [primary_metric] if primary_metric else (summary_cols or metric_cols[:1] or ["final_train_loss"])
    from clamp.eval.plots import pyplot_agg, save_figure

    plt = pyplot_agg()
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    # at most 4 panels a row: one row of 15 is a strip no one can read
    ncols = min(len(shown), 4)
    nrows = -(-len(shown) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=((1.2 + 0.7 * len(cells)) * ncols, 3.8 * nrows), squeeze=False)
    for ax in axes.flat[len(shown) :]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, shown, strict=False):
        for i, name in enumerate(cells):
            values = [r[metric] for r in rows if r["cell"] == name and isinstance(r.get(metric), (int, float))]
            if not values:
                continue
            mean, low, high = t_interval(values)
            ax.bar(i, mean, color="#4878a8", yerr=None if low is None else [[mean - low], [high - mean]], capsize=3)
            ax.scatter([i] * len(values), values, color="black", s=10, zorder=3)
        ax.set_xticks(range(len(cells)), cells, rotation=35, ha="right")
        ax.set_title(metric.replace("/", "/\n", 1), fontsize=8)  # two lines: long names overlap their neighbours
    fig.suptitle("ablations: mean over seeds, 95% t-interval, seeds as dots", fontsize=10)
    fig.tight_layout()
    return [csv_path, md_path, save_figure(fig, out / "ablations.png")]
