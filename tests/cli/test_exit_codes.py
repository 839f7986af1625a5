"""What a script sees from the CLI: the exit code of each documented meaning (misuse/cli/common.py),
one line of error, and no progress bar when asked for none (MISUSE_NO_PROGRESS)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from misuse.cli import app
from misuse.cli.common import EXIT_INPUT, EXIT_MODEL, EXIT_USAGE

runner = CliRunner()


def _project(tmp_path: Path, files: int = 1) -> Path:
    """A project with three devices' events, 40 one-minute windows each, in ``files`` stored parts."""
    project = tmp_path / "proj"
    paths = []
    for f in range(files):
        path = tmp_path / f"events-{f}.jsonl"
        rows = [
            {"ts": 1_700_000_000 + 20 * i, "entity": dev, "peer": "broker", "action": "mqtt", "num": {"bytes": i % 7}}
            for dev in ("cam", "plug", "lock")
            for i in range(f * 60, (f + 1) * 60 if files > 1 else 120)
        ]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(str(path))
    r = runner.invoke(app, ["ingest", *paths, "-f", "events-jsonl", "-p", str(project)])
    assert r.exit_code == 0, r.output
    return project


def _one_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [["detect"], ["detect", "--partitioned", "parts"], ["scale", "detect", "--partitioned", "parts"]],
    ids=["store", "partitioned", "scale"],
)
def test_detect_without_a_trained_model_is_exit_5(tmp_path: Path, args: list[str]) -> None:
    project = _project(tmp_path)

    r = runner.invoke(app, [*args, "-p", str(project)])

    assert r.exit_code == EXIT_MODEL
    assert _one_line(r.output) == f"error: {project}: no trained model; run `misuse train` first"


@pytest.mark.parametrize(
    ("args", "value"),
    [
        (["train", "--fpr", "2"], "2.0"),
        (["train", "--fpr", "0"], "0.0"),
        (["train", "--fpr", "nan"], "nan"),
        (["scale", "train", "--partitioned", "parts", "--fpr", "-0.1"], "-0.1"),
    ],
)
def test_a_false_positive_rate_outside_0_1_is_a_usage_error_before_any_work(
    tmp_path: Path, args: list[str], value: str
) -> None:
    r = runner.invoke(app, [*args, "-p", str(tmp_path / "proj")])

    assert r.exit_code == EXIT_USAGE
    assert (
        _one_line(r.output)
        == f"error: --fpr {value}: expected a false-positive rate between 0 and 1 (exclusive), e.g. 0.01"
    )
    assert not (tmp_path / "proj").exists()


def test_feedback_on_an_unknown_alert_is_one_line_naming_the_id(tmp_path: Path) -> None:
    project = _project(tmp_path)

    r = runner.invoke(app, ["feedback", "no-such-alert", "true_positive", "-p", str(project)])

    assert _one_line(r.output) == "error: no alert with id 'no-such-alert'"


def test_feedback_on_an_unknown_alert_is_bad_input(tmp_path: Path) -> None:
    project = _project(tmp_path)

    r = runner.invoke(app, ["feedback", "no-such-alert", "true_positive", "-p", str(project)])

    assert r.exit_code == EXIT_INPUT


def test_feedback_with_an_unknown_verdict_is_a_usage_error(tmp_path: Path) -> None:
    r = runner.invoke(app, ["feedback", "some-alert", "maybe", "-p", str(tmp_path / "proj")])

    assert r.exit_code == EXIT_USAGE
    assert _one_line(r.output).startswith("error: verdict 'maybe' is not one of true_positive")


@pytest.mark.parametrize(("quiet", "shown"), [(None, True), ("1", False)])
def test_train_shows_progress_on_a_terminal_unless_misuse_no_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet: str | None, shown: bool
) -> None:
    project = _project(tmp_path, files=2)
    terminal = io.StringIO()
    monkeypatch.setattr("misuse.cli.common.err_console", Console(file=terminal, force_terminal=True, width=100))
    if quiet is None:
        monkeypatch.delenv("MISUSE_NO_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("MISUSE_NO_PROGRESS", quiet)

    r = runner.invoke(app, ["train", "-p", str(project)])

    assert r.exit_code == 0, r.output
    assert ("training" in terminal.getvalue() and "4/4" in terminal.getvalue()) is shown  # 2 parts + train + save
    assert shown or terminal.getvalue() == ""
