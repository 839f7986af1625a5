"""Observations from packets and flows, and the window features built on them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from misuse.errors import InvalidParameterError, SchemaError
from misuse.events import Event, events_to_frame
from misuse.fingerprint.features import ALL_GROUPS, feature_columns, window_features
from misuse.fingerprint.observe import (
    capture_observations,
    flow_observations,
    packet_observations,
    parse_device_keys,
)
from misuse.ingest.base import DeadLetter
from misuse.ingest.pcap_stream import iter_packet_arrays

from .conftest import CAM_MAC, arp, frame

CAM = "192.168.1.129"
DEVICES = {CAM: "cam-01", "f4:b8:5e:00:00:01": "cam-01"}


def test_packet_observations_take_the_device_side(write_pcap: Callable[[list[tuple[float, bytes]]], Path]) -> None:
    pcap = write_pcap(
        [
            (100.0, frame(CAM, "52.70.158.224", 50000, 443, size=100)),
            (100.5, frame("52.70.158.224", CAM, 443, 50000, size=1200)),
            (101.0, frame(CAM, "192.168.1.1", 40000, 53, udp=True, size=30)),
            (102.0, arp(CAM_MAC, CAM)),
            (103.0, frame("192.168.1.50", "8.8.8.8", 1234, 53, udp=True)),  # not the camera
        ]
    )

    obs = packet_observations(iter_packet_arrays(pcap), DEVICES)

    assert len(obs) == 4 and set(obs["device"]) == {"cam-01"}
    assert obs["outbound"].tolist() == [True, False, True, True]
    assert obs["port"].tolist() == [443, 443, 53, -1]
    assert obs["proto"].tolist() == [6, 6, 17, 0]
    assert obs["remote_local"].tolist() == [False, False, True, True]
    assert obs["remote_net"].iloc[0] == obs["remote_net"].iloc[1] != 0


def test_capture_observations_set_a_broken_record_aside(
    write_pcap: Callable[[list[tuple[float, bytes]]], Path],
) -> None:
    pcap = write_pcap([(100.0 + i, frame(CAM, "52.70.158.224", 50000, 443, size=100)) for i in range(3)])
    pcap.write_bytes(pcap.read_bytes()[:-20])  # the third record is cut short
    dead = DeadLetter()

    obs = capture_observations(pcap, DEVICES, dead=dead)

    assert len(obs) == 2
    assert dead.count == 1 and (dead.first() or "").startswith(f"{pcap} line 3: ")


def test_device_keys_must_be_addresses() -> None:
    v4, mac = parse_device_keys(DEVICES)

    assert list(v4.values()) == ["cam-01"] and list(mac.values()) == ["cam-01"]
    with pytest.raises(InvalidParameterError, match="neither an IPv4 nor a MAC"):
        parse_device_keys({"camera": "cam-01"})


def test_flow_observations_see_both_local_sides() -> None:
    def flow(src: str, dst: str, dport: int, uid: str) -> Event:
        return Event(ts=0.0, entity=src, peer=dst, kind="flow", action="tcp", event_id=uid,
                     num={"src_port": 51000.0, "dst_port": float(dport), "orig_bytes": 10.0, "resp_bytes": 90.0},
                     cat={"proto": "tcp"})  # fmt: skip

    frame_ = events_to_frame([flow("192.168.1.5", "1.1.1.1", 443, "a"), flow("192.168.1.5", "192.168.1.6", 1883, "b")])

    named = flow_observations(frame_, {"192.168.1.6": "hub"})
    every_local = flow_observations(frame_)

    assert named[["device", "outbound", "port", "bytes"]].values.tolist() == [["hub", False, 1883, 100.0]]
    assert sorted(every_local["device"]) == ["192.168.1.5", "192.168.1.5", "192.168.1.6"]
    with pytest.raises(SchemaError, match="peer"):
        flow_observations(pd.DataFrame({"ts": [0.0], "entity": ["x"]}))


def _obs(n: int, port: int, proto: int, t0: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "device": ["d"] * n,
            "ts": t0 + np.arange(n, dtype=float),
            "outbound": [True, False] * (n // 2) + [True] * (n % 2),
            "remote_net": [12345] * n,
            "remote_local": [False] * n,
            "port": [port] * n,
            "proto": [proto] * n,
            "bytes": np.linspace(60, 1500, n),
            "units": [1.0] * n,
            "event_id": [f"p{i}" for i in range(n)],
        }
    )


def test_window_features_shares_and_bounds() -> None:
    obs = pd.concat([_obs(30, 8883, 6), _obs(10, 53, 17), _obs(3, 123, 17, t0=7200.0)], ignore_index=True)

    f = window_features(obs, 3600.0, min_units=5, groups=ALL_GROUPS)

    assert len(f) == 1  # the 3-packet window is too small
    row = f.iloc[0]
    assert row["units"] == 40
    assert row["f.port.mqtts"] == pytest.approx(0.75) and row["f.port.dns"] == pytest.approx(0.25)
    proto = [row[c] for c in feature_columns(f) if c.startswith("f.proto.") and c != "f.proto.outbound"]
    assert sum(proto) == pytest.approx(1.0)
    assert row["ports"] == frozenset({53, 8883})
    assert row["evidence"][0] == "p0"
    assert sum(row[c] for c in f.columns if c.startswith("f.peer.h")) == pytest.approx(1.0)


def test_window_features_groups_and_parameters() -> None:
    obs = _obs(20, 443, 6)

    default = window_features(obs, 600.0)

    assert not any(c.startswith("f.peer.h") for c in default.columns)
    assert window_features(obs.iloc[0:0], 600.0).empty
    with pytest.raises(InvalidParameterError, match="groups"):
        window_features(obs, 600.0, groups=["colour"])
    with pytest.raises(InvalidParameterError, match="window"):
        window_features(obs, 0.0)


def test_dns_names_reach_the_device_that_asked(write_pcap: Callable[[list[tuple[float, bytes]]], Path]) -> None:
    from misuse.fingerprint.observe import capture_observations

    pcap = write_pcap([(100.0 + i, _dns_frame(name)) for i, name in enumerate(["a.cloud.example.com"] * 3)])
    obs = capture_observations(pcap, DEVICES)

    assert obs["dns_name"].tolist() == ["a.cloud.example.com"] * 3
    f = window_features(obs, 3600.0, min_units=1, groups=(*ALL_GROUPS,))
    buckets = [c for c in f.columns if c.startswith("f.dns.h")]
    assert len(buckets) == 16 and sorted(f[buckets].iloc[0].tolist())[-1] == 1.0  # one domain, one bucket
    assert f["f.dns.log_queries"].iloc[0] == pytest.approx(np.log1p(3))
    # without names (flows, or packets read without the second pass) the group is all zeros
    plain = window_features(obs.drop(columns="dns_name"), 3600.0, min_units=1, groups=("dns",))
    assert plain[[c for c in plain.columns if c.startswith("f.dns.")]].to_numpy().sum() == 0.0
    assert "f.dns.log_queries" not in window_features(obs, 3600.0, min_units=1).columns  # opt-in


def _dns_frame(name: str) -> bytes:
    import dpkt

    udp = dpkt.udp.UDP(sport=40000, dport=53, data=bytes(dpkt.dns.DNS(id=1, qd=[dpkt.dns.DNS.Q(name=name)])))
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=bytes([192, 168, 1, 129]), dst=bytes([192, 168, 1, 1]), p=17, ttl=64, data=udp)
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(src=CAM_MAC, dst=b"\x00" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def test_registered_domain_and_stable_buckets() -> None:
    from misuse.fingerprint.features import name_bucket, registered_domain

    assert registered_domain("A1.iot.us-west-2.AmazonAWS.com.") == "amazonaws.com"
    assert registered_domain("localhost") == "localhost"
    b = name_bucket(np.array(["amazonaws.com", "immedia-semi.com", "amazonaws.com"]), 16)
    assert b[0] == b[2] and b.min() >= 0 and b.max() < 16
    assert name_bucket(np.array(["amazonaws.com"]), 16)[0] == 13  # FNV-1a: the same on every run and machine
