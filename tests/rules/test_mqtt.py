"""MQTT fields from payload bytes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from misuse.rules.mqtt import COLUMNS, decode_mqtt, mqtt_fields


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
        assert out is not None and set(out) == set(COLUMNS)
        assert out["num.mqtt_malformed"] in (0.0, 1.0)
        assert all(isinstance(v, float) for v in out.values())


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
