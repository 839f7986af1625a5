"""``misuse access`` and ``misuse devices train|list|check`` end to end on self-made files."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from misuse.cli import app
from misuse.cli.devices import device_type

from ..fingerprint.conftest import LOCK_MAC, frame

runner = CliRunner()


def test_access_reports_brute_force_then_success(tmp_path: Path) -> None:
    lines = [
        f"Dec 10 07:0{i // 6}:{i % 6}0 srv sshd[1]: Failed password for root from 6.6.6.6 port 1 ssh2"
        for i in range(12)
    ]
    lines.append("Dec 10 07:05:00 srv sshd[2]: Accepted password for root from 6.6.6.6 port 2 ssh2")
    log = tmp_path / "auth.log"
    log.write_text("\n".join(lines) + "\n")

    result = runner.invoke(app, ["access", str(log), "--year", "2020", "--json"])

    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert [a["detector"] for a in found] == ["access.login.brute_force", "access.login.success_after_failures"]
    assert found[1]["misuse_type"] == "unauthorized_access"


def test_access_min_unusual_reaches_the_monitor(tmp_path: Path) -> None:
    days = [
        f"Dec {d:02d} 09:00:00 srv sshd[1]: Accepted password for alice from 10.0.0.5 port 1 ssh2" for d in range(1, 8)
    ]
    odd = "Dec 09 09:00:00 srv sshd[2]: Accepted password for alice from 203.0.113.9 port 2 ssh2"
    log = tmp_path / "auth.log"
    log.write_text("\n".join([*days, odd]) + "\n")

    default = runner.invoke(app, ["access", str(log), "--year", "2020", "--json"])
    single = runner.invoke(app, ["access", str(log), "--year", "2020", "--json", "--min-unusual", "1"])
    wrong = runner.invoke(app, ["access", str(log), "--min-unusual", "4"])

    assert default.exit_code == 0 and json.loads(default.stdout) == []
    found = json.loads(single.stdout)
    assert [a["detector"] for a in found] == ["access.login.unusual_login"] and found[0]["severity"] == "low"
    assert "new network" in found[0]["summary"]
    assert wrong.exit_code == 2


def test_access_rejects_a_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["access", str(tmp_path / "nope.log")])

    assert result.exit_code == 3
    assert "nope.log" in result.output


def _capture(tmp_path: Path, name: str, device: str, port: int, size: int, t0: float) -> Path:
    import dpkt

    p = tmp_path / name
    with open(p, "wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for i in range(400):
            out = i % 2 == 0
            buf = (
                frame(device, "52.1.2.3", 50000, port, size=size, smac=LOCK_MAC)
                if out
                else frame("52.1.2.3", device, port, 50000, size=size * 2)
            )
            w.writepkt(buf, ts=t0 + i * 30.0)
    return p


def _cam_and_lock(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Captures of a camera (443, large packets) and a lock (8883, small ones) and their devices table."""
    cam = _capture(tmp_path, "cam.pcap", "192.168.1.10", 443, 900, 0.0)
    lock = _capture(tmp_path, "lock.pcap", "192.168.1.11", 8883, 40, 0.0)
    table = tmp_path / "devices.csv"
    table.write_text("device,address\ncam-01,192.168.1.10\nlock-01,192.168.1.11\n")
    return cam, lock, table


def test_devices_train_list_check(tmp_path: Path) -> None:
    cam, lock, table = _cam_and_lock(tmp_path)
    model = tmp_path / "m" / "fp"

    trained = runner.invoke(
        app,
        ["devices", "train", str(cam), str(lock), "--devices", str(table), "--model", str(model), "--window", "600"],
    )
    listed = runner.invoke(
        app, ["devices", "list", str(cam), str(lock), "--model", str(model), "--window", "600", "--json"]
    )
    swapped = tmp_path / "swapped.csv"
    swapped.write_text("device,address,type\ncam-01,192.168.1.11,cam\n")
    checked = runner.invoke(
        app,
        ["devices", "check", str(lock), "--devices", str(swapped), "--model", str(model), "--window", "600", "--json"],
    )

    assert trained.exit_code == 0, trained.output
    assert listed.exit_code == 0, listed.output
    ident = {r["device"]: r["type"] for r in json.loads(listed.stdout)}
    assert ident == {"192.168.1.10": "cam", "192.168.1.11": "lock"}
    assert checked.exit_code == 0, checked.output
    alerts = json.loads(checked.stdout)
    assert alerts and {a["misuse_type"] for a in alerts} == {"impersonation"}


