"""``misuse profile build|show`` and ``misuse eval sea`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from misuse.cli import app
from misuse.cli.common import EXIT_INPUT

runner = CliRunner()


def _project(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    log = tmp_path / "User3"
    log.write_text("\n".join(rng.choice(["ls", "vi", "make"], 300)) + "\n")
    project = tmp_path / "proj"
    r = runner.invoke(app, ["ingest", str(log), "-d", "cmds", "-p", str(project), "-f", "sea"])
    assert r.exit_code == 0, r.output
    return project


def test_profile_show_explains_the_baseline_with_charts(tmp_path: Path) -> None:
    project = _project(tmp_path)
    built = runner.invoke(app, ["profile", "build", "-d", "cmds", "-p", str(project), "--json"])
    r = runner.invoke(app, ["profile", "show", "User3", "-d", "cmds", "-p", str(project)])
    assert built.exit_code == 0 and json.loads(built.output)["profiles"] == 1
    assert r.exit_code == 0, r.output
    assert "300 events learned" in r.output and "Top actions" in r.output and "Mon" in r.output
    assert "█" in r.output


def test_profile_show_json_and_unknown_entity(tmp_path: Path) -> None:
    project = _project(tmp_path)
    r = runner.invoke(app, ["profile", "show", "User3", "-d", "cmds", "-p", str(project), "--json"])
    assert r.exit_code == 0
    assert json.loads(r.output)["profile"]["events"] == 300
    bad = runner.invoke(app, ["profile", "show", "nobody", "-d", "cmds", "-p", str(project)])
    assert bad.exit_code == EXIT_INPUT and "nobody" in bad.output and "Traceback" not in bad.output


def test_eval_sea_refuses_a_folder_without_the_truth_file(tmp_path: Path) -> None:
    r = runner.invoke(app, ["eval", "sea", "--path", str(tmp_path)])
    assert r.exit_code == EXIT_INPUT and "masquerade_summary.txt" in r.output
