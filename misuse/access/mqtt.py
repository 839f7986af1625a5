"""MQTT logins from captures: each CONNECT matched with the broker's CONNACK is one login attempt.

The packet path (:mod:`misuse.ingest.pcap_stream`) keeps headers, not payloads. So the capture is
read twice: the packet reader finds the TCP segments with a payload to or from the MQTT ports
(1883, 8883 only when not TLS) and sets aside the records it cannot read (counted in a
:class:`~misuse.ingest.base.DeadLetter`, as ``misuse ingest`` does); then dpkt parses only those
segments' payloads (as :mod:`misuse.ingest.pcap_dns` does for DNS names).
A CONNECT (MQTT 3.1, 3.1.1 or 5) gives the client id (the client fingerprint), the user name
(the account; ``(anonymous)`` without one) and whether a password was sent; the CONNACK on the
same TCP connection gives the outcome (return/reason code 0 = success). A CONNECT the broker
never answered is not an attempt we can judge and is left out.

The password itself is never kept: ``password`` holds the first 12 hex digits of its SHA-256, so
spraying (one password over many accounts) can still be told from stuffing without storing
secrets.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import dpkt
import numpy as np
import pandas as pd

from misuse.access.attempts import ATTEMPT_COLUMNS, empty_attempts
from misuse.errors import ParseError
from misuse.ingest.base import DeadLetter, open_binary
from misuse.ingest.pcap_stream import PacketArrays, iter_packet_arrays

MQTT_PORTS = frozenset({1883, 8883})
_PENDING_MAX = 65_536


def _remaining(buf: bytes, pos: int) -> tuple[int, int] | None:
    """Decode the variable-length "remaining length" at ``pos``; (value, next position) or None."""
    value, mult = 0, 1
    for i in range(4):
        if pos + i >= len(buf):
            return None
        byte = buf[pos + i]
        value += (byte & 0x7F) * mult
        mult *= 128
        if not byte & 0x80:
            return value, pos + i + 1
    return None


def _string(body: bytes, at: int) -> tuple[bytes, int] | None:
    if at + 2 > len(body):
        return None
    n = int.from_bytes(body[at : at + 2], "big")
    if at + 2 + n > len(body):
        return None
    return body[at + 2 : at + 2 + n], at + 2 + n


def _properties(body: bytes, at: int) -> int | None:
    """Skip an MQTT 5 property block; the position after it or None."""
    got = _remaining(body, at)
    if got is None:
        return None
    length, at = got
    return at + length if at + length <= len(body) else None


def parse_connect(body: bytes) -> dict[str, str] | None:
    """Fields of a CONNECT variable header + payload (the bytes after the fixed header).

    Returns ``{"client_id", "user", "password_hash", "level"}`` or None when malformed.

    Examples
    --------
    >>> body = b"\\x00\\x04MQTT\\x04\\xc2\\x00\\x3c" + b"\\x00\\x02c1" + b"\\x00\\x03bob" + b"\\x00\\x02pw"
    >>> parse_connect(body)["user"], parse_connect(body)["client_id"]
    ('bob', 'c1')
    """
    name = _string(body, 0)
    if name is None or name[0] not in (b"MQTT", b"MQIsdp") or name[1] + 4 > len(body):
        return None
    at = name[1]
    level, flags = body[at], body[at + 1]
    at += 4
    if level == 5:
        nxt = _properties(body, at)
        if nxt is None:
            return None
        at = nxt
    client = _string(body, at)
    if client is None:
        return None
    at = client[1]
    if flags & 0x04:  # will flag: (v5 will properties), will topic, will message
        if level == 5:
            nxt = _properties(body, at)
            if nxt is None:
                return None
            at = nxt
        for _ in range(2):
            part = _string(body, at)
            if part is None:
                return None
            at = part[1]
    user = b""
    secret = ""
    if flags & 0x80:
        got = _string(body, at)
        if got is None:
            return None
        user, at = got
    if flags & 0x40:
        got = _string(body, at)
        if got is None:
            return None
        secret = hashlib.sha256(got[0]).hexdigest()[:12]
    return {
        "client_id": client[0].decode("utf-8", "replace"),
        "user": user.decode("utf-8", "replace") or "(anonymous)",
        "password_hash": secret,
        "level": str(level),
    }


def mqtt_packets(chunks: Iterable[PacketArrays]) -> set[int]:
    """Packet numbers of TCP segments that carry a payload to or from an MQTT port."""
    out: set[int] = set()
    ports = np.array(sorted(MQTT_PORTS))
    for arr in chunks:
        mqtt = np.isin(arr.src_port, ports) | np.isin(arr.dst_port, ports)
        sel = (arr.l3 >= 4) & (arr.ip_proto == 6) & (arr.payload_len > 0) & mqtt
        out.update(int(i) for i in arr.index[sel])
    return out


def _segments(path: Path, wanted: set[int]) -> Iterator[tuple[int, float, bytes, int, bytes, int, bytes]]:
    """(packet number, ts, src ip, src port, dst ip, dst port, payload) of the ``wanted`` packets
    that are TCP segments on MQTT ports."""
    if not wanted:
        return
    last = max(wanted)
    with open_binary(path) as fh:
        head = fh.read(4)
    with open_binary(path) as fh:  # opened again: a decompressing stream cannot seek back
        try:
            reader: dpkt.pcap.Reader | dpkt.pcapng.Reader = (
                dpkt.pcapng.Reader(fh) if head == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
            )
        except (ValueError, dpkt.dpkt.Error) as exc:
            raise ParseError(f"not a pcap/pcapng capture ({exc})", source=str(path)) from None
        link = reader.datalink()
        try:
            for n, (ts, buf) in enumerate(reader, start=1):
                if n > last:
                    break
                if n not in wanted:
                    continue
                ip = _ip(buf, link)
                if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                    continue
                tcp = ip.data
                if tcp.data and (tcp.sport in MQTT_PORTS or tcp.dport in MQTT_PORTS):
                    yield n, float(ts), ip.src, tcp.sport, ip.dst, tcp.dport, bytes(tcp.data)
        except (dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError, ValueError, struct.error):
            return  # a broken tail: the packet reader has set it aside


def _ip(buf: bytes, link: int) -> object:
    try:
        if link == dpkt.pcap.DLT_EN10MB:
            return dpkt.ethernet.Ethernet(buf).data
        if link == dpkt.pcap.DLT_LINUX_SLL:
            return dpkt.sll.SLL(buf).data
        if link in (dpkt.pcap.DLT_RAW, 12, 14, 228):
            return dpkt.ip.IP(buf)
    except (dpkt.dpkt.UnpackError, dpkt.dpkt.NeedData, ValueError):
        return None
    return None


def _addr(raw: bytes) -> str:
    return ".".join(str(b) for b in raw) if len(raw) == 4 else raw.hex()


def mqtt_logins(path: str | Path, *, dead: DeadLetter | None = None) -> pd.DataFrame:
    """Login attempts (:data:`~misuse.access.attempts.ATTEMPT_COLUMNS`) from the MQTT CONNECTs of a capture.

    Parameters
    ----------
    path:
        A pcap or pcapng capture.
    dead:
        Where the records the packet reader cannot read are set aside (they are skipped); a
        fresh in-memory :class:`~misuse.ingest.base.DeadLetter` when None.

    Raises
    ------
    ParseError
        When the file is missing or is not a pcap/pcapng capture.
    """
    p = Path(path)
    wanted = mqtt_packets(iter_packet_arrays(p, dead=dead))
    pending: dict[tuple[bytes, int, bytes, int], tuple[int, float, dict[str, str]]] = {}
    rows: list[dict[str, object]] = []
    for n, ts, src, sport, dst, dport, data in _segments(p, wanted):
        pos = 0
        while pos < len(data):
            ptype = data[pos] >> 4
            got = _remaining(data, pos + 1)
            if got is None:
                break
            length, start = got
            body = data[start : start + length]
            if ptype == 1 and dport in MQTT_PORTS:
                fields = parse_connect(body)
                if fields is not None:
                    pending[(src, sport, dst, dport)] = (n, ts, fields)
                    if len(pending) > _PENDING_MAX:
                        pending.pop(next(iter(pending)))
            elif ptype == 2 and sport in MQTT_PORTS and len(body) >= 2:
                hit = pending.pop((dst, dport, src, sport), None)
                if hit is not None:
                    cn, cts, f = hit
                    rows.append(
                        {
                            "event_id": f"{p.name}:{cn}",
                            "ts": cts,
                            "account": f["user"],
                            "source": _addr(dst),
                            "success": body[1] == 0,
                            "failures": 0.0 if body[1] == 0 else 1.0,
                            "client": f["client_id"],
                            "password": f["password_hash"],
                            "channel": "mqtt",
                        }
                    )
            pos = start + length
    if not rows:
        return empty_attempts()
    out = pd.DataFrame(rows, columns=list(ATTEMPT_COLUMNS))
    out["success"] = out["success"].astype(bool)
    out["ts"] = out["ts"].astype(np.float64)
    return out.sort_values("ts", kind="stable").reset_index(drop=True)
