"""DNS query names out of a capture, by packet number, for the few packets that are DNS queries.

The compiled packet reader (:mod:`misuse.ingest.pcap_stream`) keeps headers only. Device
fingerprints also want the names a device looks up, so :func:`dns_queries` walks the capture's
records once more (pcap or pcapng, optionally compressed) and parses, with dpkt, only the records
whose numbers it is given (those :func:`query_packets` picks from the packet arrays: UDP to port
53). Packet numbers are the reader's: 1-based, counting every packet record.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterable
from pathlib import Path

import dpkt

from misuse.errors import ParseError
from misuse.ingest.base import open_binary
from misuse.ingest.pcap_stream import PacketArrays

DNS_PORT = 53
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


def query_packets(chunks: Iterable[PacketArrays]) -> set[int]:
    """Packet numbers of UDP packets sent to port 53 (DNS queries, and anything posing as one)."""
    out: set[int] = set()
    for arr in chunks:
        sel = (arr.ip_proto == 17) & (arr.dst_port == DNS_PORT) & (arr.l3 >= 4)
        out.update(int(i) for i in arr.index[sel])
    return out


def _ip_of(buf: bytes, linktype: int) -> dpkt.Packet | None:
    if linktype == dpkt.pcap.DLT_EN10MB:
        frame = dpkt.ethernet.Ethernet(buf)
        return frame.data if isinstance(frame.data, dpkt.ip.IP | dpkt.ip6.IP6) else None
    if linktype == dpkt.pcap.DLT_LINUX_SLL:
        cooked = dpkt.sll.SLL(buf)
        return cooked.data if isinstance(cooked.data, dpkt.ip.IP | dpkt.ip6.IP6) else None
    if linktype in (dpkt.pcap.DLT_RAW, 12, 14, 228):
        return dpkt.ip.IP(buf) if buf[:1] and buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
    return None


def _qname(buf: bytes, linktype: int) -> str:
    try:
        ip = _ip_of(buf, linktype)
        udp = ip.data if ip is not None else None
        if not isinstance(udp, dpkt.udp.UDP):
            return ""
        msg = dpkt.dns.DNS(udp.data)
        if msg.qr != dpkt.dns.DNS_Q or not msg.qd:
            return ""
        return str(msg.qd[0].name).lower().rstrip(".")
    except (dpkt.UnpackError, IndexError, ValueError, UnicodeDecodeError):
        return ""  # not a well-formed DNS query: no name (the packet still counts as DNS traffic)


def dns_queries(path: str | Path, wanted: Collection[int] | None = None) -> dict[int, str]:
    """``{packet number: queried name}`` of the DNS queries in a capture.

    Parameters
    ----------
    path:
        A pcap or pcapng file (``.gz``/``.xz``/``.bz2`` too).
    wanted:
        Only these packet numbers are parsed (see :func:`query_packets`); None parses every
        packet. Records that are not well-formed DNS queries give no name, and a broken tail
        ends the walk (the packet reader reports it).

    Raises
    ------
    ParseError
        When the file is missing or empty, or is not a pcap/pcapng capture.

    Examples
    --------
    >>> import dpkt, tempfile, os
    >>> q = dpkt.dns.DNS(id=1, qd=[dpkt.dns.DNS.Q(name="cam.example.com")])
    >>> udp = dpkt.udp.UDP(sport=5000, dport=53, data=bytes(q)); udp.ulen = len(udp)
    >>> ip = dpkt.ip.IP(src=bytes(4), dst=bytes(4), p=17, data=udp); ip.len = len(ip)
    >>> path = os.path.join(tempfile.mkdtemp(), "q.pcap")
    >>> with open(path, "wb") as fh:
    ...     w = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_RAW); w.writepkt(bytes(ip), ts=1.0)
    >>> dns_queries(path)
    {1: 'cam.example.com'}
    """
    want = None if wanted is None else set(wanted)
    if want is not None and not want:
        return {}
    out: dict[int, str] = {}
    with open_binary(path) as fh:
        head = fh.read(4)
        if fh.seekable():
            fh.seek(0)
        stream = fh if fh.seekable() else _Prefixed(head, fh)
        try:
            reader = dpkt.pcapng.Reader(stream) if head == _PCAPNG_MAGIC else dpkt.pcap.Reader(stream)
        except (ValueError, dpkt.Error, struct.error) as exc:
            raise ParseError(f"not a pcap or pcapng file ({exc})", source=str(path)) from None
        linktype = int(reader.datalink())
        last = max(want) if want else None
        try:
            for number, (_, buf) in enumerate(reader, start=1):
                if want is not None and number not in want:
                    if last is not None and number > last:
                        break
                    continue
                name = _qname(bytes(buf), linktype)
                if name:
                    out[number] = name
        except (ValueError, dpkt.Error, struct.error, EOFError, ParseError):
            pass  # a broken tail: the packet reader reports it (dead letters); names so far stand
    return out


class _Prefixed:
    """A non-seekable stream with its first bytes put back (dpkt reads the header itself)."""

    def __init__(self, head: bytes, rest: object) -> None:
        self._head = head
        self._rest = rest

    def read(self, n: int = -1) -> bytes:
        got = self._head[:n] if n >= 0 else self._head
        self._head = self._head[len(got) :]
        if n < 0:
            return got + self._rest.read()  # type: ignore[attr-defined, no-any-return]
        if len(got) < n:
            got += self._rest.read(n - len(got))  # type: ignore[attr-defined]
        return got
