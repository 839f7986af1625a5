"""MQTT control-packet fields read from capture payloads, for the MQTT rules.

:class:`~misuse.ingest.pcap.PcapReader` emits packet headers but not payload bytes, so the
MQTT rules need this extra pass: :func:`mqtt_fields` reads the TCP payloads to or from port
1883/8883 with dpkt and decodes the first MQTT control packet of each segment:

======================  ==================================================================
column                  meaning
======================  ==================================================================
num.mqtt_type           control packet type (1 CONNECT, 2 CONNACK, 3 PUBLISH, 12 PINGREQ...)
num.mqtt_remaining      the remaining length the fixed header declares
num.mqtt_keepalive      CONNECT keep-alive seconds
num.mqtt_connect_flags  CONNECT flags byte
num.mqtt_rc             CONNACK return code (4 bad user name or password, 5 not authorised)
num.mqtt_malformed      1 when the packet breaks the MQTT 3.1/3.1.1 grammar: bad remaining
                        length, wrong fixed-header flags, CONNECT with an unknown protocol
                        name/level or the reserved connect flag set, password without user
                        name; else 0
======================  ==================================================================

:func:`annotate_mqtt` joins them onto the reader's event frame by ``event_id``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import dpkt
import numpy as np
import pandas as pd

from misuse.errors import ParseError
from misuse.ingest.base import open_binary

MQTT_PORTS = frozenset({1883, 8883})
_FIXED_FLAGS = {1: 0, 2: 0, 4: 0, 5: 0, 6: 2, 7: 0, 8: 2, 9: 0, 10: 2, 11: 0, 12: 0, 13: 0, 14: 0}
COLUMNS = (
    "num.mqtt_type",
    "num.mqtt_remaining",
    "num.mqtt_keepalive",
    "num.mqtt_connect_flags",
    "num.mqtt_rc",
    "num.mqtt_malformed",
)


def decode_mqtt(payload: bytes) -> dict[str, float] | None:
    """Decode the first MQTT control packet of a TCP payload (None for an empty payload).

    >>> decode_mqtt(bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 0]))["num.mqtt_keepalive"]
    60.0
    """
    if not payload:
        return None
    out = dict.fromkeys(COLUMNS, np.nan)
    first = payload[0]
    ptype, flags = first >> 4, first & 0x0F
    out["num.mqtt_type"] = float(ptype)
    bad = ptype == 0 or (ptype in _FIXED_FLAGS and flags != _FIXED_FLAGS[ptype])
    rem, mult, pos = 0, 1, 1
    while True:
        if pos >= len(payload) or pos > 4:
            bad = True
            break
        byte = payload[pos]
        rem += (byte & 0x7F) * mult
        mult *= 128
        pos += 1
        if not byte & 0x80:
            break
    out["num.mqtt_remaining"] = float(rem)
    body = payload[pos : pos + rem]
    if ptype == 1 and not bad:
        bad = _connect(body, out)
    elif ptype == 2 and len(body) >= 2:
        out["num.mqtt_rc"] = float(body[1])
    out["num.mqtt_malformed"] = 1.0 if bad else 0.0
    return out


def _connect(body: bytes, out: dict[str, float]) -> bool:
    """Fill CONNECT fields; True when the CONNECT is malformed."""
    if len(body) < 10:
        return True
    name_len = int.from_bytes(body[0:2], "big")
    name = body[2 : 2 + name_len]
    at = 2 + name_len
    if len(body) < at + 4:
        return True
    level, cflags = body[at], body[at + 1]
    out["num.mqtt_connect_flags"] = float(cflags)
    out["num.mqtt_keepalive"] = float(int.from_bytes(body[at + 2 : at + 4], "big"))
    known = (name == b"MQTT" and level in (4, 5)) or (name == b"MQIsdp" and level == 3)
    reserved = bool(cflags & 0x01)
    password_without_user = bool(cflags & 0x40) and not cflags & 0x80
    return not known or reserved or password_without_user


def _packets(path: Path) -> Iterator[tuple[int, bytes]]:
    with open_binary(path) as fh:
        head = fh.read(4)
        fh.seek(0)
        try:
            reader: dpkt.pcap.Reader | dpkt.pcapng.Reader = (
                dpkt.pcapng.Reader(fh) if head == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
            )
        except (ValueError, dpkt.dpkt.Error) as exc:
            raise ParseError(f"not a pcap/pcapng capture ({exc})", source=str(path)) from None
        link = reader.datalink()
        n = 0
        with contextlib.suppress(dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError, ValueError):
            for _, buf in reader:
                n += 1
                yield n, _l3(buf, link)


def _l3(buf: bytes, link: int) -> bytes:
    if link == 1:
        return buf[14:] if buf[12:14] == b"\x08\x00" else b""
    if link == 113:
        return buf[16:] if buf[14:16] == b"\x08\x00" else b""
    if link == 276:
        return buf[20:] if buf[0:2] == b"\x08\x00" else b""
    return buf if link in (12, 14, 101, 228) else b""


def mqtt_fields(path: str | Path) -> pd.DataFrame:
    """MQTT fields of every IPv4 TCP packet to or from an MQTT port with a payload.

    Returns a frame with ``event_id`` (``<file name>:<packet number>``, as the pcap reader
    numbers packets) and the :data:`COLUMNS`.
    """
    p = Path(path)
    rows: list[dict[str, object]] = []
    for n, ip_bytes in _packets(p):
        if len(ip_bytes) < 20 or ip_bytes[0] >> 4 != 4 or ip_bytes[9] != 6:
            continue
        ihl = (ip_bytes[0] & 0x0F) * 4
        total = int.from_bytes(ip_bytes[2:4], "big")
        tcp = ip_bytes[ihl:total] if total >= ihl else ip_bytes[ihl:]
        if len(tcp) < 20:
            continue
        sport, dport = int.from_bytes(tcp[0:2], "big"), int.from_bytes(tcp[2:4], "big")
        if sport not in MQTT_PORTS and dport not in MQTT_PORTS:
            continue
        decoded = decode_mqtt(tcp[(tcp[12] >> 4) * 4 :])
        if decoded is not None:
            rows.append({"event_id": f"{p.name}:{n}", **decoded})
    return pd.DataFrame(rows, columns=["event_id", *COLUMNS])


def annotate_mqtt(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """The reader's event frame of a capture with the MQTT columns joined on (NaN elsewhere)."""
    fields = mqtt_fields(path).set_index("event_id")
    out = frame.copy()
    ids = out["event_id"].astype(str)
    for col in COLUMNS:
        out[col] = ids.map(fields[col]).astype("float64").to_numpy()
    return out
