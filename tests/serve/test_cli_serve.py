"""`clamp serve` on the command line: help, and one-line user errors before anything loads."""

from __future__ import annotations

from typer.testing import CliRunner

from clamp.cli import app

runner = CliRunner()


def test_serve_has_help():
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "--index" in result.output and "--cors-origin" in result.output


def test_serve_user_errors_are_one_line(tmp_path, tiny_model):
    missing = runner.invoke(app, ["serve", "--model", str(tmp_path / "nomodel"), "--index", str(tmp_path)])
    assert missing.exit_code == 2 and missing.output.strip().startswith("error: model folder not found")
    no_index = runner.invoke(app, ["serve", "--model", str(tiny_model), "--index", str(tmp_path)])
    assert no_index.exit_code == 2 and "--index must be a built dataset folder" in no_index.output
    assert "Traceback" not in missing.output + no_index.output
