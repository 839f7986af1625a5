"""PcapReader and the low-level packet arrays: tiny captures written here, plus real captures."""

from __future__ import annotations

import bz2
import gzip
import lzma
import math
import os
import re
import socket
import struct
import tempfile
from pathlib import Path

import dpkt
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misuse.errors import InvalidParameterError, ParseError
from misuse.events import BASE_COLUMNS, normalize_frame
from misuse.ingest.base import DeadLetter
from misuse.ingest.pcap import PcapReader
from misuse.ingest.pcap_stream import iter_packet_arrays

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
TS = 1_700_000_000


# ---------------------------------------------------------------- packet and file builders


def ipv4(src: str = "10.0.0.1", dst: str = "10.0.0.2", l4: object = None, ttl: int = 64) -> bytes:
    proto = {dpkt.tcp.TCP: 6, dpkt.udp.UDP: 17, dpkt.icmp.ICMP: 1}.get(type(l4), 0)
    pkt = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, ttl=ttl, data=l4 or b"")
    pkt.len = len(bytes(pkt))
    return bytes(pkt)


def tcp(sport: int = 40000, dport: int = 80, flags: int = 0x02, seq: int = 7, payload: bytes = b"") -> object:
    return dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=seq, data=payload)


def udp(sport: int = 5000, dport: int = 53, payload: bytes = b"") -> object:
    return dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(payload), data=payload)


def ipv6(src: str = "2001:db8::1", dst: str = "2001:db8::2", payload: bytes = b"", nxt: int = 17) -> bytes:
    hdr = struct.pack("!IHBB", 6 << 28, len(payload), nxt, 33)
    return hdr + socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + payload


def ether(l3: bytes, etype: int = 0x0800, tags: tuple[int, ...] = ()) -> bytes:
    out = MAC_B + MAC_A
    for i, vid in enumerate(tags):
        out += struct.pack("!HH", 0x88A8 if i == 0 and len(tags) > 1 else 0x8100, vid)
    return out + struct.pack("!H", etype) + l3


def arp(sender: str = "10.0.0.1", target: str = "10.0.0.9") -> bytes:
    head = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
    return head + MAC_A + socket.inet_aton(sender) + bytes(6) + socket.inet_aton(target)


def write_pcap(
    path: Path,
    packets: list[bytes],
    linktype: int = 1,
    *,
    be: bool = False,
    nsec: bool = False,
    wire_extra: int = 0,
) -> Path:
    """A classic pcap, written with struct so byte order and resolution can be chosen."""
    o = ">" if be else "<"
    magic = 0xA1B23C4D if nsec else 0xA1B2C3D4
    with open(path, "wb") as fh:
        fh.write(struct.pack(o + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype))
        for i, pkt in enumerate(packets):
            frac = 123_456_789 if nsec else 123_456
            fh.write(struct.pack(o + "IIII", TS + i, frac, len(pkt), len(pkt) + wire_extra) + pkt)
    return path


def ng_block(btype: int, body: bytes, o: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(o + "II", btype, n) + body + struct.pack(o + "I", n)


def ng_shb(o: str = "<") -> bytes:
    return ng_block(0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1), o)


def ng_idb(linktype: int, tsresol: int | None = None, o: str = "<") -> bytes:
    opts = b""
    if tsresol is not None:
        opts = struct.pack(o + "HHB3x", 9, 1, tsresol) + struct.pack(o + "HH", 0, 0)
    return ng_block(1, struct.pack(o + "HHI", linktype, 0, 0) + opts, o)


def ng_epb(iface: int, ticks: int, pkt: bytes, o: str = "<", caplen: int | None = None) -> bytes:
    cap = len(pkt) if caplen is None else caplen
    return ng_block(6, struct.pack(o + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, cap, len(pkt)) + pkt, o)


def read(path: Path, **kw: object) -> tuple[pd.DataFrame, DeadLetter]:
    dead = DeadLetter()
    frame = PcapReader(**kw).read(path, dead=dead)  # type: ignore[arg-type]
    return frame, dead


def nan(x: object) -> bool:
    return isinstance(x, float) and math.isnan(x)


# ---------------------------------------------------------------- field values


