"""The command line end to end: help, errors and exit codes, and the demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from misuse.cli import app
from misuse.cli.common import EXIT_INPUT, EXIT_STORE

runner = CliRunner()
COMMANDS = ["ingest", "train", "detect", "alerts", "feedback", "simulate", "demo"]
PEOPLE = {"impersonation", "insider_misuse", "inadvertent_misuse"}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_empty_and_wrong_files_give_one_line_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    r = runner.invoke(app, ["ingest", str(empty), "-p", str(tmp_path / "p")])
    assert r.exit_code == EXIT_INPUT
    assert "empty.pcap" in r.output and "empty" in r.output
    assert "Traceback" not in r.output
    wrong = tmp_path / "photo.jpg"
    wrong.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    r = runner.invoke(app, ["ingest", str(wrong), "-p", str(tmp_path / "p")])
    assert r.exit_code == EXIT_INPUT
    assert "photo.jpg" in r.output
    assert "Traceback" not in r.output


def test_commands_without_a_store_say_so(tmp_path: Path) -> None:
    r = runner.invoke(app, ["alerts", "-p", str(tmp_path / "nothing")])
    assert r.exit_code == EXIT_STORE
    assert "no project store" in r.output


def test_bad_records_are_counted_and_set_aside(tmp_path: Path) -> None:
    f = tmp_path / "events.jsonl"
    good = [{"ts": 1_700_000_000 + i, "entity": "cam", "action": "mqtt"} for i in range(5)]
    lines = [json.dumps(g) for g in good[:3]] + ["{broken"] + [json.dumps(g) for g in good[3:]]
    f.write_text("\n".join(lines) + "\n")
    r = runner.invoke(app, ["ingest", str(f), "-f", "events-jsonl", "-p", str(tmp_path / "p"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["rows"] == 5 and out["bad_records"] == 1
    assert "events.jsonl line 4" in out["first_bad"]
    dead = [json.loads(x) for x in Path(out["dead_letter_file"]).read_text().splitlines()]
    assert dead[0]["line"] == 4


def test_demo_end_to_end_then_alerts_and_feedback(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = runner.invoke(app, ["demo", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["alerts"] > 0
    assert (out / "report.html").read_text().count("<details>") == summary["alerts"]
    inc = summary["metrics"]["incidents"]
    assert inc["recall"] is not None and inc["precision"] is not None
    # the people's profiles say who acts: the three account-level incidents come out with their own type
    people = {r["type"]: r for r in inc["incidents"] if r["type"] in PEOPLE}
    assert set(people) == PEOPLE and all(r["detected"] and r["type_correct"] for r in people.values())
    project = summary["project"]
    r = runner.invoke(app, ["alerts", "-p", project, "--json", "--limit", "500"])
    alerts = json.loads(r.output)
    assert len(alerts) == summary["alerts"]
    assert all(a["contributions"] and a["evidence"] for a in alerts)
    r = runner.invoke(app, ["feedback", alerts[0]["alert_id"], "false_positive", "-p", project])
    assert r.exit_code == 0
    r = runner.invoke(app, ["alerts", "-p", project, "--json", "--limit", "500"])
    assert [a["status"] for a in json.loads(r.output)].count("acknowledged") == 1


def test_simulate_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        r = runner.invoke(app, ["simulate", "--out", str(tmp_path / name), "--seed", "3", "--days", "2"])
        assert r.exit_code == 0, r.output
    a = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert a == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in a:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_alerts_explain_prints_text_and_numeric_contributions(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from misuse.alerts.model import Alert
    from misuse.store.duck import Store

    now = datetime(2026, 3, 5, tzinfo=UTC)
    with Store(tmp_path / "p") as store:
        store.add_alerts(
            [
                Alert(entity="alice", window_start=now, window_end=now, score=2.0, threshold=1.0, severity="low",
                      misuse_type="impersonation", detector="access.login.unusual_login", summary="new client",
                      contributions=[{"feature": "client", "typical": "App/1", "actual": "curl/8 [x]", "weight": 1.0},
                                     {"feature": "hour", "typical": 9.0, "actual": 3, "weight": 0.5}])
            ]
        )  # fmt: skip

    r = runner.invoke(app, ["alerts", "-p", str(tmp_path / "p"), "--explain"])

    assert r.exit_code == 0, r.output
    assert "App/1" in r.output and "curl/8 [x]" in r.output and "typical" in r.output
