"""The ablation grid: child runs under one parent in a real MLflow store, names that line up."""

from __future__ import annotations

import pytest

from clamp.workflows.ablations import AblationCell, AblationConfig, grid, run_ablations


def test_grid_has_the_paper_ablations_and_header_dropout():
    names = [c.name for c in grid()]
    assert names == [
        "patch-td-mmm",
        "patch-td-scratch",
        "char-td-scratch",
        "patch-notd-mmm",
        "patch-notd-scratch",
        "char-notd-scratch",
        "patch-td-scratch-hd",
        "patch-td-scratch-hd-midi",
        "patch-td-scratch-hd-aw",
        "patch-td-scratch-hd-aw-chords",
    ]
    assert [c.header_dropout for c in grid()] == [False] * 6 + [True] * 4
    assert [c.midi_view for c in grid()] == [False] * 7 + [True, False, False]
    assert [c.as_written for c in grid()] == [False] * 8 + [True, True]
    assert [c.chord_view for c in grid()] == [False] * 9 + [True]


@pytest.mark.slow
def test_ablation_children_compare_in_mlflow(tiny_dataset, tmp_path, benchmarks_dir, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cells = [AblationCell(True, "patch", True), AblationCell(False, "patch", False), AblationCell(True, "char", False)]
    tracking = tmp_path / "mlflow"
    cfg = AblationConfig(
        dataset_dir=str(tiny_dataset),
        out_dir=str(tmp_path / "abl"),
        benchmarks=["wikimt"],
        train={"preset": "tiny", "steps": 3, "batch_size": 8, "projection_dim": 16, "checkpoint_every": 0},
        mmm_steps=3,
        tracking_dir=str(tracking),
        max_items=60,
        seeds=[0],
    )
    result = run_ablations(cfg, cells)
    client = MlflowClient(tracking_uri=f"sqlite:///{tracking / 'mlflow.db'}")
    parent = client.get_run(result["parent_run_id"])
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    names = sorted(r.info.run_name for r in children)
    assert names == sorted(
        [
            "mmm-init/seed0",
            "train/patch-td-mmm/seed0",
            "train/patch-notd-scratch/seed0",
            "train/char-td-scratch/seed0",
            "patch-td-mmm/wikimt",
            "patch-notd-scratch/wikimt",
            "char-td-scratch/wikimt",
        ]
    )
    evals = [r for r in children if r.data.tags.get("kind") == "evaluation"]
    # the same metric names in every evaluation child: the MLflow compare view lines them up
    keys = {frozenset(r.data.metrics) for r in evals}
    assert len(keys) == 1 and "wikimt/zero_shot/accuracy" in next(iter(keys))
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"ablations.csv", "ablations.md", "ablations.png", "claims.md"} <= artifacts
    assert [r["cell"] for r in result["rows"]] == ["patch-td-mmm", "patch-notd-scratch", "char-td-scratch"]

    def child_names(grid_result: dict) -> list[str]:
        """The runs a grid run started: the children of its parent."""
        found = client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{grid_result['parent_run_id']}'"
        )
        return sorted(r.info.run_name for r in found)

    # a rerun skips the finished cells (row.json is each one's completion marker): the new parent
    # has no training child and the same rows; a changed setting retrains only what it changes
    again = run_ablations(cfg, cells)
    assert child_names(again) == [] and again["rows"] == result["rows"]
    changed = run_ablations(cfg.model_copy(update={"mmm_steps": 2}), cells)
    assert child_names(changed) == [
        "mmm-init/seed0",
        "patch-td-mmm/wikimt",
        "train/patch-td-mmm/seed0",
    ]
    # other decision controls: every cell is evaluated again, none trained again
    from clamp.workflows import ablations

    monkeypatch.setitem(ablations.DECISION_EVAL, "controls", ["notes-only"])
    evaluated = run_ablations(cfg.model_copy(update={"mmm_steps": 2}), cells)
    assert child_names(evaluated) == [
        "char-td-scratch/wikimt",
        "patch-notd-scratch/wikimt",
        "patch-td-mmm/wikimt",
    ]
    assert [r["final_train_loss"] for r in evaluated["rows"]] == [r["final_train_loss"] for r in changed["rows"]]


