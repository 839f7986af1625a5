"""Helpers for the rule tests: tiny event frames and captures made on the spot."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import dpkt
import pandas as pd
import pytest

from misuse.events import Event, events_to_frame
from misuse.rules import builtin_pack
from misuse.rules.model import Rule


@pytest.fixture(scope="session")
def pack() -> list[Rule]:
    """The built-in pack, loaded once."""
    return builtin_pack()


def frame(events: Iterable[Event]) -> pd.DataFrame:
    """Events to the canonical frame."""
    return events_to_frame(list(events))


def flow(ts: float, src: str, dst: str, port: int, state: str = "SF", **num: float) -> Event:
    """A Zeek-like flow event."""
    return Event(
        ts=ts,
        entity=src,
        peer=dst,
        kind="flow",
        action="tcp",
        num={"dst_port": float(port), **num},
        cat={"conn_state": state},
        event_id=f"f{ts}-{src}-{dst}-{port}",
    )


def auth(ts: float, user: str, ip: str, action: str) -> Event:
    """An auth event as the auth-log reader makes it."""
    return Event(ts=ts, entity=user, peer=ip, kind="auth", action=action, event_id=f"a{ts}-{ip}-{user}")


def ip_bytes(ip: str) -> bytes:
    """Dotted quad to 4 bytes."""
    return bytes(int(x) for x in ip.split("."))


def write_pcap(path: Path, packets: list[tuple[float, bytes]]) -> Path:
    """Write Ethernet frames to a classic pcap."""
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for ts, pkt in packets:
            w.writepkt(pkt, ts=ts)
    return path


def tcp_packet(src: str, dst: str, sport: int, dport: int, flags: int, seq: int = 1, payload: bytes = b"") -> bytes:
    """An Ethernet/IPv4/TCP frame."""
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=seq, data=payload)
    ip = dpkt.ip.IP(src=ip_bytes(src), dst=ip_bytes(dst), p=6, data=tcp)
    ip.len = 20 + len(bytes(tcp))
    eth = dpkt.ethernet.Ethernet(src=b"\x02\x00\x00\x00\x00\x01", dst=b"\x02\x00\x00\x00\x00\x02", data=ip)
    return bytes(eth)


@pytest.fixture
def mk() -> object:
    """The helpers above as one object (test modules cannot import each other here)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        frame=frame, flow=flow, auth=auth, write_pcap=write_pcap, tcp_packet=tcp_packet, ip_bytes=ip_bytes
    )
