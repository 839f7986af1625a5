"""The low-level packet path: a pcap or pcapng file as a stream of numpy arrays, chunk by chunk.

:func:`iter_packet_arrays` reads a few MB of the (possibly compressed) file at a time, finds the
records with a compiled scanner and decodes their headers with a compiled parser
(:mod:`misuse.ingest.pcap_kernels`). Each chunk comes out as one :class:`PacketArrays`: one
numpy array per field, one element per packet, no Python object per packet. Memory stays at a
few chunks whatever the file size. This is the path for per-packet feature extractors that
must keep up with millions of packets; :class:`~misuse.ingest.pcap.PcapReader` builds event
frames on top of it.

Example
-------
>>> import numpy as np
>>> from misuse.ingest.pcap_stream import iter_packet_arrays
>>> def count_syns(path):  # doctest: +SKIP
...     total = 0
...     for arr in iter_packet_arrays(path):
...         total += int(np.count_nonzero((arr.ip_proto == 6) & (arr.tcp_flags & 0x12 == 0x02)))
...     return total
"""

from __future__ import annotations

import lzma
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO

import numpy as np

from misuse.errors import ParseError
from misuse.ingest import pcap_kernels as kern
from misuse.ingest.base import DeadLetter, open_binary

DEFAULT_CHUNK = 4 << 20
MAX_SNAPLEN = 262_144  # libpcap's largest snap length
MAX_BUFFER = 64 << 20  # largest record/block we are willing to hold (a corrupt length beyond is an error)
_CLASSIC = {
    b"\xd4\xc3\xb2\xa1": (False, 1000),
    b"\xa1\xb2\xc3\xd4": (True, 1000),
    b"\x4d\x3c\xb2\xa1": (False, 1),
    b"\xa1\xb2\x3c\x4d": (True, 1),
}
_NG_SHB = b"\x0a\x0d\x0d\x0a"
_READ_PIECE = 256 << 10
_READ_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError)


@dataclass
class PacketArrays:
    """The packets of one chunk, one numpy array per field (all the same length).

    ``-1`` marks a field that does not apply or was not captured (no TCP header, no VLAN...).

    Attributes
    ----------
    index:
        1-based packet number in the file (Wireshark's frame number); records set aside as
        bad keep their number, so numbers can have gaps.
    ts_ns:
        Timestamp, nanoseconds since the Unix epoch (int64).
    wire_len, cap_len:
        Length on the wire and captured length (int64).
    linktype, iface:
        Link-layer type (LINKTYPE_* number) and interface number (0 for classic pcap).
    src_mac, dst_mac, has_mac:
        48-bit MAC addresses as integers (uint64) and whether the link layer carries them
        (Linux cooked captures only carry the source; ARP's sender address is used when the
        link layer has none).
    eth_type, vlan:
        EtherType after any 802.1Q/QinQ tags, and the outer VLAN id.
    l3:
        Network layer: 0 none, 1 ARP, 4 IPv4, 6 IPv6 (``pcap_kernels.L3_*``).
    src_hi, src_lo, dst_hi, dst_lo:
        Addresses as two uint64 halves. IPv4 (and ARP sender/target protocol addresses):
        ``*_hi == 0`` and ``*_lo`` is the 32-bit address. IPv6: high and low 64 bits.
    ip_proto, ttl:
        IP protocol (IPv6 next header of the fixed header) and TTL / hop limit.
    src_port, dst_port, tcp_flags, tcp_seq:
        TCP/UDP ports, TCP flag byte and sequence number.
    payload_len:
        Bytes after the TCP/UDP/ICMP header according to the IP length fields (the IP
        payload for other IP protocols).
    icmp_type, icmp_code:
        ICMP / ICMPv6 type and code.
    """

    index: np.ndarray
    ts_ns: np.ndarray
    wire_len: np.ndarray
    cap_len: np.ndarray
    linktype: np.ndarray
    iface: np.ndarray
    src_mac: np.ndarray
    dst_mac: np.ndarray
    has_mac: np.ndarray
    eth_type: np.ndarray
    vlan: np.ndarray
    l3: np.ndarray
    src_hi: np.ndarray
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    ip_proto: np.ndarray
    ttl: np.ndarray
    src_port: np.ndarray
    dst_port: np.ndarray
    tcp_flags: np.ndarray
    tcp_seq: np.ndarray
    payload_len: np.ndarray
    icmp_type: np.ndarray
    icmp_code: np.ndarray

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def take(self, sel: np.ndarray | slice) -> PacketArrays:
        """The packets selected by a boolean mask, an index array or a slice."""
        return PacketArrays(**{f.name: getattr(self, f.name)[sel] for f in fields(self)})

    @staticmethod
    def concat(parts: list[PacketArrays]) -> PacketArrays:
        """Join chunks end to end."""
        if len(parts) == 1:
            return parts[0]
        return PacketArrays(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(PacketArrays)}
        )


