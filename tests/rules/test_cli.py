"""``misuse rules ...`` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from misuse.cli.rules import app

FIXTURES = Path(__file__).parent / "fixtures" / "sigma"


def test_validate_reports_file_line_field_and_exit_code(tmp_path: Path) -> None:
    # prepare
    bad = tmp_path / "bad.yml"
    bad.write_text("title: t\nid: x\ndetection:\n  sel: {a: 1}\n  condition: sel or other\n")
    runner = CliRunner()
    # execute
    ok = runner.invoke(app, ["validate", str(FIXTURES)])
    fail = runner.invoke(app, ["validate", str(bad)])
    # assert
    assert ok.exit_code == 0 and "5 rule(s) valid" in ok.output
    assert fail.exit_code == 3
    assert "line 5: field 'detection.condition': unknown selection 'other'" in fail.output.replace("\n", " ")


def test_export_and_list_json() -> None:
    # prepare
    runner = CliRunner()
    # execute
    exported = runner.invoke(app, ["export", "--rules", str(FIXTURES)])
    listed = runner.invoke(app, ["list", "--json"])
    # assert
    assert exported.exit_code == 0 and exported.output.count("title:") == 5
    rows = json.loads(listed.output)
    assert any(r["kind"] == "correlation" and "T1110.001" in r["attack"] for r in rows)


def test_run_prints_alerts_risks_and_incidents(tmp_path: Path, mk: Any) -> None:
    # prepare: an auth log with a brute force then a success
    lines = [
        f"Dec 10 07:00:{4 * i:02d} h sshd[1]: Failed password for root from 1.2.3.4 port 22 ssh2" for i in range(12)
    ]
    lines.append("Dec 10 07:30:00 h sshd[1]: Accepted password for root from 1.2.3.4 port 22 ssh2")
    log = tmp_path / "auth.log"
    log.write_text("\n".join(lines) + "\n")
    # execute
    res = CliRunner().invoke(app, ["run", str(log), "--json"])
    text = CliRunner().invoke(app, ["run", str(log)])
    # assert
    out = json.loads(res.output)
    assert res.exit_code == 0
    assert {a["misuse_type"] for a in out["alerts"]} == {"brute_force", "unauthorized_access"}
    assert out["risks"][0]["entity"] == "1.2.3.4" and out["risks"][0]["risk"] > 0.9
    assert len(out["incidents"]) == 2
    # contributions by rule title, never by rule id
    titles = {"SSH/telnet brute force from one source", "Successful login after brute force"}
    assert {c["feature"] for c in out["risks"][0]["contributions"]} == titles
    assert {c["name"] for i in out["incidents"] for c in i["contributions"]} == titles
    assert text.exit_code == 0 and "rule:" not in text.output
    assert "top: Successful login after brute force x1" in text.output.replace("\n", " ")
