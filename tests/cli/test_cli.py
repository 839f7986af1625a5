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


def _store_mixed_alerts(project: Path) -> None:
    """Rule alerts of the built-in pack and detector alerts, on two entities."""
    from datetime import UTC, datetime, timedelta

    from misuse.alerts.model import Alert
    from misuse.store.duck import Store

    t = datetime(2026, 3, 5, 10, tzinfo=UTC)
    brute = "rule:0ce561bb-7fca-47aa-a7eb-c852dc5e265a"  # SSH/telnet brute force from one source, confidence 0.85
    rows = [
        Alert("1.2.3.4", t + timedelta(minutes=m), t + timedelta(minutes=m + 1), 10.0, 10.0, "medium", "brute_force",
              brute, "SSH/telnet brute force from one source: count() = 10 within 300s (peer=1.2.3.4)")
        for m in (0, 6, 12)
    ] + [
        Alert("1.2.3.4", t + timedelta(minutes=20), t + timedelta(minutes=25), 0.8, 0.4, "high", "brute_force",
              "iforest", "unusual window"),
        Alert("cam", t, t + timedelta(minutes=5), 2.0, 1.0, "low", "anomaly", "rule:retired-rule",
              "Retired rule: 2 matching event(s) for cam"),
    ]  # fmt: skip
    with Store(project) as store:
        store.add_alerts(rows)


def test_alerts_incidents_group_rule_and_detector_alerts_by_entity_and_cause(tmp_path: Path) -> None:
    _store_mixed_alerts(tmp_path / "p")

    text = runner.invoke(app, ["alerts", "-p", str(tmp_path / "p"), "--incidents"])
    as_json = runner.invoke(app, ["alerts", "-p", str(tmp_path / "p"), "--incidents", "--json"])

    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert lines[0] == "2 incident(s) from 5 alert(s)"
    assert lines[1].startswith("- [high] brute_force on 1.2.3.4: 4 alert(s) between 2026-03-05T10:00:00+00:00")
    assert lines[1].endswith("(25m 00s); top: SSH/telnet brute force from one source x3, iforest x1")
    assert "Retired rule x1" in lines[2] and "rule:" not in text.output
    incidents = json.loads(as_json.output)["incidents"]
    assert [(i["entity"], i["alerts"], i["seconds"]) for i in incidents] == [("1.2.3.4", 4, 1500.0), ("cam", 1, 300.0)]
    assert incidents[0]["contributions"][0]["name"] == "SSH/telnet brute force from one source"


def test_alerts_risk_fuses_rule_and_detector_alerts_with_named_contributions(tmp_path: Path) -> None:
    import math

    _store_mixed_alerts(tmp_path / "p")
    rules = tmp_path / "mine.yml"
    rules.write_text(
        "title: Retired rule\nid: retired-rule\nconfidence: 0.3\nmisuse_type: anomaly\n"
        "detection: {s: {kind: x}, condition: s}\n"
    )

    r = runner.invoke(app, ["alerts", "-p", str(tmp_path / "p"), "--risk", "--json"])
    mine = runner.invoke(app, ["alerts", "-p", str(tmp_path / "p"), "--risk", "--json", "--rules", str(rules)])
    text = runner.invoke(app, ["alerts", "-p", str(tmp_path / "p"), "--risk", "--entity", "1.2.3.4"])

    assert r.exit_code == 0, r.output
    risks = {x["entity"]: x for x in json.loads(r.output)["risks"]}
    p_iforest = 1 / (1 + math.exp(-1.0))  # score twice the threshold
    assert risks["1.2.3.4"]["risk"] == pytest.approx(1 - (1 - 0.85) * (1 - p_iforest))
    assert [c["feature"] for c in risks["1.2.3.4"]["contributions"]] == [
        "SSH/telnet brute force from one source",
        "iforest",
    ]
    assert risks["cam"]["contributions"][0]["feature"] == "Retired rule"  # not loaded: named by its summary
    assert risks["cam"]["risk"] == pytest.approx(0.5)
    with_mine = {x["entity"]: x for x in json.loads(mine.output)["risks"]}
    assert with_mine["cam"]["risk"] == pytest.approx(0.3)  # --rules gives the rule's confidence
    assert text.output.splitlines()[0] == "1 entity risk(s) over 3600 s windows from 4 alert(s)"
    assert "SSH/telnet brute force from one source 0.85, iforest 0.73" in text.output
    assert "rule:" not in text.output


def test_alerts_risk_window_must_be_positive(tmp_path: Path) -> None:
    _store_mixed_alerts(tmp_path / "p")

    r = runner.invoke(app, ["alerts", "-p", str(tmp_path / "p"), "--risk", "--window", "0"])

    assert r.exit_code == EXIT_INPUT
    assert "'window' parameter of fuse must be > 0" in r.output
