"""Compiled (numba) inner loops of the pcap / pcapng reader.

Three kernels work on one chunk of the file held in a ``uint8`` buffer:

* :func:`scan_classic` walks classic pcap record headers and writes, per packet, the offset
  of its bytes in the buffer, captured and wire length and the timestamp in nanoseconds.
* :func:`scan_ng` does the same for pcapng blocks (EPB, SPB, OPB), resolving each packet's
  interface to a link type and a timestamp resolution; it stops at section and interface
  description blocks so that Python can read their options.
* :func:`parse_packets` decodes link, network and transport headers of every packet found by
  a scan into flat numeric arrays.

No Python object is made per packet. The kernels are cached on disk (``cache=True``), so only
the first run on a machine pays the compile time.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Status codes returned by the scanners.
NEED_MORE = 0  # the rest of the buffer holds no complete record: read more (or EOF)
OUT_FULL = 1  # the output arrays are full: hand the batch over and call again
CORRUPT = 2  # a record/block header is impossible: the rest of the file cannot be resynced
NG_META = 3  # pcapng: a section header or interface description block starts here

# Per-packet problems reported by scan_ng (the packet is set aside, the file goes on).
BAD_NONE = 0
BAD_CAPLEN = 1  # captured length larger than the block that holds it
BAD_IFACE = 2  # interface id not described by any IDB of the section

# Network layer codes of parse_packets' ``l3`` output.
L3_NONE = 0
L3_ARP = 1
L3_IPV4 = 4
L3_IPV6 = 6

NO_VALUE = -1


@njit(cache=True, inline="always")
def _u16(b: np.ndarray, p: int, be: bool) -> int:
    if be:
        return int((np.int64(b[p]) << 8) | np.int64(b[p + 1]))
    return int((np.int64(b[p + 1]) << 8) | np.int64(b[p]))


@njit(cache=True, inline="always")
def _u32(b: np.ndarray, p: int, be: bool) -> int:
    if be:
        return int((np.int64(b[p]) << 24) | (np.int64(b[p + 1]) << 16) | (np.int64(b[p + 2]) << 8) | np.int64(b[p + 3]))
    return int((np.int64(b[p + 3]) << 24) | (np.int64(b[p + 2]) << 16) | (np.int64(b[p + 1]) << 8) | np.int64(b[p]))


@njit(cache=True, inline="always")
def _n16(b: np.ndarray, p: int) -> int:
    return int((np.int64(b[p]) << 8) | np.int64(b[p + 1]))


@njit(cache=True, inline="always")
def _n32(b: np.ndarray, p: int) -> int:
    return int((np.int64(b[p]) << 24) | (np.int64(b[p + 1]) << 16) | (np.int64(b[p + 2]) << 8) | np.int64(b[p + 3]))


@njit(cache=True, inline="always")
def _n48(b: np.ndarray, p: int) -> int:
    return (_n16(b, p) << 32) | _n32(b, p + 2)


@njit(cache=True, inline="always")
def _n64u(b: np.ndarray, p: int) -> np.uint64:
    v = np.uint64(0)
    for i in range(8):
        v = (v << np.uint64(8)) | np.uint64(b[p + i])
    return v


@njit(cache=True)
def scan_classic(
    buf: np.ndarray,
    n: int,
    be: bool,
    frac_ns: int,
    max_caplen: int,
    off_out: np.ndarray,
    cap_out: np.ndarray,
    wire_out: np.ndarray,
    ts_out: np.ndarray,
) -> tuple[int, int, int]:
    """Walk classic pcap records in ``buf[:n]``.

    Parameters
    ----------
    buf, n:
        The chunk and how many of its bytes are valid; ``buf[0]`` starts a record.
    be:
        True for a big-endian file.
    frac_ns:
        Nanoseconds per unit of the sub-second field (1000 for microsecond files, 1 for nanosecond).
    max_caplen:
        Largest captured length taken as possible; a larger one means a corrupt header.
    off_out, cap_out, wire_out, ts_out:
        Outputs: packet data offset in ``buf``, captured length, wire length, timestamp (ns).

    Returns
    -------
    (count, consumed, status)
        Packets written, bytes fully consumed (the next record starts there) and a status code.
    """
    pos = 0
    k = 0
    cap_k = off_out.shape[0]
    while True:
        if pos + 16 > n:
            return k, pos, NEED_MORE
        caplen = _u32(buf, pos + 8, be)
        if caplen > max_caplen:
            return k, pos, CORRUPT
        if pos + 16 + caplen > n:
            return k, pos, NEED_MORE
        if k >= cap_k:
            return k, pos, OUT_FULL
        off_out[k] = pos + 16
        cap_out[k] = caplen
        wire_out[k] = _u32(buf, pos + 12, be)
        ts_out[k] = _u32(buf, pos, be) * 1_000_000_000 + _u32(buf, pos + 4, be) * frac_ns
        k += 1
        pos += 16 + caplen


@njit(cache=True)
def _ng_ts(ticks: int, iface: int, if_mul: np.ndarray, if_div: np.ndarray, if_off: np.ndarray) -> int:
    mul = if_mul[iface]
    div = if_div[iface]
    if mul == 1 and div == 1:
        ns = ticks
    elif div == 1:
        ns = ticks * mul
    elif mul == 1:
        ns = ticks // div
    else:
        ns = int(np.float64(ticks) * (np.float64(mul) / np.float64(div)))
    return int(ns + if_off[iface])


@njit(cache=True)
def scan_ng(
    buf: np.ndarray,
    start: int,
    n: int,
    k0: int,
    be: bool,
    max_block: int,
    n_if: int,
    if_link: np.ndarray,
    if_snap: np.ndarray,
    if_mul: np.ndarray,
    if_div: np.ndarray,
    if_off: np.ndarray,
    last_ts: int,
    off_out: np.ndarray,
    cap_out: np.ndarray,
    wire_out: np.ndarray,
    ts_out: np.ndarray,
    link_out: np.ndarray,
    iface_out: np.ndarray,
    bad_out: np.ndarray,
) -> tuple[int, int, int, int]:
    """Walk pcapng blocks in ``buf[start:n]``, writing packets from output slot ``k0`` on.

    Interface ``i`` (``i < n_if``) has link type ``if_link[i]``, snap length ``if_snap[i]`` and
    timestamps of ``ticks * if_mul[i] / if_div[i] + if_off[i]`` nanoseconds. Simple packet
    blocks, which carry no timestamp, get the one of the packet before them (``last_ts``).
    Packets with a problem are still written, with a non-zero ``bad_out`` code.

    Returns
    -------
    (count, consumed, status, last_ts)
        Output slots used so far, offset of the next unread block, status code and the last
        timestamp seen.
    """
    pos = start
    k = k0
    cap_k = off_out.shape[0]
    while True:
        if pos + 12 > n:
            return k, pos, NEED_MORE, last_ts
        btype = _u32(buf, pos, be)
        blen = _u32(buf, pos + 4, be)
        if btype == 0x0A0D0D0A:
            return k, pos, NG_META, last_ts
        if blen < 12 or blen % 4 != 0 or blen > max_block:
            return k, pos, CORRUPT, last_ts
        if pos + blen > n:
            return k, pos, NEED_MORE, last_ts
        if _u32(buf, pos + blen - 4, be) != blen:
            return k, pos, CORRUPT, last_ts
        if btype == 1:
            return k, pos, NG_META, last_ts
        if btype == 6 or btype == 2 or btype == 3:
            if k >= cap_k:
                return k, pos, OUT_FULL, last_ts
            bad = BAD_NONE
            if btype == 3:
                hdr = 12
                iface = 0
                wire = _u32(buf, pos + 8, be) if blen >= 16 else 0
                room = blen - 16 if blen >= 16 else 0
                caplen = wire
                if n_if > 0 and 0 < if_snap[0] < caplen:
                    caplen = if_snap[0]
                if caplen > room:
                    caplen = room
                ts = last_ts
            else:
                hdr = 28
                if btype == 6:
                    iface = _u32(buf, pos + 8, be)
                else:
                    iface = _u16(buf, pos + 8, be)
                if blen < 32:
                    caplen = 0
                    wire = 0
                    bad = BAD_CAPLEN
                    ts = last_ts
                else:
                    caplen = _u32(buf, pos + 20, be)
                    wire = _u32(buf, pos + 24, be)
                    if caplen > blen - 32:
                        bad = BAD_CAPLEN  # caplen kept for the report; the packet is not parsed
                    if iface >= n_if:
                        if bad == BAD_NONE:
                            bad = BAD_IFACE
                        ts = last_ts
                    else:
                        ticks = (_u32(buf, pos + 12, be) << 32) | _u32(buf, pos + 16, be)
                        ts = _ng_ts(ticks, iface, if_mul, if_div, if_off)
                        last_ts = ts
            off_out[k] = pos + hdr
            cap_out[k] = caplen
            wire_out[k] = wire
            ts_out[k] = ts
            link_out[k] = if_link[iface] if iface < n_if else -1
            iface_out[k] = iface
            bad_out[k] = bad
            k += 1
        pos += blen


@njit(cache=True)
def parse_packets(
    buf: np.ndarray,
    off: np.ndarray,
    cap: np.ndarray,
    link: np.ndarray,
    src_mac: np.ndarray,
    dst_mac: np.ndarray,
    has_mac: np.ndarray,
    eth_type: np.ndarray,
    vlan: np.ndarray,
    l3: np.ndarray,
    src_hi: np.ndarray,
    src_lo: np.ndarray,
    dst_hi: np.ndarray,
    dst_lo: np.ndarray,
    ip_proto: np.ndarray,
    ttl: np.ndarray,
    src_port: np.ndarray,
    dst_port: np.ndarray,
    tcp_flags: np.ndarray,
    tcp_seq: np.ndarray,
    payload_len: np.ndarray,
    icmp_type: np.ndarray,
    icmp_code: np.ndarray,
) -> None:
    """Decode the headers of packets ``i`` at ``buf[off[i]:off[i] + cap[i]]`` of link type ``link[i]``.

    Writes one value per packet into each output array; ``-1`` (``NO_VALUE``) where a field does
    not apply or was not captured. IPv4 and ARP addresses go to ``*_lo`` with ``*_hi = 0``;
    IPv6 addresses are split into their high and low 64 bits.
    """
    for i in range(off.shape[0]):
        p = off[i]
        end = p + cap[i]
        lt = link[i]
        src_mac[i] = 0
        dst_mac[i] = 0
        has_mac[i] = False
        vlan[i] = NO_VALUE
        l3[i] = L3_NONE
        src_hi[i] = 0
        src_lo[i] = 0
        dst_hi[i] = 0
        dst_lo[i] = 0
        ip_proto[i] = NO_VALUE
        ttl[i] = NO_VALUE
        src_port[i] = NO_VALUE
        dst_port[i] = NO_VALUE
        tcp_flags[i] = NO_VALUE
        tcp_seq[i] = NO_VALUE
        payload_len[i] = NO_VALUE
        icmp_type[i] = NO_VALUE
        icmp_code[i] = NO_VALUE
        et = NO_VALUE
        if lt == 1:  # Ethernet
            if p + 14 <= end:
                dst_mac[i] = _n48(buf, p)
                src_mac[i] = _n48(buf, p + 6)
                has_mac[i] = True
                et = _n16(buf, p + 12)
                p += 14
        elif lt == 113:  # Linux cooked capture v1
            if p + 16 <= end:
                if _n16(buf, p + 2) == 1 and _n16(buf, p + 4) == 6:
                    src_mac[i] = _n48(buf, p + 6)
                    has_mac[i] = True
                et = _n16(buf, p + 14)
                p += 16
        elif lt == 276:  # Linux cooked capture v2
            if p + 20 <= end:
                if _n16(buf, p + 8) == 1 and buf[p + 11] == 6:
                    src_mac[i] = _n48(buf, p + 12)
                    has_mac[i] = True
                et = _n16(buf, p)
                p += 20
        elif lt == 101 or lt == 12 or lt == 14:  # raw IP, version from the first nibble
            if p < end:
                v = buf[p] >> 4
                if v == 4:
                    et = 0x0800
                elif v == 6:
                    et = 0x86DD
        elif lt == 228:
            et = 0x0800
        elif lt == 229:
            et = 0x86DD
        elif (lt == 0 or lt == 108) and p + 4 <= end:
            # BSD loopback: address family in host (0) or network (108) byte order
            fam = _u32(buf, p, lt == 108)
            if fam > 0xFFFF:
                fam = _u32(buf, p, lt != 108)
            if fam == 2:
                et = 0x0800
            elif fam == 24 or fam == 28 or fam == 30 or fam == 10:
                et = 0x86DD
            p += 4
        while (et == 0x8100 or et == 0x88A8 or et == 0x9100) and p + 4 <= end:
            if vlan[i] == NO_VALUE:
                vlan[i] = _n16(buf, p) & 0x0FFF
            et = _n16(buf, p + 2)
            p += 4
        eth_type[i] = et
        l4 = -1
        l4_len = 0
        proto = -1
        if et == 0x0800 and p + 20 <= end and (buf[p] >> 4) == 4:
            ihl = (buf[p] & 0x0F) * 4
            if ihl >= 20:
                l3[i] = L3_IPV4
                total = _n16(buf, p + 2)
                ttl[i] = buf[p + 8]
                proto = buf[p + 9]
                ip_proto[i] = proto
                src_lo[i] = np.uint64(_n32(buf, p + 12))
                dst_lo[i] = np.uint64(_n32(buf, p + 16))
                frag = _n16(buf, p + 6) & 0x1FFF
                if total < ihl:  # e.g. segmentation offload writes 0: trust the capture
                    total = end - p if end - p >= ihl else ihl
                if frag == 0 and p + ihl <= end:
                    l4 = p + ihl
                    l4_len = total - ihl
                else:
                    payload_len[i] = total - ihl
        elif et == 0x86DD and p + 40 <= end and (buf[p] >> 4) == 6:
            l3[i] = L3_IPV6
            proto = buf[p + 6]
            ip_proto[i] = proto
            ttl[i] = buf[p + 7]
            src_hi[i] = _n64u(buf, p + 8)
            src_lo[i] = _n64u(buf, p + 16)
            dst_hi[i] = _n64u(buf, p + 24)
            dst_lo[i] = _n64u(buf, p + 32)
            l4 = p + 40
            l4_len = _n16(buf, p + 4)
        elif et == 0x0806 and p + 8 <= end:
            hlen = buf[p + 4]
            plen = buf[p + 5]
            if hlen == 6 and plen == 4 and p + 28 <= end:
                l3[i] = L3_ARP
                src_lo[i] = np.uint64(_n32(buf, p + 14))
                dst_lo[i] = np.uint64(_n32(buf, p + 24))
                if not has_mac[i]:
                    src_mac[i] = _n48(buf, p + 8)
                    has_mac[i] = True
        if l4 >= 0:
            if proto == 6 and l4 + 14 <= end:
                src_port[i] = _n16(buf, l4)
                dst_port[i] = _n16(buf, l4 + 2)
                tcp_seq[i] = _n32(buf, l4 + 4)
                tcp_flags[i] = buf[l4 + 13]
                payload_len[i] = l4_len - (buf[l4 + 12] >> 4) * 4
            elif proto == 17 and l4 + 4 <= end:
                src_port[i] = _n16(buf, l4)
                dst_port[i] = _n16(buf, l4 + 2)
                payload_len[i] = l4_len - 8
            elif (proto == 1 or proto == 58) and l4 + 2 <= end:
                icmp_type[i] = buf[l4]
                icmp_code[i] = buf[l4 + 1]
                payload_len[i] = l4_len - 8
            else:
                payload_len[i] = l4_len
            if payload_len[i] < 0:
                payload_len[i] = 0
