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
cat.mqtt_client_id      CONNECT client identifier ("" when the client sent none)
cat.mqtt_username       CONNECT user name (absent when the user-name flag is not set)
======================  ==================================================================

A CONNACK carries neither name, so :func:`mqtt_fields` gives a CONNACK the client id and user
name of the CONNECT it answers (the last CONNECT seen on the same TCP connection, the other way
round): a refused CONNACK then says which account was tried. The CONNECT payload is read for
MQTT 3.1, 3.1.1 and 5 (whose properties are skipped); a payload cut short by the segment leaves
the names it does not reach absent rather than marking the packet malformed.

:func:`annotate_mqtt` joins them onto the reader's event frame by ``event_id``.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
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
TEXT_COLUMNS = ("cat.mqtt_client_id", "cat.mqtt_username")
#: connections whose CONNECT is remembered until its CONNACK (the oldest forgotten beyond this)
MAX_PENDING = 100_000


def decode_mqtt(payload: bytes) -> dict[str, float | str | None] | None:
    """Decode the first MQTT control packet of a TCP payload (None for an empty payload).

    Numeric fields (:data:`COLUMNS`) are NaN where they do not apply, text fields
    (:data:`TEXT_COLUMNS`) None.

    >>> connect = bytes([0x10, 20, 0, 4]) + b"MQTT" + bytes([4, 0x82, 0, 60, 0, 2]) + b"c1" + bytes([0, 4]) + b"root"
    >>> f = decode_mqtt(connect)
    >>> f["num.mqtt_keepalive"], f["cat.mqtt_client_id"], f["cat.mqtt_username"]
    (60.0, 'c1', 'root')
    """
    if not payload:
        return None
    out: dict[str, float | str | None] = {**dict.fromkeys(COLUMNS, np.nan), **dict.fromkeys(TEXT_COLUMNS)}
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


def _connect(body: bytes, out: dict[str, float | str | None]) -> bool:
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
    bad = not known or reserved or password_without_user
    if not bad:
        _connect_payload(body, at + 4, level == 5, cflags, out)
    return bad


def _connect_payload(body: bytes, start: int, v5: bool, cflags: int, out: dict[str, float | str | None]) -> None:
    """Read the client id and, if flagged, the user name of a CONNECT (MQTT 3.1.1 s3.1.3, 5 s3.1.3)."""
    at: int | None = _skip_properties(body, start) if v5 else start
    client_id, at = _string(body, at)
    out["cat.mqtt_client_id"] = client_id
    if client_id is None or at is None:
        return
    if cflags & 0x04:  # will flag: will properties (5), will topic, will payload
        if v5:
            at = _skip_properties(body, at)
        _, at = _string(body, at)
        _, at = _string(body, at)
    if cflags & 0x80:
        out["cat.mqtt_username"], _ = _string(body, at)


def _string(body: bytes, at: int | None) -> tuple[str | None, int | None]:
    """A two-byte-length-prefixed field at ``at`` as text, and the offset after it (None, None if cut)."""
    if at is None or at + 2 > len(body):
        return None, None
    end = at + 2 + int.from_bytes(body[at : at + 2], "big")
    if end > len(body):
        return None, None
    return body[at + 2 : end].decode("utf-8", errors="backslashreplace"), end


def _skip_properties(body: bytes, at: int | None) -> int | None:
    """The offset after an MQTT 5 property block (a variable-length size, then the properties)."""
    if at is None:
        return None
    size, mult = 0, 1
    for i in range(4):
        if at + i >= len(body):
            return None
        byte = body[at + i]
        size += (byte & 0x7F) * mult
        mult *= 128
        if not byte & 0x80:
            end = at + i + 1 + size
            return end if end <= len(body) else None
    return None


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
    numbers packets), the :data:`COLUMNS` and the :data:`TEXT_COLUMNS`; a CONNACK has the names
    of the CONNECT it answers.
    """
    p = Path(path)
    rows: list[dict[str, object]] = []
    pending: OrderedDict[bytes, tuple[object, object]] = OrderedDict()  # connection -> (client id, user)
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
        if decoded is None:
            continue
        if decoded["num.mqtt_type"] == 1.0:  # remember who asked, keyed by the connection's 4-tuple
            key = ip_bytes[12:16] + tcp[0:2] + ip_bytes[16:20] + tcp[2:4]
            pending[key] = (decoded["cat.mqtt_client_id"], decoded["cat.mqtt_username"])
            pending.move_to_end(key)
            if len(pending) > MAX_PENDING:
                pending.popitem(last=False)
        elif decoded["num.mqtt_type"] == 2.0:  # the CONNACK goes the other way
            asked = pending.pop(ip_bytes[16:20] + tcp[2:4] + ip_bytes[12:16] + tcp[0:2], None)
            if asked is not None:
                decoded["cat.mqtt_client_id"], decoded["cat.mqtt_username"] = asked  # type: ignore[assignment]
        rows.append({"event_id": f"{p.name}:{n}", **decoded})
    return pd.DataFrame(rows, columns=["event_id", *COLUMNS, *TEXT_COLUMNS])


def annotate_mqtt(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """The reader's event frame of a capture with the MQTT columns joined on (NaN/None elsewhere)."""
    fields = mqtt_fields(path).set_index("event_id")
    out = frame.copy()
    ids = out["event_id"].astype(str)
    for col in COLUMNS:
        out[col] = ids.map(fields[col]).astype("float64").to_numpy()
    for col in TEXT_COLUMNS:
        text = ids.map(fields[col]).tolist()
        out[col] = pd.Series([v if isinstance(v, str) else None for v in text], index=out.index, dtype=object)
    return out