def test_ethernet_tcp_fields(tmp_path: Path) -> None:
    payload = b"x" * 11
    pkt = ether(ipv4("192.168.1.5", "8.8.4.4", tcp(41000, 2323, 0x02, seq=0x08080404, payload=payload), 50))
    path = write_pcap(tmp_path / "a.pcap", [pkt])

    frame, dead = read(path)

    row = frame.iloc[0]
    assert (row.event_id, row.source, row.kind, row.label) == ("a.pcap:1", "a.pcap:1", "packet", None)
    assert (row.entity, row.peer, row.action) == ("192.168.1.5", "8.8.4.4", "telnet")
    assert row.ts == pd.Timestamp(TS, unit="s", tz="UTC") + pd.Timedelta(microseconds=123_456)
    expected = {
        "len": len(pkt), "caplen": len(pkt), "ip_proto": 6, "src_port": 41000, "dst_port": 2323,
        "tcp_flags": 2, "ttl": 50, "payload_len": 11, "tcp_seq": 0x08080404, "dst_ip_int": 0x08080404,
    }  # fmt: skip
    assert {k: row[f"num.{k}"] for k in expected} == expected
    assert row["num.tcp_seq"] == row["num.dst_ip_int"]  # the Mirai signature is visible
    assert (row["cat.src_mac"], row["cat.dst_mac"], row["cat.link"]) == (
        "02:00:00:00:00:01", "02:00:00:00:00:02", "ethernet",
    )  # fmt: skip
    assert dead.count == 0


def test_frame_is_canonical(tmp_path: Path) -> None:
    pkts = [ether(ipv4(l4=udp())), ether(arp(), 0x0806), ether(ipv6(payload=bytes(udp(1, 2))), 0x86DD)]
    frame, _ = read(write_pcap(tmp_path / "c.pcap", pkts))

    pd.testing.assert_frame_equal(frame, normalize_frame(frame))


@pytest.mark.parametrize(
    ("sport", "dport", "proto", "action"),
    [
        (50000, 1883, "tcp", "mqtt"), (8883, 50000, "tcp", "mqtt"), (50000, 22, "tcp", "ssh"),
        (50000, 8080, "tcp", "http"), (443, 50000, "tcp", "https"), (50000, 6667, "tcp", "irc"),
        (50000, 53, "udp", "dns"), (123, 123, "udp", "ntp"), (50000, 50001, "tcp", "tcp"),
        (50000, 50001, "udp", "udp"), (22, 1883, "tcp", "mqtt"),
    ],
)  # fmt: skip
def test_action_by_port(tmp_path: Path, sport: int, dport: int, proto: str, action: str) -> None:
    l4 = tcp(sport, dport) if proto == "tcp" else udp(sport, dport)
    frame, _ = read(write_pcap(tmp_path / "p.pcap", [ether(ipv4(l4=l4))]))

    assert frame.action.tolist() == [action]


def test_udp_icmp_and_non_ip(tmp_path: Path) -> None:
    icmp = dpkt.icmp.ICMP(type=8, code=0, data=dpkt.icmp.ICMP.Echo(id=1, seq=1, data=b"abcd"))
    pkts = [
        ether(ipv4(l4=udp(5353, 5353, b"hello"))),
        ether(ipv4(l4=icmp)),
        ether(b"\x01" * 30, 0x88CC),  # LLDP: no IP, so MAC addresses are entity and peer
        ether(ipv4())[:20],  # Ethernet header and a stub of IPv4: IP fields missing
    ]
    frame, _ = read(write_pcap(tmp_path / "u.pcap", pkts))

    assert frame.action.tolist() == ["udp", "icmp", "ether:0x88cc", "ether:0x0800"]
    assert frame["num.payload_len"].tolist()[:2] == [5, 4]
    assert frame["num.src_port"].tolist()[0] == 5353
    assert nan(frame["num.src_port"].tolist()[1]) and nan(frame["num.tcp_flags"].tolist()[0])
    assert (frame.entity[2], frame.peer[2]) == ("02:00:00:00:00:01", "02:00:00:00:00:02")
    assert nan(frame["num.ttl"][3]) and frame.entity[3] == "02:00:00:00:00:01"


