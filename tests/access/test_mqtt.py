"""MQTT CONNECT/CONNACK pairs from captures as login attempts."""

from __future__ import annotations

import gzip
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from misuse.access.monitor import LoginMonitor
from misuse.access.mqtt import mqtt_logins, parse_connect
from misuse.errors import ParseError
from misuse.ingest.base import DeadLetter

BROKER = "10.0.0.1"


def _s(text: bytes) -> bytes:
    return len(text).to_bytes(2, "big") + text


def connect(client: bytes, user: bytes | None, password: bytes | None, level: int = 4) -> bytes:
    flags = 0x02 | (0x80 if user is not None else 0) | (0x40 if password is not None else 0)
    body = _s(b"MQTT") + bytes([level, flags, 0, 60]) + (b"\x00" if level == 5 else b"") + _s(client)
    body += (_s(user) if user is not None else b"") + (_s(password) if password is not None else b"")
    return bytes([0x10, len(body)]) + body


def connack(rc: int) -> bytes:
    return bytes([0x20, 2, 0, rc])


def _frame(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, data=payload)
    ip = dpkt.ip.IP(src=bytes(map(int, src.split("."))), dst=bytes(map(int, dst.split("."))), p=6, data=tcp)
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def write(tmp_path: Path, exchanges: list[tuple[str, int, bytes, int | None]]) -> Path:
    """(client address, client port, CONNECT bytes, CONNACK code or None) -> a pcap."""
    p = tmp_path / "mqtt.pcap"
    with open(p, "wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for i, (ip, port, conn, rc) in enumerate(exchanges):
            w.writepkt(_frame(ip, port, BROKER, 1883, conn), ts=100.0 + i)
            if rc is not None:
                w.writepkt(_frame(BROKER, 1883, ip, port, connack(rc)), ts=100.2 + i)
    return p


def test_connects_with_answers_become_attempts_without_passwords(tmp_path: Path) -> None:
    pcap = write(
        tmp_path,
        [
            ("192.168.1.90", 40000, connect(b"bot", b"admin", b"123456"), 5),
            ("192.168.1.90", 40001, connect(b"bot", b"admin", b"letmein"), 0),
            ("192.168.1.20", 40002, connect(b"sensor-7", None, None, level=5), 0),
            ("192.168.1.21", 40003, connect(b"lost", b"x", b"y"), None),  # never answered
        ],
    )

    att = mqtt_logins(pcap)

    assert att["account"].tolist() == ["admin", "admin", "(anonymous)"]
    assert att["success"].tolist() == [False, True, True]
    assert att["client"].tolist() == ["bot", "bot", "sensor-7"]
    assert "123456" not in set(att["password"]) and att["password"].iloc[0] != att["password"].iloc[1]
    assert att["event_id"].tolist() == ["mqtt.pcap:1", "mqtt.pcap:3", "mqtt.pcap:5"]


def test_mqtt_password_guessing_is_brute_force_then_success(tmp_path: Path) -> None:
    tries = [("192.168.1.90", 40000 + i, connect(b"", b"user", str(i).encode()), 5) for i in range(12)]
    pcap = write(tmp_path, [*tries, ("192.168.1.90", 41000, connect(b"", b"user", b"right"), 0)])

    alerts = LoginMonitor().process_many(mqtt_logins(pcap))

    assert [a.detector.rsplit(".", 1)[-1] for a in alerts] == ["brute_force", "success_after_failures"]


def test_a_broken_record_is_set_aside_and_compressed_captures_are_read(tmp_path: Path) -> None:
    exchanges = [("192.168.1.90", 40000 + i, connect(b"bot", b"admin", str(i).encode()), 5) for i in range(3)]
    pcap = write(tmp_path, exchanges)
    whole = pcap.read_bytes()
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(whole[:-10])  # the last CONNACK is cut short
    packed = tmp_path / "mqtt.pcap.gz"
    packed.write_bytes(gzip.compress(whole))
    dead = DeadLetter()

    att = mqtt_logins(broken, dead=dead)

    assert len(att) == 2  # the CONNECT whose answer is cut off is not judged
    assert dead.count == 1 and "truncated record" in (dead.first() or "")
    assert str(broken) in (dead.first() or "")
    assert mqtt_logins(packed)["event_id"].tolist() == ["mqtt.pcap.gz:1", "mqtt.pcap.gz:3", "mqtt.pcap.gz:5"]


def test_not_a_capture_is_a_parse_error(tmp_path: Path) -> None:
    p = tmp_path / "x.pcap"
    p.write_bytes(b"hello world, not a capture")

    with pytest.raises(ParseError, match=r"x\.pcap"):
        mqtt_logins(p)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_parse_connect_takes_any_bytes(body: bytes) -> None:
    out = parse_connect(body)

    assert out is None or set(out) == {"client_id", "user", "password_hash", "level"}


@pytest.mark.realdata
def test_mqttset_brute_force_capture_is_flagged(shared_data: Path) -> None:
    att = mqtt_logins(shared_data / "mqttset/bruteforce/bruteforce-test.pcapng")

    alerts = LoginMonitor().process_many(att)

    assert len(att) > 10 and not att["success"].all()
    attacker = att.loc[~att["success"], "source"].value_counts().idxmax()
    assert attacker in {a.entity for a in alerts if a.misuse_type == "brute_force"}
