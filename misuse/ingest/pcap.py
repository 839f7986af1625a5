"""Packet captures (pcap and pcapng, optionally .gz/.xz/.bz2) as ``packet`` events.

One packet is one event:

=================  ==============================================================
column             value
=================  ==============================================================
event_id, source   ``<file name>:<packet number>`` (1-based, Wireshark's frame number)
entity             source IP address (source MAC when there is no IP, "" if neither;
                   ARP: the sender protocol address)
peer               destination IP address (or MAC; ARP: the target protocol address)
kind               ``packet``
action             well-known service by port (``mqtt`` 1883/8883, ``telnet`` 23/2323,
                   ``ssh`` 22, ``http`` 80/8080, ``https`` 443, ``dns`` 53, ``ntp`` 123,
                   ``irc`` 6667; destination port first), else ``tcp``, ``udp``,
                   ``icmp``, ``icmp6``, ``arp``, ``ip:<protocol number>``,
                   ``ether:0x<ethertype>``, ``llc`` (802.3 frames) or ``unknown``
label              None (captures carry no ground truth)
num.len, caplen    length on the wire and captured length
num.ip_proto, ttl  IP protocol and TTL / hop limit
num.src_port, ...  ``src_port``, ``dst_port``, ``tcp_flags``, ``tcp_seq``, ``payload_len``
num.dst_ip_int     IPv4 destination as an unsigned 32-bit number (Mirai's SYNs have
                   ``tcp_seq == dst_ip_int``)
cat.src_mac, ...   ``src_mac``, ``dst_mac`` (``aa:bb:cc:dd:ee:ff``) and ``link``
                   (``ethernet``, ``sll``, ``sll2``, ``raw``, ``null``...)
=================  ==============================================================

Numeric fields that do not apply to a packet are NaN, categorical ones None. pcapng simple
packet blocks carry no timestamp and get the one of the packet before them. Link types read:
Ethernet (with 802.1Q/QinQ tags), Linux cooked v1/v2, raw IP, BSD loopback. Network layers:
IPv4, IPv6 (fixed header only) and ARP; transport: TCP, UDP, ICMP/ICMPv6.

Frames are built from whole columns (:mod:`misuse.ingest.pcap_stream`), never packet by
packet; use :func:`~misuse.ingest.pcap_stream.iter_packet_arrays` directly when the event frame
is not needed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from misuse.errors import InvalidParameterError
from misuse.ingest import pcap_kernels as kern
from misuse.ingest.base import DEFAULT_BATCH, DeadLetter, Reader
from misuse.ingest.pcap_stream import DEFAULT_CHUNK, PacketArrays, iter_packet_arrays

SERVICES: dict[int, str] = {
    1883: "mqtt",
    8883: "mqtt",
    23: "telnet",
    2323: "telnet",
    22: "ssh",
    80: "http",
    8080: "http",
    443: "https",
    53: "dns",
    123: "ntp",
    6667: "irc",
}
LINK_NAMES: dict[int, str] = {
    0: "null",
    1: "ethernet",
    12: "raw",
    14: "raw",
    101: "raw",
    108: "loop",
    113: "sll",
    228: "ipv4",
    229: "ipv6",
    276: "sll2",
}
_STR = pd.StringDtype("pyarrow", na_value=np.nan)
_NUM_COLUMNS = (
    "caplen",
    "dst_ip_int",
    "dst_port",
    "ip_proto",
    "len",
    "payload_len",
    "src_port",
    "tcp_flags",
    "tcp_seq",
    "ttl",
)


def _service_table() -> tuple[np.ndarray, list[str]]:
    names = sorted(set(SERVICES.values()))
    table = np.zeros(65536, np.int16)
    for port, svc in SERVICES.items():
        table[port] = names.index(svc) + 1
    return table, names


class PcapReader(Reader):
    """Read pcap / pcapng captures into ``packet`` events (see the module docstring for columns).

    Parameters
    ----------
    chunk_bytes:
        Bytes read and decoded at a time; memory use is a few times this, whatever the file size.

    Examples
    --------
    >>> import dpkt, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "one.pcap"
    >>> pkt = dpkt.ethernet.Ethernet(
    ...     src=b"\\x02\\x00\\x00\\x00\\x00\\x01", dst=b"\\x02\\x00\\x00\\x00\\x00\\x02",
    ...     data=dpkt.ip.IP(src=bytes([10, 0, 0, 1]), dst=bytes([10, 0, 0, 2]), p=6,
    ...                     data=dpkt.tcp.TCP(sport=40000, dport=1883, flags=2)))
    >>> with open(path, "wb") as fh:
    ...     dpkt.pcap.Writer(fh).writepkt(bytes(pkt), ts=1.5)
    >>> row = PcapReader().read(path).iloc[0]
    >>> row.entity, row.peer, row.action, int(row["num.dst_port"]), row["cat.link"]
    ('10.0.0.1', '10.0.0.2', 'mqtt', 1883, 'ethernet')
    """

    name = "pcap"

    def __init__(self, chunk_bytes: int = DEFAULT_CHUNK) -> None:
        if not isinstance(chunk_bytes, int) or chunk_bytes < 4096:
            raise InvalidParameterError(
                f"The 'chunk_bytes' parameter of PcapReader must be an int >= 4096. Got {chunk_bytes!r} instead."
            )
        self.chunk_bytes = chunk_bytes

    def arrays(self, path: str | Path, *, dead: DeadLetter | None = None) -> Iterator[PacketArrays]:
        """The low-level form: one :class:`~misuse.ingest.pcap_stream.PacketArrays` per chunk."""
        return iter_packet_arrays(path, chunk_bytes=self.chunk_bytes, dead=dead)

    def batches(
        self,
        path: str | Path,
        *,
        batch_size: int = DEFAULT_BATCH,
        dead: DeadLetter | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Yield the capture's packets as event frames of at most ``batch_size`` rows.

        Raises
        ------
        ParseError
            When the file is missing, empty or not a pcap/pcapng file. Bad records inside a
            good file go to ``dead`` instead.
        """
        if batch_size < 1:
            raise InvalidParameterError(f"batch_size must be >= 1. Got {batch_size!r} instead.")
        name = Path(path).name
        pending: list[PacketArrays] = []
        have = 0
        for arr in self.arrays(path, dead=dead):
            pending.append(arr)
            have += len(arr)
            if have < batch_size:
                continue
            joined = PacketArrays.concat(pending)
            done = 0
            while have - done >= batch_size:
                yield packets_to_frame(joined.take(slice(done, done + batch_size)), name)
                done += batch_size
            pending = [joined.take(slice(done, None))] if done < have else []
            have -= done
        if have:
            yield packets_to_frame(PacketArrays.concat(pending), name)