def test_ip_options_and_fragments(tmp_path: Path) -> None:
    opts = bytearray(ipv4("10.0.0.1", "10.0.0.2", tcp(1, 22, payload=b"ab")))
    opts[0] = 0x46  # header of 24 bytes: 4 option bytes (NOPs) before the TCP header
    opts[20:20] = b"\x01\x01\x01\x01"
    opts[2:4] = struct.pack("!H", len(opts))
    frag = bytearray(ipv4("10.0.0.1", "10.0.0.2", tcp(1, 22, payload=b"abcdefgh")))
    frag[6:8] = struct.pack("!H", 0x2000 | 3)  # a later fragment: its bytes are not a TCP header

    frame, _ = read(write_pcap(tmp_path / "o.pcap", [ether(bytes(opts)), ether(bytes(frag))]))

    assert frame["num.dst_port"][0] == 22 and frame["num.payload_len"][0] == 2
    assert nan(frame["num.dst_port"][1]) and frame["num.payload_len"][1] == 28
    assert frame.action.tolist() == ["ssh", "tcp"]


def test_events_stream_form(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "ev.pcap", [ether(ipv4(l4=tcp(dport=23)))] * 2)

    events = list(PcapReader().events(path))

    assert [e.event_id for e in events] == ["ev.pcap:1", "ev.pcap:2"]
    assert events[0].action == "telnet" and events[0].num["dst_port"] == 23
    assert "tcp_flags" in events[0].num and "icmp_type" not in events[0].num


@pytest.mark.parametrize("tags", [(5,), (100, 200)], ids=["802.1Q", "QinQ"])
def test_vlan(tmp_path: Path, tags: tuple[int, ...]) -> None:
    frame, _ = read(write_pcap(tmp_path / "v.pcap", [ether(ipv4(l4=tcp(dport=1883)), tags=tags)]))
    arrays = next(iter_packet_arrays(tmp_path / "v.pcap"))

    assert (frame.entity[0], frame.action[0], frame["num.dst_port"][0]) == ("10.0.0.1", "mqtt", 1883)
    assert (int(arrays.vlan[0]), int(arrays.eth_type[0])) == (tags[0], 0x0800)


def test_ipv6(tmp_path: Path) -> None:
    seg = bytes(tcp(40000, 443, 0x18, seq=99, payload=b"abc"))
    frame, _ = read(write_pcap(tmp_path / "6.pcap", [ether(ipv6(payload=seg, nxt=6), 0x86DD)]))

    row = frame.iloc[0]
    assert (row.entity, row.peer, row.action) == ("2001:db8::1", "2001:db8::2", "https")
    assert (row["num.ip_proto"], row["num.ttl"], row["num.payload_len"], row["num.tcp_flags"]) == (
        6,
        33,
        3,
        0x18,
    )
    assert nan(row["num.dst_ip_int"])


def test_arp(tmp_path: Path) -> None:
    frame, _ = read(write_pcap(tmp_path / "arp.pcap", [ether(arp("10.0.0.1", "10.0.0.9"), 0x0806)]))

    assert (frame.entity[0], frame.peer[0], frame.action[0]) == ("10.0.0.1", "10.0.0.9", "arp")
    assert nan(frame["num.ip_proto"][0])


def sll(l3: bytes, etype: int = 0x0800) -> bytes:
    return struct.pack("!HHH", 0, 1, 6) + MAC_A + b"\0\0" + struct.pack("!H", etype) + l3


def sll2(l3: bytes, etype: int = 0x0800) -> bytes:
    return struct.pack("!HHIHBB", etype, 0, 3, 1, 0, 6) + MAC_A + b"\0\0" + l3


@pytest.mark.parametrize(
    ("linktype", "make", "link", "src_mac"),
    [
        (113, sll, "sll", "02:00:00:00:00:01"),
        (276, sll2, "sll2", "02:00:00:00:00:01"),
        (101, lambda ip, e=0: ip, "raw", None),
        (228, lambda ip, e=0: ip, "ipv4", None),
        (229, lambda ip, e=0: ip, "ipv6", None),
        (0, lambda ip, e=0x800: struct.pack("<I", 2 if e == 0x800 else 30) + ip, "null", None),
        (0, lambda ip, e=0x800: struct.pack(">I", 2 if e == 0x800 else 30) + ip, "null", None),
        (108, lambda ip, e=0x800: struct.pack(">I", 2 if e == 0x800 else 24) + ip, "loop", None),
    ],
)
def test_link_types(tmp_path: Path, linktype: int, make: object, link: str, src_mac: str | None) -> None:
    v6 = linktype == 229
    l3 = ipv6(payload=bytes(udp(1, 123)), nxt=17) if v6 else ipv4("1.2.3.4", "5.6.7.8", tcp(dport=22))
    pkt = make(l3, 0x86DD if v6 else 0x0800)  # type: ignore[operator]

    frame, dead = read(write_pcap(tmp_path / "l.pcap", [pkt, pkt], linktype))

    expected = ("2001:db8::1", "ntp") if v6 else ("1.2.3.4", "ssh")
    assert (frame.entity[0], frame.action[0], frame["cat.link"][0]) == (*expected, link)
    assert frame["cat.src_mac"][0] == src_mac and frame["cat.dst_mac"][0] is None
    assert len(frame) == 2 and dead.count == 0


