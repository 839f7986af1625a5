"""benchmarks/rules.py runs and prints what issue 5 asks for (figures are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from misuse.rules import builtin_pack
from misuse.rules.model import load_rules

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "rules.py"


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--events", "20000", "--singles", "10", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_throughput_lines_carry_the_target_verdict() -> None:
    # execute
    out = _run("--no-data")
    # assert: dense and sparse simple selections are judged against 500k events/s, the rest say no target
    lines = out.splitlines()
    judged = [line for line in lines if "target >= 500k events/s: " in line]
    assert [line.split(",")[0] for line in judged] == ["batch", "batch"]
    assert all(line.rstrip().endswith(("met", "MISSED")) for line in judged)
    assert any(line.startswith("batch, whole pack") for line in lines)
    assert sum(line.startswith("single events (process_one)") for line in lines) == 3
    assert "20,000 events" in out and "one core" in out


@pytest.mark.realdata
def test_every_rule_is_listed_for_a_dataset() -> None:
    # prepare
    rules = builtin_pack() + load_rules(REPO / "tests" / "rules" / "fixtures" / "sigma")
    # execute
    out = _run("--datasets", "loghub")
    # assert: each rule has a row on both loghub files, zero hits included
    table = out.split("## loghub OpenSSH")[1].split("## loghub Linux")[0]
    rows = [line for line in table.splitlines() if line[:62].rstrip() in {r.title[:62] for r in rules}]
    assert len(rows) == len(rules)
    assert any(line.split()[-5:-2] == ["0", "0", "0"] for line in rows)
