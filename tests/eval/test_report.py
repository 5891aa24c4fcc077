"""`clamp report`: an evaluation folder rendered as Markdown and self-contained HTML, opened in
Debian's chromium (Playwright; never a downloaded browser).

Set CLAMP_REPORT_SCREENSHOT=docs/img/report.png and CLAMP_REPORT_SOURCE=<an evaluation folder>
to make the picture in docs/ from a real run."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clamp.cli import app
from clamp.eval.report import _interval, plot_probes

CHROMIUM = Path(os.environ.get("CLAMP_CHROMIUM", "/usr/bin/chromium"))
runner = CliRunner()


def test_intervals_are_read_from_the_tables_cells(tmp_path):
    assert _interval("0.80 [0.50, 1.00]") == (0.8, 0.5, 1.0)
    assert _interval("-0.032 [-0.1, 0.05]") == (-0.032, -0.1, 0.05)
    assert _interval("0.33") is None and _interval("-") is None
    rows = [
        {"probe": "a jig", "random": "0.10", "m P@10": "0.80 [0.50, 1.00]"},
        {"probe": "a reel", "random": "-", "m P@10": "-"},
    ]
    assert plot_probes(rows, tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_probes([{"probe": "x", "random": "0.1"}], tmp_path / "none.png") is None


def test_bad_sources_get_one_line_errors(tmp_path):
    out = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert out.exit_code == 2 and "neither a folder nor an MLflow run id" in out.output
    out = runner.invoke(app, ["report", str(tmp_path)])
    assert out.exit_code == 2 and "no evaluation.json in it" in out.output
    (tmp_path / "evaluation.json").write_text("{not json")
    out = runner.invoke(app, ["report", str(tmp_path)])
    assert out.exit_code == 2 and "is not an evaluation record" in out.output


@pytest.fixture(scope="module")
def evaluation_folder(tiny_model, tiny_dataset, benchmarks_dir, tmp_path_factory) -> Path:
    from clamp.eval.config import EvalConfig
    from clamp.eval.run import evaluate

    out = tmp_path_factory.mktemp("evaluation")
    evaluate(
        EvalConfig(
            model_dir=str(tiny_model),
            dataset_dir=str(tiny_dataset),
            benchmarks=["wikimt"],
            max_items=30,
            out_dir=str(out),
            mlflow=False,
            bootstrap_resamples=50,
            include_untrained=False,
            controls=["notes-only"],
        )
    )
    return out


@pytest.mark.slow
def test_report_of_an_evaluation_folder(evaluation_folder, tmp_path):
    record = json.loads((evaluation_folder / "evaluation.json").read_text())
    assert {r["benchmark"] for r in record["results"]} >= {"wikimt"} and record["tables"]["quality"]
    out = runner.invoke(app, ["report", str(evaluation_folder), "--out", str(tmp_path / "rep")])
    assert out.exit_code == 0, out.output
    md = (tmp_path / "rep" / "report.md").read_text()
    page = (tmp_path / "rep" / "report.html").read_text()
    # every row of the quality table is in the Markdown, cell for cell
    first = record["tables"]["quality"][0]
    assert "| " + " | ".join(str(v) for v in first.values()) + " |" in md
    assert "## Quality" in md and "## Training" in md and "## Figures of each task" in md
    # the figures: the evaluation's own, and the training curve (the tiny model's metrics file)
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    own = sorted(f"{p.parent.name}-{p.name}" for p in evaluation_folder.rglob("*.png"))  # <model>-<figure>
    assert own and "figures/training.png" in images
    assert sorted(Path(i).name for i in images if Path(i).stem not in ("training", "probes")) == own
    for rel in images:
        assert (tmp_path / "rep" / rel).read_bytes()[:4] == b"\x89PNG"
    # the HTML embeds the same figures: nothing to fetch
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) == len(images) and all(base64.b64decode(u)[:4] == b"\x89PNG" for u in uris)
    assert "http" not in page.replace("https://", "").split("<body", 1)[0]


@pytest.mark.slow
def test_the_html_report_opens_in_a_browser(evaluation_folder, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip(f"no chromium at {CHROMIUM}: infra/bootstrap.sh installs Debian's chromium with apt-get")
    playwright = pytest.importorskip("playwright.sync_api")
    source = Path(os.environ.get("CLAMP_REPORT_SOURCE") or evaluation_folder)
    runner.invoke(app, ["report", str(source), "--out", str(tmp_path / "rep")], catch_exceptions=False)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1400})
            page.goto((tmp_path / "rep" / "report.html").as_uri())
            widths = page.locator("img").evaluate_all("els => els.map(e => e.complete ? e.naturalWidth : 0)")
            assert widths and all(w > 100 for w in widths), widths
            tables = json.loads((source / "evaluation.json").read_text())["tables"]
            assert page.locator("table").count() == sum(
                1 for k in ("targets", "quality", "controls", "probes") if tables.get(k)
            )
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
    if os.environ.get("CLAMP_REPORT_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["CLAMP_REPORT_SCREENSHOT"])