def test_the_grid_defaults_are_the_cpu_recipe_file():
    """`recipes/cpu-ablations.yaml` and the defaults describe one grid (the file also picks the
    claims' four cells), so the deployment and the documented command cannot drift apart."""
    from pathlib import Path

    from clamp.workflows.ablations import CLAIMS

    recipe = AblationConfig.load(Path(__file__).parents[2] / "recipes" / "cpu-ablations.yaml")
    default = AblationConfig()
    assert (recipe.train, recipe.mmm, recipe.mmm_steps, recipe.seeds) == (
        default.train,
        default.mmm,
        default.mmm_steps,
        default.seeds,
    )
    assert [c.name for c in recipe.selected_cells()] == [
        "patch-td-mmm",
        "patch-td-scratch",
        "char-td-scratch",
        "patch-notd-mmm",
        "patch-td-scratch-hd",
    ]
    midi = AblationConfig.load(Path(__file__).parents[2] / "recipes" / "cpu-ablations-midi.yaml")
    assert (midi.train, midi.seeds) == (default.train, default.seeds)
    assert midi.cells == ["patch-td-scratch", "patch-td-scratch-hd", "patch-td-scratch-hd-midi"]
    notation = AblationConfig.load(Path(__file__).parents[2] / "recipes" / "cpu-ablations-notation.yaml")
    assert (notation.train, notation.seeds, notation.out_dir) == (default.train, default.seeds, midi.out_dir)
    assert notation.cells == ["patch-td-scratch-hd", "patch-td-scratch-hd-aw", "patch-td-scratch-hd-aw-chords"]
    claimed = {cell for _, _, win, lose in CLAIMS for cell in (win, lose)}
    assert claimed == set(recipe.cells) | set(midi.cells) | set(notation.cells)
    assert default.selected_cells() == grid()
    # ... and the grid is the CPU recipe at a shorter budget: every setting of recipes/cpu-clamp.yaml
    # and cpu-mmm.yaml but the budget (steps, validation interval) and what each cell decides;
    # the main recipe is the MIDI-route cell's recipe, run from its ablation file before adoption
    from clamp.config import read_config_file

    recipes = Path(__file__).parents[2] / "recipes"
    clamp_recipe = read_config_file(recipes / "cpu-clamp.yaml")
    for key in set(clamp_recipe) - {"objective", "text_dropout", "header_dropout", "midi_view", "steps", "eval_every"}:
        assert default.train[key] == clamp_recipe[key], key
    # the README's Quality report ran from the MIDI-route cell's recipe file: the same settings
    assert read_config_file(recipes / "ablations" / "cpu-clamp-midi-view.yaml") == clamp_recipe
    mmm_recipe = read_config_file(recipes / "cpu-mmm.yaml")
    mmm = {**default.train, **default.mmm, "steps": default.mmm_steps}
    for key in set(mmm_recipe) - {"objective"}:
        assert mmm[key] == mmm_recipe[key], key