def test_raw_ipv6_by_version_nibble(tmp_path: Path) -> None:
    frame, _ = read(write_pcap(tmp_path / "r6.pcap", [ipv6(payload=bytes(udp(1, 53)))], 101))

    assert (frame.entity[0], frame.action[0]) == ("2001:db8::1", "dns")


@pytest.mark.parametrize("be", [False, True], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("nsec", [False, True], ids=["usec", "nsec"])
def test_classic_byte_order_and_resolution(tmp_path: Path, be: bool, nsec: bool) -> None:
    path = write_pcap(tmp_path / "t.pcap", [ether(ipv4(l4=udp()))] * 3, be=be, nsec=nsec, wire_extra=4)

    frame, _ = read(path)

    ns = TS * 10**9 + (123_456_789 if nsec else 123_456_000)
    assert frame.ts.astype("int64").tolist() == [ns, ns + 10**9, ns + 2 * 10**9]
    assert frame["num.len"].tolist() == [frame["num.caplen"][0] + 4] * 3


def test_dpkt_nano_writer_agrees(tmp_path: Path) -> None:
    path = tmp_path / "n.pcap"
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh, nano=True)
        w.writepkt(ether(ipv4(l4=tcp())), ts=TS + 0.25)

    frame, _ = read(path)

    assert frame.ts[0] == pd.Timestamp(TS, unit="s", tz="UTC") + pd.Timedelta(milliseconds=250)


def test_pcapng_interfaces_resolutions_and_blocks(tmp_path: Path) -> None:
    eth = ether(ipv4("10.0.0.1", "10.0.0.2", tcp(dport=1883)))
    raw = ipv4("10.9.9.9", "10.0.0.2", udp(dport=123))
    opb = struct.pack("<HHIII", 0, 0, (TS * 10**6) >> 32, (TS * 10**6) & 0xFFFFFFFF, len(eth)) + (
        struct.pack("<I", len(eth)) + eth
    )
    data = (
        ng_shb()
        + ng_idb(1)  # microseconds by default
        + ng_idb(101, tsresol=9)  # nanoseconds
        + ng_idb(1, tsresol=0x80 | 10)  # 1/1024 s
        + ng_epb(0, TS * 10**6 + 5, eth)
        + ng_epb(1, TS * 10**9 + 7, raw)
        + ng_block(5, b"interface statistics are skipped")
        + ng_epb(2, TS * 1024 + 512, eth)
        + ng_block(3, struct.pack("<I", len(eth)) + eth)  # simple packet block: interface 0
        + ng_block(2, opb)  # obsolete packet block
        + ng_shb(">")  # a new, big-endian section resets the interfaces
        + ng_idb(113, o=">")
        + ng_epb(0, TS * 10**6, sll(ipv4(l4=udp())), o=">")
    )
    path = tmp_path / "m.pcapng"
    path.write_bytes(data)

    frame, dead = read(path)

    base = TS * 10**9
    assert frame.ts.astype("int64").tolist() == [
        base + 5000, base + 7, base + 500_000_000, base + 500_000_000, base, base,
    ]  # fmt: skip
    assert frame["cat.link"].tolist() == ["ethernet", "raw", "ethernet", "ethernet", "ethernet", "sll"]
    assert frame.action.tolist() == ["mqtt", "ntp", "mqtt", "mqtt", "mqtt", "dns"]
    assert frame.event_id.tolist() == [f"m.pcapng:{i}" for i in range(1, 7)]
    assert dead.count == 0