def _mac_names(macs: np.ndarray) -> list[str]:
    return [":".join(f"{int(m):012x}"[i : i + 2] for i in range(0, 12, 2)) for m in macs]


def _address_column(arr: PacketArrays, src: bool, v6_slots: np.ndarray, v6_names: list[str]) -> pa.Array:
    """Entity (``src``) or peer strings: IP address, else MAC address, else ""."""
    lo = arr.src_lo if src else arr.dst_lo
    mac = arr.src_mac if src else arr.dst_mac
    mac_ok = arr.has_mac if src else arr.has_mac & (arr.linktype == 1)
    # one int64 key per packet: family in the top byte, address (or IPv6 slot) below
    keys = np.zeros(len(arr), np.int64)
    v4 = (arr.l3 == kern.L3_IPV4) | (arr.l3 == kern.L3_ARP)
    keys[v4] = (4 << 56) | lo[v4].astype(np.int64)
    v6 = arr.l3 == kern.L3_IPV6
    keys[v6] = (6 << 56) | v6_slots
    macs = ~v4 & ~v6 & mac_ok
    keys[macs] = (1 << 56) | mac[macs]
    codes, uniq = pd.factorize(keys)
    names = []
    for key in uniq.tolist():
        fam, value = key >> 56, key & ((1 << 56) - 1)
        if fam == 4:
            names.append(str(ipaddress.IPv4Address(value)))
        elif fam == 6:
            names.append(v6_names[value])
        elif fam == 1:
            names.append(_mac_names(np.array([value]))[0])
        else:
            names.append("")
    return _decoded(codes, names)


def _decoded(codes: np.ndarray, names: list[str]) -> pa.Array:
    """A plain Arrow string array from factor codes and their names."""
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(names, pa.string())).dictionary_decode()