def _decode(
    buf: np.ndarray,
    index: np.ndarray,
    off: np.ndarray,
    cap: np.ndarray,
    wire: np.ndarray,
    ts: np.ndarray,
    link: np.ndarray,
    iface: np.ndarray,
) -> PacketArrays:
    n = off.shape[0]
    i64 = np.int64
    out = PacketArrays(
        index=index,
        ts_ns=ts.copy(),
        wire_len=wire.copy(),
        cap_len=cap.copy(),
        linktype=link.copy(),
        iface=iface.copy(),
        src_mac=np.empty(n, np.int64),
        dst_mac=np.empty(n, np.int64),
        has_mac=np.empty(n, np.bool_),
        eth_type=np.empty(n, np.int32),
        vlan=np.empty(n, np.int32),
        l3=np.empty(n, np.int8),
        src_hi=np.empty(n, np.uint64),
        src_lo=np.empty(n, np.uint64),
        dst_hi=np.empty(n, np.uint64),
        dst_lo=np.empty(n, np.uint64),
        ip_proto=np.empty(n, np.int16),
        ttl=np.empty(n, np.int16),
        src_port=np.empty(n, np.int32),
        dst_port=np.empty(n, np.int32),
        tcp_flags=np.empty(n, np.int16),
        tcp_seq=np.empty(n, i64),
        payload_len=np.empty(n, i64),
        icmp_type=np.empty(n, np.int16),
        icmp_code=np.empty(n, np.int16),
    )
    kern.parse_packets(
        buf,
        off,
        cap,
        link,
        out.src_mac,
        out.dst_mac,
        out.has_mac,
        out.eth_type,
        out.vlan,
        out.l3,
        out.src_hi,
        out.src_lo,
        out.dst_hi,
        out.dst_lo,
        out.ip_proto,
        out.ttl,
        out.src_port,
        out.dst_port,
        out.tcp_flags,
        out.tcp_seq,
        out.payload_len,
        out.icmp_type,
        out.icmp_code,
    )
    return out


class _ReadError(Exception):
    """The (decompressed) byte stream broke off with an error."""


class _Chunks:
    """A growable byte buffer over a file: ``buf[:n]`` holds file bytes from offset ``base``."""

    def __init__(self, fh: IO[bytes], size: int, head: bytes) -> None:
        self.fh = fh
        self.buf = np.empty(max(size, len(head), 64), np.uint8)
        self.buf[: len(head)] = np.frombuffer(head, np.uint8)
        self.n = len(head)
        self.base = 0
        self.eof = False

    def fill(self) -> None:
        view = memoryview(self.buf)  # type: ignore[arg-type]
        while self.n < self.buf.shape[0] and not self.eof:
            try:
                # modest pieces: a decompressor that fails mid-read loses at most one piece
                piece = view[self.n : min(self.n + _READ_PIECE, self.buf.shape[0])]
                got = self.fh.readinto(piece)  # type: ignore[attr-defined]
            except _READ_ERRORS as exc:
                self.eof = True
                raise _ReadError(f"{type(exc).__name__}: {exc}") from None
            except ParseError as exc:  # open_binary's own report of a corrupt compressed stream
                self.eof = True
                raise _ReadError(exc.reason) from None
            if not got:
                self.eof = True
            else:
                self.n += got

    def consume(self, k: int) -> None:
        rest = self.n - k
        if k:
            self.buf[:rest] = self.buf[k : self.n]
        self.n = rest
        self.base += k

    def grow(self) -> bool:
        if self.buf.shape[0] >= MAX_BUFFER:
            return False
        bigger = np.empty(min(self.buf.shape[0] * 2, MAX_BUFFER), np.uint8)
        bigger[: self.n] = self.buf[: self.n]
        self.buf = bigger
        return True


