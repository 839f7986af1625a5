"""``misuse train`` and ``misuse detect``: a bad option value is a one-line usage error (exit 2)
naming the option and the value, given before any store or cluster is touched."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from misuse.cli import app
from misuse.cli.common import EXIT_USAGE

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", "--until", "notadate"], "error: --until 'notadate': not a date or time"),
        (["train", "--until", "9999-01-01"], "error: --until '9999-01-01': not a date or time"),
        (["detect", "--since", "notadate"], "error: --since 'notadate': not a date or time"),
        (["scale", "detect", "--partitioned", "parts", "--since", ""], "error: --since '': not a date or time"),
        (["train", "--partitioned", "parts", "--cluster", "nonsense"], "error: --cluster 'nonsense': expected"),
        (["detect", "--partitioned", "parts", "--cluster", "tcp://host"], "error: --cluster 'tcp://host': expected"),
        (["scale", "train", "--partitioned", "parts", "--cluster", "local:0"], "error: --cluster 'local:0': expected"),
    ],
)
def test_bad_option_values_are_one_line_usage_errors(tmp_path: Path, args: list[str], expected: str) -> None:
    result = runner.invoke(app, [*args, "--project", str(tmp_path / "proj")])

    assert result.exit_code == EXIT_USAGE
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), result.output
    assert not (tmp_path / "proj").exists()