def _v6_table(arr: PacketArrays) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Factorize the IPv6 addresses of both sides; slots per packet (src, dst) and their names."""
    v6 = arr.l3 == kern.L3_IPV6
    if not v6.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64), []
    pairs = np.concatenate(
        [np.stack([arr.src_hi[v6], arr.src_lo[v6]], 1), np.stack([arr.dst_hi[v6], arr.dst_lo[v6]], 1)]
    )
    uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
    inv = inv.reshape(-1).astype(np.int64)
    names = [str(ipaddress.IPv6Address((int(h) << 64) | int(lo))) for h, lo in uniq.tolist()]
    m = int(v6.sum())
    return inv[:m], inv[m:], names


def _mac_column(mac: np.ndarray, ok: np.ndarray) -> np.ndarray:
    codes, uniq = pd.factorize(np.where(ok, mac, -1))
    names = np.array([None if m < 0 else s for m, s in zip(uniq, _mac_names(uniq), strict=True)], dtype=object)
    return names[codes]


def _named(codes: np.ndarray, lookup: dict[int, str], default: str) -> np.ndarray:
    found, uniq = pd.factorize(codes)
    names = np.array([lookup.get(int(u), default.format(int(u))) for u in uniq], dtype=object)
    return names[found]


def _actions(arr: PacketArrays) -> pa.Array:
    table, svc_names = _service_table()
    has_ports = arr.dst_port >= 0
    svc = np.zeros(len(arr), np.int64)
    if has_ports.any():
        dst_svc = table[np.where(has_ports, arr.dst_port, 0)]
        src_svc = table[np.where(has_ports, arr.src_port, 0)]
        svc = np.where(has_ports, np.where(dst_svc > 0, dst_svc, src_svc), 0).astype(np.int64)
    # keys: services 1..S, ARP 999, IP protocols 1000 + proto, other ethertypes 100000 + type, 0 unknown
    is_ip = (arr.l3 == kern.L3_IPV4) | (arr.l3 == kern.L3_IPV6)
    key = svc
    key = np.where((key == 0) & is_ip, 1000 + arr.ip_proto.astype(np.int64), key)
    key = np.where(arr.l3 == kern.L3_ARP, 999, key)
    key = np.where((key == 0) & (arr.eth_type >= 0), 100000 + arr.eth_type.astype(np.int64), key)
    codes, uniq = pd.factorize(key)
    protos = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6"}
    names = []
    for k in uniq.tolist():
        if k == 0:
            names.append("unknown")
        elif k <= len(svc_names):
            names.append(svc_names[k - 1])
        elif k == 999:
            names.append("arp")
        elif k < 100000:
            names.append(protos.get(k - 1000, f"ip:{k - 1000}"))
        elif k - 100000 < 0x0600:  # an IEEE 802.3 length field, not an EtherType
            names.append("llc")
        else:
            names.append(f"ether:0x{k - 100000:04x}")
    return _decoded(codes, names)


def _num(values: np.ndarray) -> np.ndarray:
    out = values.astype(np.float64)
    out[values < 0] = np.nan
    return out


def packets_to_frame(arr: PacketArrays, file_name: str) -> pd.DataFrame:
    """Turn decoded packets into an event frame in the canonical column order and dtypes.

    Parameters
    ----------
    arr:
        Packets from :func:`~misuse.ingest.pcap_stream.iter_packet_arrays`.
    file_name:
        Used for ``event_id`` and ``source`` (``<file_name>:<packet number>``).
    """
    n = len(arr)
    ids = pc.binary_join_element_wise(file_name, pa.array(arr.index).cast(pa.string()), ":")
    ids_col = pd.Series(ids, dtype=_STR)
    v6_src, v6_dst, v6_names = _v6_table(arr)
    entity = _address_column(arr, True, v6_src, v6_names)
    peer = _address_column(arr, False, v6_dst, v6_names)
    dst_ip = np.full(n, np.nan)
    v4 = arr.l3 == kern.L3_IPV4
    dst_ip[v4] = arr.dst_lo[v4].astype(np.float64)
    data: dict[str, object] = {
        "event_id": ids_col,
        "ts": pd.Series(pd.to_datetime(arr.ts_ns, unit="ns", utc=True)),
        "entity": pd.Series(entity, dtype=_STR),
        "peer": pd.Series(peer, dtype=_STR),
        "kind": pd.Series(_decoded(np.zeros(n, np.int32), ["packet"]), dtype=_STR),
        "action": pd.Series(_actions(arr), dtype=_STR),
        "label": pd.Series(np.full(n, None, dtype=object)),
        "source": ids_col.copy(),
        "cat.dst_mac": pd.Series(_mac_column(arr.dst_mac, arr.has_mac & (arr.linktype == 1)), dtype=object),
        "cat.link": pd.Series(_named(arr.linktype, LINK_NAMES, "linktype:{}"), dtype=object),
        "cat.src_mac": pd.Series(_mac_column(arr.src_mac, arr.has_mac), dtype=object),
        "num.caplen": arr.cap_len.astype(np.float64),
        "num.dst_ip_int": dst_ip,
        "num.dst_port": _num(arr.dst_port),
        "num.ip_proto": _num(arr.ip_proto),
        "num.len": arr.wire_len.astype(np.float64),
        "num.payload_len": _num(arr.payload_len),
        "num.src_port": _num(arr.src_port),
        "num.tcp_flags": _num(arr.tcp_flags),
        "num.tcp_seq": _num(arr.tcp_seq),
        "num.ttl": _num(arr.ttl),
    }
    return pd.DataFrame(data)