def _read_head(fh: IO[bytes], n: int, name: str) -> bytes:
    try:
        return fh.read(n)
    except _READ_ERRORS as exc:
        raise ParseError(f"cannot read the file ({type(exc).__name__}: {exc})", source=name) from None


def iter_packet_arrays(
    path: str | Path,
    *,
    chunk_bytes: int = DEFAULT_CHUNK,
    dead: DeadLetter | None = None,
) -> Iterator[PacketArrays]:
    """Stream a pcap or pcapng file (optionally .gz/.xz/.bz2) as :class:`PacketArrays` per chunk.

    Parameters
    ----------
    path:
        The capture file.
    chunk_bytes:
        How many bytes to read and decode at a time (memory use is a small multiple of this).
    dead:
        Where records that cannot be read are set aside (truncated last record, impossible
        lengths); a fresh in-memory :class:`DeadLetter` when None.

    Raises
    ------
    ParseError
        When the file is missing or empty, or is not a pcap/pcapng file at all.
    """
    dead = dead if dead is not None else DeadLetter()
    name = str(path)
    with open_binary(path) as fh:
        head = _read_head(fh, 24, name)
        if not head:
            raise ParseError("file is empty after decompression", source=name)
        magic = head[:4]
        if magic in _CLASSIC:
            yield from _classic(fh, head, name, chunk_bytes, dead)
        elif magic == _NG_SHB:
            yield from _pcapng(fh, head, name, chunk_bytes, dead)
        else:
            value = int.from_bytes(magic.ljust(4, b"\0"), "big")
            raise ParseError(f"not a pcap or pcapng file (magic 0x{value:08x})", source=name)


