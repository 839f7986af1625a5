"""``misuse integrity check`` and ``misuse exfil check`` on self-made events-jsonl files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from misuse.cli.exfil import exfil_app
from misuse.cli.integrity import integrity_app
from misuse.exfil.simulate import dns_queries
from misuse.store.duck import Store

runner = CliRunner()


def write_jsonl(frame: pd.DataFrame, path: Path) -> Path:
    rows = []
    for rec in frame.to_dict(orient="records"):
        rec["ts"] = pd.Timestamp(rec["ts"]).isoformat()
        rows.append(json.dumps({k: v for k, v in rec.items() if not (isinstance(v, float) and np.isnan(v))}))
    path.write_text("\n".join(rows) + "\n")
    return path


def telemetry(n: int, start: int = 0) -> pd.DataFrame:
    i = np.arange(start, start + n)
    return pd.DataFrame(
        {
            "ts": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(i * 30, unit="s"),
            "entity": "room-1",
            "event_id": [f"r{x}" for x in i],
            "kind": "telemetry",
            "label": "benign",
            "num.temp": np.round(21 + 2 * np.sin(i / 200), 3),
        }
    )


def test_integrity_check_flags_an_impossible_value(tmp_path: Path) -> None:
    train = write_jsonl(telemetry(3000), tmp_path / "train.jsonl")
    test_frame = telemetry(500, start=3000)
    test_frame.loc[250, "num.temp"] = 900.0
    test = write_jsonl(test_frame, tmp_path / "test.jsonl")

    out = runner.invoke(
        integrity_app, [str(test), "--train", str(train), "--json", "--store-alerts", str(tmp_path / "p")]
    )

    body = json.loads(out.stdout)
    assert out.exit_code == 0, out.output
    assert body["readings"] == 500 and body["flagged"] >= 1
    assert "integrity.range" in {a["detector"] for a in body["alerts"]}
    with Store(tmp_path / "p", create=False) as store:
        assert len(store.alerts()) == len(body["alerts"])


def test_exfil_check_finds_a_dns_tunnel(tmp_path: Path) -> None:
    day = pd.Timestamp("2026-03-04", tz="UTC")
    train = write_jsonl(dns_queries("cam", day - pd.Timedelta("2D"), 48, seed=1), tmp_path / "train.jsonl")
    tunnel = dns_queries("cam", day, 2, tunnel_domain="t.evil.example", tunnel_per_hour=100, seed=2)
    test = write_jsonl(tunnel, tmp_path / "test.jsonl")

    out = runner.invoke(exfil_app, [str(test), "--train", str(train), "--json"])
    missing = runner.invoke(exfil_app, [str(test)])

    assert out.exit_code == 0, out.output
    assert {a["detector"] for a in json.loads(out.stdout)["alerts"]} == {"exfil.dns"}
    assert missing.exit_code == 2


def conn_log(path: Path, rows: int, start: float, garbage: int = 0) -> Path:
    """A Zeek conn.log of one device's small uploads, with ``garbage`` broken lines in the middle."""
    head = "#separator \\x09\n#fields\tts\tuid\tid.orig_h\tid.resp_h\tproto\torig_bytes\n"
    head += "#types\ttime\tstring\taddr\taddr\tenum\tcount\n"
    lines = [f"{start + 60 * i:.6f}\tC{i}\t192.168.1.5\t203.0.113.7\ttcp\t{500 + i % 7}" for i in range(rows)]
    lines[rows // 2 : rows // 2] = [f"garbage line {j}" for j in range(garbage)]
    path.write_text(head + "\n".join(lines) + "\n")
    return path


def test_checks_report_bad_records_and_set_them_aside(tmp_path: Path) -> None:
    train = conn_log(tmp_path / "train.log", 200, 1.7e9)
    test = conn_log(tmp_path / "conn.log", 100, 1.7e9 + 200 * 60, garbage=50)
    project = tmp_path / "p"
    readings = write_jsonl(telemetry(300), tmp_path / "readings.jsonl")
    readings.write_text(readings.read_text() + "{not json\n")

    table = runner.invoke(exfil_app, [str(test), "--train", str(train), "--project", str(project)])
    body = json.loads(runner.invoke(exfil_app, [str(test), "--train", str(train), "-p", str(project), "--json"]).stdout)
    integrity = runner.invoke(integrity_app, [str(readings), "--train", str(readings), "-p", str(project), "--json"])

    assert table.exit_code == 0, table.output
    assert "50 bad record(s) set aside" in table.stdout and "conn.log line 54" in table.stdout
    assert body["bad_records"] == 50 and body["first_bad"].startswith(f"{test} line 54: ")
    dead = [json.loads(x) for x in (project / "deadletter" / "exfil-check.jsonl").read_text().splitlines()]
    assert len(dead) == 50 and dead[0]["raw"] == "garbage line 0"  # one run's records, not two runs'
    checked = json.loads(integrity.stdout)
    assert checked["bad_records"] == 2 and checked["dead_letter_file"] == str(
        project / "deadletter" / "integrity-check.jsonl"
    )
