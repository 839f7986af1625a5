"""Tiny self-made captures and fingerprint windows for the fingerprint tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dpkt
import numpy as np
import pandas as pd
import pytest

CAM_MAC = bytes.fromhex("f4b85e000001")
LOCK_MAC = bytes.fromhex("246f28000002")
GW_MAC = bytes.fromhex("001122334455")


def _ip(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def frame(
    src: str, dst: str, sport: int, dport: int, *, udp: bool = False, size: int = 0, smac: bytes = CAM_MAC
) -> bytes:
    """One Ethernet/IPv4/TCP-or-UDP frame with ``size`` payload bytes."""
    l4: dpkt.Packet
    if udp:
        l4 = dpkt.udp.UDP(sport=sport, dport=dport, data=b"x" * size)
        l4.ulen = len(l4)
    else:
        l4 = dpkt.tcp.TCP(sport=sport, dport=dport, flags=dpkt.tcp.TH_ACK, data=b"x" * size)
    ip = dpkt.ip.IP(src=_ip(src), dst=_ip(dst), p=17 if udp else 6, ttl=64, data=l4)
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(src=smac, dst=GW_MAC, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def arp(smac: bytes, sip: str) -> bytes:
    a = dpkt.arp.ARP(sha=smac, spa=_ip(sip), tha=b"\0" * 6, tpa=_ip("192.168.1.1"), op=dpkt.arp.ARP_OP_REQUEST)
    return bytes(dpkt.ethernet.Ethernet(src=smac, dst=b"\xff" * 6, type=dpkt.ethernet.ETH_TYPE_ARP, data=a))


@pytest.fixture
def write_pcap(tmp_path: Path) -> Callable[[list[tuple[float, bytes]]], Path]:
    """Write (ts, frame) pairs into a classic pcap and return its path."""

    def write(packets: list[tuple[float, bytes]]) -> Path:
        p = tmp_path / "tiny.pcap"
        with open(p, "wb") as fh:
            w = dpkt.pcap.Writer(fh)
            for ts, buf in packets:
                w.writepkt(buf, ts=ts)
        return p

    return write


def synthetic_windows(seed: int, n: int = 40) -> pd.DataFrame:
    """Fingerprint-like windows of two device types with different habits."""
    rng = np.random.default_rng(seed)
    rows = []
    for kind, size, mqtt in (("cam", 6.5, 0.0), ("lock", 4.5, 0.9)):
        for i in range(n):
            rows.append(
                {
                    "device": f"{kind}-01",
                    "type": kind,
                    "window_start": float(i * 3600),
                    "units": 100,
                    "ports": frozenset({443} if kind == "cam" else {8883}),
                    "evidence": (f"{kind}:{i}",),
                    "f.size.mean": rng.normal(size, 0.2),
                    "f.port.mqtts": min(1.0, max(0.0, rng.normal(mqtt, 0.05))),
                    "f.port.https": min(1.0, max(0.0, rng.normal(1 - mqtt, 0.05))),
                }
            )
    return pd.DataFrame(rows)