def _classic(fh: IO[bytes], head: bytes, name: str, chunk: int, dead: DeadLetter) -> Iterator[PacketArrays]:
    if len(head) < 24:
        raise ParseError(f"truncated pcap file header ({len(head)} of 24 bytes)", source=name)
    be, frac_ns = _CLASSIC[head[:4]]
    order = ">" if be else "<"
    _major, _minor, _zone, _sig, snaplen, linktype = struct.unpack(order + "HHiIII", head[4:24])
    linktype &= 0x0FFFFFFF  # the upper bits may carry FCS length flags
    max_cap = max(MAX_SNAPLEN, min(snaplen, MAX_BUFFER // 2))
    src = _Chunks(fh, chunk, b"")
    src.base = 24
    index = 1
    slots = 0
    while True:
        try:
            src.fill()
        except _ReadError as exc:
            dead.add(name, index, f"byte {src.base + src.n}: reading stopped, {exc}")
        if slots < src.buf.shape[0] // 16 + 1:
            slots = src.buf.shape[0] // 16 + 1
            off = np.empty(slots, np.int64)
            cap = np.empty(slots, np.int64)
            wire = np.empty(slots, np.int64)
            ts = np.empty(slots, np.int64)
        count, used, status = kern.scan_classic(src.buf, src.n, be, frac_ns, max_cap, off, cap, wire, ts)
        if count:
            link = np.full(count, linktype, np.int64)
            numbers = np.arange(index, index + count, dtype=np.int64)
            yield _decode(src.buf, numbers, off[:count], cap[:count], wire[:count], ts[:count], link, link * 0)
            index += count
        src.consume(used)
        if status == kern.CORRUPT:
            hdr = bytes(src.buf[:16])
            caplen = struct.unpack(order + "I", hdr[8:12])[0]
            dead.add(
                name,
                index,
                f"byte {src.base}: corrupt record header (caplen {caplen} > {max_cap}); "
                "the rest of the file cannot be resynchronised and is skipped",
                hdr,
            )
            return
        if status == kern.OUT_FULL:
            continue
        if src.eof:
            if src.n:
                dead.add(name, index, _truncated_reason(src.buf[: src.n], src.base, order), bytes(src.buf[:64]))
            return
        if used == 0 and src.n == src.buf.shape[0] and not src.grow():
            dead.add(name, index, f"byte {src.base}: record larger than {MAX_BUFFER} bytes; file skipped")
            return


def _truncated_reason(rest: np.ndarray, at: int, order: str) -> str:
    if rest.shape[0] < 16:
        return f"byte {at}: truncated record header ({rest.shape[0]} of 16 bytes)"
    caplen = struct.unpack(order + "I", bytes(rest[8:12]))[0]
    return f"byte {at}: truncated record (caplen {caplen}, only {rest.shape[0] - 16} bytes left)"


@dataclass
class _Interfaces:
    """The interface table of the current pcapng section."""

    link: list[int]
    snap: list[int]
    mul: list[int]
    div: list[int]
    off: list[int]

    def arrays(self) -> tuple[np.ndarray, ...]:
        # numba wants non-empty typed arrays; a dummy slot is never read when n_if == 0
        return tuple(np.asarray(v or [0], np.int64) for v in (self.link, self.snap, self.mul, self.div, self.off))


def _tsresol(code: int) -> tuple[int, int]:
    """(mul, div) turning ticks of an ``if_tsresol`` value into nanoseconds."""
    exp = code & 0x7F
    if code & 0x80:  # power of two
        return (1_000_000_000, 1 << exp) if exp < 62 else (1, 1)
    if exp <= 9:
        return 10 ** (9 - exp), 1
    return 1, 10 ** min(exp - 9, 18)


def _idb(body: bytes, order: str, at: int) -> tuple[int, int, int, int, int]:
    """Parse an interface description block body: (link, snap, mul, div, offset_ns)."""
    if len(body) < 8:
        raise ValueError(f"byte {at}: interface description block too short ({len(body)} bytes)")
    link, _res, snap = struct.unpack(order + "HHI", body[:8])
    mul, div, off_ns = 1000, 1, 0  # default resolution: microseconds
    p = 8
    while p + 4 <= len(body):
        code, length = struct.unpack(order + "HH", body[p : p + 4])
        if code == 0:
            break
        value = body[p + 4 : p + 4 + length]
        if code == 9 and length >= 1:
            mul, div = _tsresol(value[0])
        elif code == 14 and length >= 8:
            seconds = struct.unpack(order + "q", value[:8])[0]
            off_ns = max(-(2**62), min(seconds * 1_000_000_000, 2**62))  # a corrupt offset must not overflow
        p += 4 + (length + 3) // 4 * 4
    return link, snap, mul, div, off_ns


def _pcapng(fh: IO[bytes], head: bytes, name: str, chunk: int, dead: DeadLetter) -> Iterator[PacketArrays]:
    if len(head) < 12:
        raise ParseError(f"truncated pcapng section header ({len(head)} bytes)", source=name)
    bom = head[8:12]
    if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
        raise ParseError(f"pcapng section header has a bad byte-order magic 0x{bom.hex()}", source=name)
    be = bom == b"\x1a\x2b\x3c\x4d"
    src = _Chunks(fh, chunk, head)
    ifs = _Interfaces([], [], [], [], [])
    if_link, if_snap, if_mul, if_div, if_off = ifs.arrays()
    index = 1
    last_ts = 0
    slots = 0
    while True:
        try:
            src.fill()
        except _ReadError as exc:
            dead.add(name, index, f"byte {src.base + src.n}: reading stopped, {exc}")
        if slots < src.buf.shape[0] // 16 + 1:
            slots = src.buf.shape[0] // 16 + 1
            off = np.empty(slots, np.int64)
            cap = np.empty(slots, np.int64)
            wire = np.empty(slots, np.int64)
            ts = np.empty(slots, np.int64)
            link = np.empty(slots, np.int64)
            iface = np.empty(slots, np.int64)
            bad = np.empty(slots, np.int8)
        pos = 0
        k = 0
        stop = ""
        while True:
            k, pos, status, last_ts = kern.scan_ng(
                src.buf, pos, src.n, k, be, MAX_BUFFER,
                len(ifs.link), if_link, if_snap, if_mul, if_div, if_off, last_ts,
                off, cap, wire, ts, link, iface, bad,
            )  # fmt: skip
            if status != kern.NG_META:
                break
            try:
                meta = _meta_block(src, pos, be, ifs)
            except ValueError as exc:
                stop = str(exc)
                break
            if meta is None:
                status = kern.NEED_MORE
                break
            pos, be, ifs = meta
            if_link, if_snap, if_mul, if_div, if_off = ifs.arrays()
        if k:
            yield from _emit_ng(src.buf, index, k, off, cap, wire, ts, link, iface, bad, name, src.base, dead)
            index += k
        src.consume(pos)
        if stop:
            dead.add(name, index, stop + "; the rest of the file is skipped")
            return
        if status == kern.CORRUPT:
            hdr = bytes(src.buf[:12])
            dead.add(
                name,
                index,
                f"byte {src.base}: corrupt block header ({hdr[:8].hex()}); "
                "the rest of the file cannot be resynchronised and is skipped",
                hdr,
            )
            return
        if status == kern.OUT_FULL:
            continue
        if src.eof:
            if src.n:
                dead.add(
                    name,
                    index,
                    f"byte {src.base}: truncated block ({src.n} bytes left at the end of the file)",
                    bytes(src.buf[:64]),
                )
            return
        if pos == 0 and src.n == src.buf.shape[0] and not src.grow():
            dead.add(name, index, f"byte {src.base}: block larger than {MAX_BUFFER} bytes; file skipped")
            return


def _meta_block(src: _Chunks, pos: int, be: bool, ifs: _Interfaces) -> tuple[int, bool, _Interfaces] | None:
    """Read the SHB or IDB at ``pos``: the next position, byte order and interfaces, or None when
    the block is not complete in the buffer yet. Raises ValueError when the block is malformed."""
    buf = src.buf
    at = src.base + pos
    if pos + 12 > src.n:
        if src.eof:
            raise ValueError(f"byte {at}: truncated block header")
        return None
    raw = bytes(buf[pos : pos + 12])
    if raw[:4] == _NG_SHB:
        bom = raw[8:12]
        if bom == b"\x4d\x3c\x2b\x1a":
            be = False
        elif bom == b"\x1a\x2b\x3c\x4d":
            be = True
        else:
            raise ValueError(f"byte {at}: section header with bad byte-order magic 0x{bom.hex()}")
        ifs = _Interfaces([], [], [], [], [])
    order = ">" if be else "<"
    blen = struct.unpack(order + "I", raw[4:8])[0]
    if blen < 12 or blen % 4 or blen > MAX_BUFFER:
        raise ValueError(f"byte {at}: impossible block length {blen}")
    if pos + blen > src.n:
        if src.eof:
            raise ValueError(f"byte {at}: truncated block ({src.n - pos} of {blen} bytes)")
        return None
    body = bytes(buf[pos + 8 : pos + blen - 4])
    if raw[:4] != _NG_SHB:
        try:
            entry = _idb(body, order, at)
        except struct.error as exc:
            raise ValueError(f"byte {at}: malformed interface description block ({exc})") from None
        for lst, v in zip((ifs.link, ifs.snap, ifs.mul, ifs.div, ifs.off), entry, strict=True):
            lst.append(v)
    return pos + blen, be, ifs


_BAD_REASONS = {
    kern.BAD_CAPLEN: "captured length larger than its block",
    kern.BAD_IFACE: "interface id not described in this section",
}


def _emit_ng(
    buf: np.ndarray,
    first: int,
    k: int,
    off: np.ndarray,
    cap: np.ndarray,
    wire: np.ndarray,
    ts: np.ndarray,
    link: np.ndarray,
    iface: np.ndarray,
    bad: np.ndarray,
    name: str,
    base: int,
    dead: DeadLetter,
) -> Iterator[PacketArrays]:
    numbers = np.arange(first, first + k, dtype=np.int64)
    flags = bad[:k]
    if not flags.any():
        yield _decode(buf, numbers, off[:k], cap[:k], wire[:k], ts[:k], link[:k], iface[:k])
        return
    for j in np.flatnonzero(flags):
        start = int(off[j]) - 28
        dead.add(
            name,
            int(numbers[j]),
            f"byte {base + start}: {_BAD_REASONS.get(int(flags[j]), 'bad packet block')} "
            f"(interface {int(iface[j])}, caplen field {int(cap[j])})",
            bytes(buf[start : start + 32]),
        )
    good = flags == 0
    if good.any():
        yield _decode(
            buf, numbers[good], off[:k][good], cap[:k][good], wire[:k][good], ts[:k][good],
            link[:k][good], iface[:k][good],
        )  # fmt: skip