def test_dpkt_pcapng_writer_agrees(tmp_path: Path) -> None:
    path = tmp_path / "d.pcapng"
    pkts = [ether(ipv4(l4=tcp(dport=22, seq=i))) for i in range(5)]
    with open(path, "wb") as fh:
        w = dpkt.pcapng.Writer(fh)
        for i, p in enumerate(pkts):
            w.writepkt(p, ts=TS + i)

    frame, _ = read(path)

    assert frame["num.tcp_seq"].tolist() == [0, 1, 2, 3, 4]
    assert frame.ts.astype("int64").tolist() == [(TS + i) * 10**9 for i in range(5)]


@pytest.mark.parametrize("opener", [gzip.open, lzma.open, bz2.open], ids=["gz", "xz", "bz2"])
def test_compressed(tmp_path: Path, opener: object) -> None:
    plain = write_pcap(tmp_path / "plain.pcap", [ether(ipv4(l4=tcp(seq=i))) for i in range(50)])
    packed = tmp_path / "packed.pcap.x"
    with opener(packed, "wb") as fh:  # type: ignore[operator]
        fh.write(plain.read_bytes())

    got, _ = read(packed)
    want, _ = read(plain)

    pd.testing.assert_frame_equal(got.drop(columns=["event_id", "source"]), want.drop(columns=["event_id", "source"]))


def test_small_chunks_and_batches_match_one_read(tmp_path: Path) -> None:
    pkts = [ether(ipv4(l4=tcp(seq=i, payload=b"p" * (i % 300)))) for i in range(400)]
    pkts.insert(7, ether(ipv4(l4=udp(payload=b"J" * 9000))))  # larger than a chunk: buffer grows
    path = write_pcap(tmp_path / "s.pcap", pkts)

    whole, _ = read(path)
    parts = list(PcapReader(chunk_bytes=4096).batches(path, batch_size=64))

    assert [len(p) for p in parts] == [64] * 6 + [401 - 384]
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole)
    assert whole["num.len"][7] == 9000 + 42


def test_low_level_arrays(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "ll.pcap", [ether(ipv4("1.1.1.1", "2.2.2.2", tcp(1, 2, 0x12, 5)))] * 4)

    chunks = list(PcapReader().arrays(path))

    a = chunks[0]
    assert len(chunks) == 1 and len(a) == 4
    assert a.index.tolist() == [1, 2, 3, 4]
    assert int(a.src_lo[0]) == 0x01010101 and int(a.dst_lo[0]) == 0x02020202 and int(a.src_hi[0]) == 0
    assert (int(a.tcp_flags[0]), int(a.src_port[0]), int(a.l3[0])) == (0x12, 1, 4)
    assert int(a.src_mac[0]) == int.from_bytes(MAC_A, "big")


# ---------------------------------------------------------------- bad input


def test_truncated_last_record_is_dead_lettered(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "tr.pcap", [ether(ipv4(l4=tcp()))] * 3)
    data = path.read_bytes()
    path.write_bytes(data[:-10])

    frame, dead = read(path)

    assert len(frame) == 2 and dead.count == 1
    s = dead.samples[0]
    assert s["source"].endswith("tr.pcap") and s["line"] == 3
    assert re.search(r"byte \d+: truncated record \(caplen 54, only 44 bytes left\)", s["reason"])


def test_corrupt_record_header_stops_the_file(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "cr.pcap", [ether(ipv4(l4=tcp()))] * 3)
    data = bytearray(path.read_bytes())
    second = 24 + 16 + 54
    data[second + 8 : second + 12] = struct.pack("<I", 0x7FFFFFFF)
    path.write_bytes(bytes(data))

    frame, dead = read(path)

    assert len(frame) == 1 and dead.count == 1
    assert dead.samples[0]["line"] == 2
    assert f"byte {second}: corrupt record header" in dead.samples[0]["reason"]


def test_pcapng_bad_caplen_skips_only_that_packet(tmp_path: Path) -> None:
    eth = ether(ipv4(l4=tcp()))
    path = tmp_path / "bc.pcapng"
    path.write_bytes(ng_shb() + ng_idb(1) + ng_epb(0, 1, eth) + ng_epb(0, 2, eth, caplen=999) + ng_epb(0, 3, eth))

    frame, dead = read(path)

    assert frame.event_id.tolist() == ["bc.pcapng:1", "bc.pcapng:3"]
    assert dead.count == 1 and "captured length larger than its block" in dead.samples[0]["reason"]


