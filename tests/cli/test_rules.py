"""``misuse rules``: rule and event files that cannot be read give one line naming the file (exit 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from misuse.cli import app
from misuse.cli.common import EXIT_INPUT

runner = CliRunner()


def _one_line_error(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\xff", "r.yml: not a YAML rule file: not UTF-8 text"),
        (b"", "r.yml: no rule in the file"),
        (b"# only a comment\n---\n", "r.yml: no rule in the file"),
        (b"title: x\x00\n", "r.yml: not valid YAML: unacceptable character"),
    ],
)
def test_an_unreadable_or_empty_rule_file_is_one_line_naming_it(tmp_path: Path, content: bytes, message: str) -> None:
    rules = tmp_path / "r.yml"
    rules.write_bytes(content)

    result = runner.invoke(app, ["rules", "validate", str(rules)])

    assert result.exit_code == EXIT_INPUT
    assert message in _one_line_error(result.output)


def test_rules_run_on_a_csv_asks_for_a_mapping_and_takes_one(tmp_path: Path) -> None:
    table = tmp_path / "x.csv"
    table.write_text("n,dev\n1,cam\n2,cam\n")
    mapping = tmp_path / "m.yaml"
    mapping.write_text("ts: {row_index: true}\nentity: dev\n")

    refused = runner.invoke(app, ["rules", "run", str(table)])
    read = runner.invoke(app, ["rules", "run", str(table), "--mapping", str(mapping)])

    assert refused.exit_code == EXIT_INPUT
    assert "x.csv: a csv file needs a column mapping: --mapping FILE" in _one_line_error(refused.output)
    assert read.exit_code == 0, read.output
    assert read.output.startswith("2 events")
