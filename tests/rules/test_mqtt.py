"""MQTT fields from payload bytes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from misuse.rules.mqtt import COLUMNS, TEXT_COLUMNS, annotate_mqtt, decode_mqtt, mqtt_fields


def test_connect_and_connack_fields() -> None:
    # prepare
    connect = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 0xC2, 0xFF, 0xFF, 0, 0])
    connack = bytes([0x20, 2, 0, 5])
    # execute
    c, a = decode_mqtt(connect), decode_mqtt(connack)
    # assert
    assert c is not None and a is not None
    assert (c["num.mqtt_type"], c["num.mqtt_keepalive"], c["num.mqtt_connect_flags"], c["num.mqtt_malformed"]) == (
        1.0,
        65535.0,
        0xC2,
        0.0,
    )
    assert (a["num.mqtt_type"], a["num.mqtt_rc"]) == (2.0, 5.0)


def test_malformed_connects() -> None:
    # prepare: unknown protocol name, reserved flag set, bad fixed-header flags, truncated length
    bad = [
        bytes([0x10, 12, 0, 4]) + b"MQTX" + bytes([4, 2, 0, 60, 0, 0]),
        bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 3, 0, 60, 0, 0]),
        bytes([0x13, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 0]),
        bytes([0x30, 0xFF]),
    ]
    # execute
    flags = [decode_mqtt(b) for b in bad]
    # assert
    assert all(f is not None and f["num.mqtt_malformed"] == 1.0 for f in flags)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_any_payload_decodes_or_is_empty(payload: bytes) -> None:
    # prepare / execute
    out = decode_mqtt(payload)
    # assert
    if not payload:
        assert out is None
    else:
        assert out is not None and set(out) == {*COLUMNS, *TEXT_COLUMNS}
        assert out["num.mqtt_malformed"] in (0.0, 1.0)
        assert all(isinstance(out[c], float) for c in COLUMNS)
        assert all(out[c] is None or isinstance(out[c], str) for c in TEXT_COLUMNS)


def test_fields_are_keyed_like_the_pcap_reader(mk: Any, tmp_path: Path) -> None:
    # prepare: a non-MQTT packet then a CONNACK
    pkts = [
        (0.0, mk.tcp_packet("10.0.0.1", "10.0.0.2", 5000, 80, 0x18, payload=b"GET /")),
        (1.0, mk.tcp_packet("10.0.0.2", "10.0.0.1", 1883, 5001, 0x18, payload=bytes([0x20, 2, 0, 0]))),
    ]
    path = mk.write_pcap(tmp_path / "m.pcap", pkts)
    # execute
    fields = mqtt_fields(path)
    # assert
    assert fields["event_id"].tolist() == ["m.pcap:2"]
    assert fields["num.mqtt_rc"].tolist() == [0.0] and math.isnan(fields["num.mqtt_keepalive"].iloc[0])


def _connect(client_id: bytes, user: bytes | None = None, level: int = 4, will: bool = False) -> bytes:
    flags = 0x02 | (0x80 | 0x40 if user is not None else 0) | (0x04 if will else 0)
    var = b"\x00\x04MQTT" + bytes([level, flags, 0, 60]) + (b"\x03\x21\x00\x0a" if level == 5 else b"")
    body = len(client_id).to_bytes(2, "big") + client_id
    if will:
        body += (b"\x00" if level == 5 else b"") + b"\x00\x03a/b" + b"\x00\x02hi"
    if user is not None:
        body += len(user).to_bytes(2, "big") + user + b"\x00\x03pwd"
    return bytes([0x10, len(var + body)]) + var + body


@pytest.mark.parametrize(
    ("packet", "client_id", "user"),
    [
        (_connect(b"cam-7", b"admin"), "cam-7", "admin"),
        (_connect(b"", b"root"), "", "root"),
        (_connect(b"sensor"), "sensor", None),
        (_connect(b"v5", b"guest", level=5), "v5", "guest"),
        (_connect(b"w", b"op", will=True), "w", "op"),
        (_connect(b"w5", b"op5", level=5, will=True), "w5", "op5"),
        (_connect(b"cut", b"admin")[:-9], "cut", None),  # user name cut off by the segment end
    ],
)
def test_connect_client_id_and_user_name(packet: bytes, client_id: str, user: str | None) -> None:
    # prepare / execute
    out = decode_mqtt(packet)
    # assert: the names are read for 3.1.1 and 5, with and without a will; a cut payload is not malformed
    assert out is not None and out["num.mqtt_malformed"] == 0.0
    assert (out["cat.mqtt_client_id"], out["cat.mqtt_username"]) == (client_id, user)


def test_a_connack_carries_the_names_of_the_connect_it_answers(mk: Any, tmp_path: Path) -> None:
    # prepare: two clients connect at once; the broker refuses one and accepts the other
    broker = "192.168.1.7"
    pkts = [
        (0.0, mk.tcp_packet("10.0.0.5", broker, 40001, 1883, 0x18, payload=_connect(b"a", b"alice"))),
        (0.1, mk.tcp_packet("10.0.0.6", broker, 40002, 1883, 0x18, payload=_connect(b"b", b"bob"))),
        (0.2, mk.tcp_packet(broker, "10.0.0.6", 1883, 40002, 0x18, payload=bytes([0x20, 2, 0, 0]))),
        (0.3, mk.tcp_packet(broker, "10.0.0.5", 1883, 40001, 0x18, payload=bytes([0x20, 2, 0, 5]))),
        (0.4, mk.tcp_packet(broker, "10.0.0.5", 1883, 40009, 0x18, payload=bytes([0x20, 2, 0, 5]))),  # no CONNECT
    ]
    path = mk.write_pcap(tmp_path / "c.pcap", pkts)
    # execute
    from misuse.ingest.pcap import PcapReader

    frame = annotate_mqtt(PcapReader().read(path), path)
    # assert
    acks = frame[frame["num.mqtt_type"] == 2.0]
    assert acks["cat.mqtt_username"].tolist() == ["bob", "alice", None]
    assert acks["cat.mqtt_client_id"].tolist() == ["b", "a", None]
    assert acks["num.mqtt_rc"].tolist() == [0.0, 5.0, 5.0]