def test_pcapng_truncated_and_corrupt_blocks(tmp_path: Path) -> None:
    eth = ether(ipv4(l4=tcp()))
    good = ng_shb() + ng_idb(1) + ng_epb(0, 1, eth)
    (tmp_path / "t.pcapng").write_bytes(good + ng_epb(0, 2, eth)[:-6])
    (tmp_path / "c.pcapng").write_bytes(good + struct.pack("<II", 6, 13) + b"\0" * 40)

    f1, d1 = read(tmp_path / "t.pcapng")
    f2, d2 = read(tmp_path / "c.pcapng")

    assert (len(f1), d1.count, len(f2), d2.count) == (1, 1, 1, 1)
    assert "truncated block" in d1.samples[0]["reason"] and "corrupt block header" in d2.samples[0]["reason"]


def test_wrong_magic_and_empty(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_bytes(b"data,more,columns\n")
    (tmp_path / "e.pcap").write_bytes(b"")
    (tmp_path / "h.pcap").write_bytes(struct.pack("<I", 0xA1B2C3D4) + b"\0" * 6)

    with pytest.raises(ParseError) as wrong:
        PcapReader().read(tmp_path / "x.txt")
    with pytest.raises(ParseError, match="file is empty"):
        PcapReader().read(tmp_path / "e.pcap")
    with pytest.raises(ParseError, match=r"truncated pcap file header \(10 of 24 bytes\)"):
        PcapReader().read(tmp_path / "h.pcap")

    assert str(wrong.value) == f"{tmp_path / 'x.txt'}: not a pcap or pcapng file (magic 0x64617461)"
    with pytest.raises(InvalidParameterError, match="chunk_bytes"):
        PcapReader(chunk_bytes=10)


@pytest.mark.parametrize("opener", [gzip.open, lzma.open, bz2.open], ids=["gz", "xz", "bz2"])
def test_compressed_stream_cut_short(tmp_path: Path, opener: object) -> None:
    pkts = [ether(ipv4(l4=tcp(seq=i, payload=os.urandom(200)))) for i in range(300)]
    packed = tmp_path / "cut.pcap.z"
    with opener(packed, "wb") as fh:  # type: ignore[operator]
        fh.write(write_pcap(tmp_path / "p.pcap", pkts).read_bytes())
    packed.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    (tmp_path / "junk.gz").write_bytes(b"\x1f\x8b" + b"junk" * 20)

    dead = DeadLetter()
    try:
        frame = PcapReader().read(packed, dead=dead)
    except ParseError as exc:  # the decompressor may fail before the first record
        assert str(exc).startswith(str(packed))
    else:
        assert len(frame) < 300 and dead.count >= 1
        if len(frame):  # bzip2 decodes whole 900 kB blocks: half a file may yield no packet at all
            assert frame["num.tcp_seq"].tolist() == list(range(len(frame)))
    with pytest.raises(ParseError, match=re.escape(str(tmp_path / "junk.gz"))):
        PcapReader().read(tmp_path / "junk.gz")


def test_gzip_cut_short_after_megabytes_keeps_the_packets_before(tmp_path: Path) -> None:
    pkts = [ether(ipv4(l4=tcp(seq=i, payload=os.urandom(300)))) for i in range(7000)]
    packed = tmp_path / "cut.pcap.gz"
    with gzip.open(packed, "wb", compresslevel=1) as fh:
        fh.write(write_pcap(tmp_path / "p.pcap", pkts).read_bytes())
    packed.write_bytes(packed.read_bytes()[: packed.stat().st_size * 3 // 4])

    frame, dead = read(packed)

    assert 0 < len(frame) < 7000 and dead.count >= 1
    assert frame["num.tcp_seq"].tolist() == list(range(len(frame)))
    assert "reading stopped" in dead.samples[0]["reason"]


def _frames_or_parse_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f.pcap"
        path.write_bytes(data)
        dead = DeadLetter()
        try:
            frames = list(PcapReader(chunk_bytes=4096).batches(path, dead=dead))
        except ParseError as exc:
            assert str(exc).startswith(str(path))
            return
        for f in frames:
            assert tuple(f.columns[:8]) == BASE_COLUMNS
            pd.testing.assert_frame_equal(f, normalize_frame(f))


CLASSIC_HEADERS = [
    struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, lt) for lt in (0, 1, 101, 113, 228, 229, 276, 999)
] + [struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)]
NG_HEADERS = [ng_shb(), ng_shb() + ng_idb(1), ng_shb(">") + ng_idb(113, o=">"), ng_shb() + ng_idb(1, 9)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_property_arbitrary_bytes(data: bytes) -> None:
    _frames_or_parse_error(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CLASSIC_HEADERS + NG_HEADERS), st.binary(max_size=600))
def test_property_valid_header_then_arbitrary_bytes(header: bytes, data: bytes) -> None:
    _frames_or_parse_error(header + data)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.binary(max_size=120), st.sampled_from([0, 1]))