def test_claims_are_paired_differences_with_t_intervals():
    from clamp.workflows.ablations import paper_claims

    m = "corpus-probe/key/p_at_10"
    rows = [{"cell": "patch-td-mmm", "seed": s, m: v} for s, v in enumerate([0.5, 0.6, 0.7])]
    rows += [{"cell": "patch-notd-mmm", "seed": s, m: v} for s, v in enumerate([0.3, 0.5, 0.5])]  # diffs .2 .1 .2
    rows += [{"cell": "patch-td-scratch", "seed": s, m: v} for s, v in enumerate([0.5, 0.7, 0.6])]  # diffs 0 -.1 .1
    rows += [{"cell": "char-td-scratch", "seed": s, m: v} for s, v in enumerate([0.9, 0.9, 0.9])]  # diffs -.4 -.2 -.3
    claims = {c["claim_id"]: c for c in paper_claims(rows, [m])}
    td = claims["text_dropout"]
    # mean 0.1667, sd 0.0577, t(2) = 4.303: half-width 4.303 * 0.0577 / sqrt(3) = 0.1434
    assert td["mean"] == pytest.approx(1 / 6) and td["ci_low"] == pytest.approx(1 / 6 - 0.14344, abs=1e-4)
    assert td["verdict"] == "holds"
    assert claims["mmm_init"]["mean"] == pytest.approx(0.0) and claims["mmm_init"]["verdict"] == "not separable"
    assert claims["bar_patching"]["mean"] == pytest.approx(-0.3) and claims["bar_patching"]["verdict"] == "reversed"


def test_comparison_table_gives_each_cell_its_mean_and_t_interval(tmp_path):
    from clamp.workflows.ablations import write_comparison

    m = "corpus-probe/key/p_at_10"
    rows = [{"cell": "patch-td-mmm", "seed": s, "best_valid_mrr": v, m: v + 0.1} for s, v in enumerate([0.2, 0.3, 0.4])]
    rows.append({"cell": "champion", "seed": "", "best_valid_mrr": None, m: 0.5})
    paths = write_comparison(rows, tmp_path, None, [m])
    md = (tmp_path / "ablations.md").read_text()
    # mean 0.3, sd 0.1, t(2) = 4.303: half-width 4.303 * 0.1 / sqrt(3) = 0.248
    assert "| patch-td-mmm | 3 | 0.300 [0.052, 0.548] | 0.400 [0.152, 0.648] |" in md
    assert "| champion | 1 | - | 0.500 |" in md  # one value: no interval; no valid MRR: a dash
    assert "| champion |  | - | 0.500 |" in md
    assert [p.name for p in paths] == ["ablations.csv", "ablations.md", "ablations.png"] and paths[2].stat().st_size > 0


def test_a_cell_whose_dataset_is_missing_is_left_out_or_refused(tiny_dataset, tmp_path):
    from clamp.errors import UserError
    from clamp.workflows.ablations import cells_the_dataset_allows
    from tests.conftest import build_tunes_dataset

    every = AblationConfig(dataset_dir=str(tiny_dataset))
    assert [c.name for c in cells_the_dataset_allows(grid(), every)] == [c.name for c in grid()][:7]
    named = AblationConfig(dataset_dir=str(tiny_dataset), cells=["patch-td-scratch-hd-midi"])
    with pytest.raises(UserError, match="has no MIDI-route views: rebuild it with `clamp build --midi-views`"):
        cells_the_dataset_allows(named.selected_cells(), named)
    named = AblationConfig(dataset_dir=str(tiny_dataset), cells=["patch-td-scratch-hd-aw"])
    with pytest.raises(UserError, match="cell patch-td-scratch-hd-aw cannot run: as_written_dataset_dir is not set"):
        cells_the_dataset_allows(named.selected_cells(), named)
    canonical = named.model_copy(update={"as_written_dataset_dir": str(tiny_dataset)})
    with pytest.raises(UserError, match="is built with notation 'canonical': build it with `notation: as-written`"):
        cells_the_dataset_allows(canonical.selected_cells(), canonical)
    written = build_tunes_dataset(tmp_path, 12, "aw", notation="as-written").dataset_dir
    every = AblationConfig(dataset_dir=str(tiny_dataset), as_written_dataset_dir=str(written))
    assert [c.name for c in cells_the_dataset_allows(grid(), every)] == [c.name for c in grid()][:7] + [
        "patch-td-scratch-hd-aw"
    ]
    chords = every.model_copy(update={"cells": ["patch-td-scratch-hd-aw-chords"]})
    with pytest.raises(UserError, match="has no chord views: rebuild it with `clamp build --chord-views`"):
        cells_the_dataset_allows(chords.selected_cells(), chords)
