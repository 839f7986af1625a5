"""``misuse rules``: rule and event files that cannot be read give one line naming the file (exit 3)."""

from __future__ import annotations

import json
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


def _cowrie_failures(path: Path, n: int, broken_at: int | None = None) -> Path:
    """A Cowrie JSON log of ``n`` failed logins from one address; line ``broken_at`` is not JSON."""
    lines = [
        json.dumps(
            {
                "eventid": "cowrie.login.failed",
                "username": "root",
                "password": f"pw{i}",
                "src_ip": "203.0.113.5",
                "session": f"s{i}",
                "timestamp": f"2018-05-06T17:44:{i:02d}.000000Z",
                "message": f"login attempt [root/pw{i}] failed",
                "sensor": "hp1",
            }
        )
        for i in range(n)
    ]
    if broken_at is not None:
        lines.insert(broken_at - 1, '{"eventid": "cowrie.login.failed", broken')
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rules_run_reports_bad_records_as_ingest_does(tmp_path: Path) -> None:
    log = _cowrie_failures(tmp_path / "cowrie.json", 12, broken_at=5)
    kept = tmp_path / "bad.jsonl"

    text = runner.invoke(app, ["rules", "run", str(log)])
    as_json = runner.invoke(app, ["rules", "run", str(log), "--json", "--dead-letter", str(kept)])
    ingest = runner.invoke(app, ["ingest", str(log), "-p", str(tmp_path / "p"), "--json"])

    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert lines[0].startswith("12 events, ")
    assert lines[1].startswith("1 bad record(s) skipped (--dead-letter FILE keeps them); first: ")
    got, expected = json.loads(as_json.output)["input"], json.loads(ingest.output)
    assert (got["rows"], got["bad_records"], got["first_bad"]) == (12, 1, expected["first_bad"])
    assert "cowrie.json line 5: not valid JSON" in got["first_bad"]
    assert [json.loads(x)["line"] for x in kept.read_text().splitlines()] == [5]


def test_rules_run_on_a_corrupt_pcap_says_so(tmp_path: Path) -> None:
    import struct

    capture = tmp_path / "corrupt.pcap"
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    capture.write_bytes(header + bytes(range(256)) * 4)

    r = runner.invoke(app, ["rules", "run", str(capture), "--json"])
    text = runner.invoke(app, ["rules", "run", str(capture)])

    assert r.exit_code == 0, r.output
    got = json.loads(r.output)["input"]
    assert got["rows"] == 0 and got["bad_records"] == 1
    assert got["first_bad"].endswith(
        "corrupt.pcap line 1: byte 24: corrupt record header (caplen 185207048 > 262144); "
        "the rest of the file cannot be resynchronised and is skipped"
    )
    assert "1 bad record(s) skipped" in text.output and "corrupt.pcap line 1" in text.output


def test_rules_run_reads_a_folder_like_ingest_and_lists_what_it_skips(tmp_path: Path) -> None:
    folder = tmp_path / "honeypot"
    folder.mkdir()
    _cowrie_failures(folder / "cowrie.json", 12)
    (folder / "README.md").write_text("# notes\n")

    r = runner.invoke(app, ["rules", "run", str(folder)])

    assert r.exit_code == 0, r.output
    assert r.output.startswith("12 events, 1 alert(s), 1 incident(s)")
    assert f"skipped {folder / 'README.md'}: a .md file, not data" in r.output
    assert "SSH/telnet brute force from one source x1" in r.output


GROUP_BY_SENSOR = """title: failed
id: f
name: failed
logsource: {product: linux, service: auth}
detection: {sel: {action: login.failed}, condition: sel}
---
title: failures per sensor
id: c
correlation:
  type: event_count
  rules: [failed]
  group-by: [FIELD]
  timespan: 10m
  condition: {gte: 3}
"""


def test_rules_run_stops_on_a_group_by_field_the_events_lack(tmp_path: Path) -> None:
    log = _cowrie_failures(tmp_path / "cowrie.json", 12)
    rules = tmp_path / "sensor.yml"
    rules.write_text(GROUP_BY_SENSOR.replace("FIELD", "honeypot_zone"))

    r = runner.invoke(app, ["rules", "run", str(log), "--rules", str(rules)])

    assert r.exit_code == EXIT_INPUT
    line = _one_line_error(r.output)
    assert f"{rules} line 12: field 'correlation.group-by': group-by field 'honeypot_zone'" in line


def test_rules_run_counts_hits_without_a_group_by_value(tmp_path: Path) -> None:
    log = _cowrie_failures(tmp_path / "cowrie.json", 12)
    records = [json.loads(x) for x in log.read_text().splitlines()]
    for rec in records[:4]:
        del rec["sensor"]
    log.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    rules = tmp_path / "sensor.yml"
    rules.write_text(GROUP_BY_SENSOR.replace("FIELD", "sensor"))

    text = runner.invoke(app, ["rules", "run", str(log), "--rules", str(rules)])
    as_json = runner.invoke(app, ["rules", "run", str(log), "--rules", str(rules), "--json"])

    assert text.exit_code == 0, text.output
    assert "4 hit(s) of 'failures per sensor' not correlated: no value for group-by field 'sensor'" in text.output
    out = json.loads(as_json.output)
    assert out["ungrouped"] == {"failures per sensor": {"hits": 4, "reason": "no value for group-by field 'sensor'"}}
    assert [a["entity"] for a in out["alerts"]] == ["hp1", "hp1"]  # 8 hits with a sensor: two groups of 3