def test_property_record_with_arbitrary_lengths(caplen: int, wire: int, body: bytes, linktype: int) -> None:
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    _frames_or_parse_error(header + struct.pack("<IIII", TS, 0, caplen, wire) + body)


# ---------------------------------------------------------------- real captures


def dpkt_packets(path: Path) -> tuple[list[tuple[float, bytes]], int]:
    """dpkt's reading of a capture: (timestamp, bytes) per packet, and the link type."""
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rb") as fh:  # type: ignore[operator]
        head = fh.read(4)
        fh.seek(0)
        reader = dpkt.pcapng.Reader(fh) if head == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
        return list(reader), reader.datalink()


def dpkt_fields(buf: bytes, linktype: int) -> tuple[str, str, float, float]:
    """(src IP, dst IP, src port, dst port) as dpkt decodes them; "" / NaN where absent."""
    l2 = dpkt.sll.SLL(buf) if linktype == 113 else dpkt.ethernet.Ethernet(buf)
    ip = l2.data
    if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6):
        return "", "", math.nan, math.nan
    fam = socket.AF_INET if isinstance(ip, dpkt.ip.IP) else socket.AF_INET6
    l4 = ip.data
    ports = (float(l4.sport), float(l4.dport)) if isinstance(l4, dpkt.tcp.TCP | dpkt.udp.UDP) else (math.nan,) * 2
    return socket.inet_ntop(fam, ip.src), socket.inet_ntop(fam, ip.dst), *ports


@pytest.mark.realdata
def test_real_honeypot_count_matches_capinfos(shared_data: Path) -> None:
    folder = shared_data / "iot23" / "CTU-Honeypot-Capture-4-1"
    capinfos = next(folder.glob("*.capinfos")).read_text()
    expected = int(re.search(r"Number of packets = (\d+)", capinfos).group(1))  # type: ignore[union-attr]

    dead = DeadLetter()
    frame = PcapReader().read(next(folder.glob("*.pcap.xz")), dead=dead)

    assert len(frame) == expected and dead.count == 0
    assert (frame["cat.link"] == "ethernet").all()


@pytest.mark.realdata
@pytest.mark.parametrize(
    "pattern",
    ["mqttset/*.pcap*", "iot-on-demand/pcaps/*.pcap", "iot23/CTU-Honeypot-Capture-4-1/*.pcap.xz"],
)
def test_real_captures_agree_with_dpkt(shared_data: Path, pattern: str) -> None:
    paths = sorted(shared_data.glob(pattern))
    assert paths, f"no {pattern} under {shared_data}"
    for path in paths:
        frame, dead = read(path)
        ref, linktype = dpkt_packets(path)

        assert len(frame) == len(ref) and dead.count == 0, path
        assert np.allclose(frame.ts.astype("int64").to_numpy() / 1e9, [t for t, _ in ref], atol=1e-6), path
        assert frame["num.caplen"].tolist() == [float(len(b)) for _, b in ref], path
        rng = np.random.default_rng(0)
        for i in rng.choice(len(ref), size=min(200, len(ref)), replace=False):
            src, dst, sport, dport = dpkt_fields(ref[i][1], linktype)
            row = frame.iloc[int(i)]
            if src:
                assert (row.entity, row.peer) == (src, dst), (path, i)
            got = (row["num.src_port"], row["num.dst_port"])
            assert got == (sport, dport) or (nan(got[0]) and math.isnan(sport)), (path, i)