def test_devices_train_with_dns_names_keeps_them_in_the_model(tmp_path: Path) -> None:
    cam, lock, table = _cam_and_lock(tmp_path)
    model = tmp_path / "fp"
    args = ["devices", "train", str(cam), str(lock), "--devices", str(table), "--model", str(model), "--window", "600"]

    trained = runner.invoke(app, [*args, "--dns-names"])
    listed = runner.invoke(app, ["devices", "list", str(cam), "--model", str(model), "--window", "600", "--json"])

    assert trained.exit_code == 0, trained.output
    assert "f.dns.log_queries" in json.loads(next(model.parent.glob(f"{model.name}*.json")).read_text())["features"]
    assert listed.exit_code == 0 and json.loads(listed.stdout)[0]["type"] == "cam"


def test_device_type_strips_the_number() -> None:
    assert device_type("blink-cam-01") == "blink-cam"
    assert device_type("hue") == "hue"


def test_devices_list_with_an_empty_model_file_is_one_line_and_exit_3(tmp_path: Path) -> None:
    cam = _capture(tmp_path, "cam.pcap", "192.168.1.10", 443, 900, 0.0)
    (tmp_path / "fp.json").write_text(
        '{"format": "misuse.fingerprint.knn/1", "params": {}, "classes": [], "features": []}'
    )
    (tmp_path / "fp.npz").write_bytes(b"")

    result = runner.invoke(app, ["devices", "list", str(cam), "--model", str(tmp_path / "fp")])

    assert result.exit_code == 3
    assert result.output.strip().splitlines() == [
        f"error: {tmp_path / 'fp.npz'}: cannot read device classifier: the file is empty"
    ]


def _cowrie_with_a_broken_line(tmp_path: Path) -> Path:
    base = {"session": "s1", "src_ip": "6.6.6.6", "sensor": "h"}
    rows = [
        json.dumps(base | {"eventid": "cowrie.login.failed", "timestamp": f"2018-05-06T17:44:{i:02d}Z",
                           "username": "root", "password": str(i)})
        for i in range(12)
    ]  # fmt: skip
    rows.insert(3, '{"eventid": "cowrie.login.failed", "timestamp": ')  # cut off mid-record
    p = tmp_path / "cowrie.json"
    p.write_text("\n".join(rows) + "\n")
    return p


def test_access_reports_bad_records_like_ingest(tmp_path: Path) -> None:
    log = _cowrie_with_a_broken_line(tmp_path)
    project = tmp_path / "p"

    table = runner.invoke(app, ["access", str(log), "-p", str(project)])
    as_json = runner.invoke(app, ["access", str(log), "-p", str(project), "--json"])

    dead_file = project / "deadletter" / "access.jsonl"
    assert table.exit_code == 0, table.output
    assert "1 alert(s)" in table.stdout  # the 12 good failures still make a brute force
    assert f"1 bad record(s) set aside in {dead_file}; first: {log} line 4: not valid JSON" in table.stdout
    assert as_json.exit_code == 0
    assert [a["detector"] for a in json.loads(as_json.stdout)] == ["access.login.brute_force"]
    assert "1 bad record(s) set aside" in as_json.stderr
    assert len(dead_file.read_text().splitlines()) == 1  # each run replaces the previous run's file


def test_devices_list_and_check_report_a_corrupt_capture(tmp_path: Path) -> None:
    cam, lock, table = _cam_and_lock(tmp_path)
    model = tmp_path / "fp"
    project = tmp_path / "p"
    runner.invoke(app, ["devices", "train", str(cam), str(lock), "--devices", str(table), "-m", str(model)])
    corrupt = tmp_path / "corrupt.pcap"
    corrupt.write_bytes(cam.read_bytes()[:24] + b"\xff" * 40)  # a pcap header, then no readable record

    listed = runner.invoke(app, ["devices", "list", str(corrupt), "-m", str(model), "-p", str(project)])
    listed_json = runner.invoke(app, ["devices", "list", str(corrupt), "-m", str(model), "-p", str(project), "--json"])
    checked = runner.invoke(
        app, ["devices", "check", str(corrupt), "-m", str(model), "--devices", str(table), "-p", str(project)]
    )

    assert listed.exit_code == 0, listed.output
    assert "1 bad record(s) set aside in" in listed.stdout and f"{corrupt} line 1: byte 24" in listed.stdout
    assert json.loads(listed_json.stdout) == [] and "1 bad record(s) set aside" in listed_json.stderr
    assert checked.exit_code == 0, checked.output
    assert f"set aside in {project / 'deadletter' / 'devices-check.jsonl'}" in checked.stdout
