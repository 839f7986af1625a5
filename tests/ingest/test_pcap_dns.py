"""DNS query names from captures: classic pcap, pcapng, compressed, and broken input."""

from __future__ import annotations

import gzip
from pathlib import Path

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misuse.errors import ParseError
from misuse.ingest.pcap_dns import dns_queries, query_packets
from misuse.ingest.pcap_stream import iter_packet_arrays


def _udp_frame(dport: int, payload: bytes) -> bytes:
    udp = dpkt.udp.UDP(sport=40000, dport=dport, data=payload)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=bytes([192, 168, 1, 9]), dst=bytes([192, 168, 1, 1]), p=17, ttl=64, data=udp)
    ip.len = len(ip)
    eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
    return bytes(eth)


def _query(name: str) -> bytes:
    return _udp_frame(53, bytes(dpkt.dns.DNS(id=7, qd=[dpkt.dns.DNS.Q(name=name)])))


def _answer(name: str) -> bytes:
    msg = dpkt.dns.DNS(id=7, qr=dpkt.dns.DNS_R, qd=[dpkt.dns.DNS.Q(name=name)])
    return _udp_frame(53, bytes(msg))


FRAMES = [
    _query("VS-cam.u011.Immedia-Semi.com."),
    _udp_frame(5000, b"not dns"),
    _udp_frame(53, b"\x00\x01garbage"),  # to port 53 but not a DNS message: no name, no error
    _answer("reply.example.com"),  # a response sent to port 53 is not a query
    _query("time.nist.gov"),
]
EXPECTED = {1: "vs-cam.u011.immedia-semi.com", 5: "time.nist.gov"}


def _classic(path: Path, frames: list[bytes]) -> Path:
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for i, f in enumerate(frames):
            w.writepkt(f, ts=100.0 + i)
    return path


def test_names_of_queries_by_packet_number(tmp_path: Path) -> None:
    path = _classic(tmp_path / "q.pcap", FRAMES)
    assert dns_queries(path) == EXPECTED
    wanted = query_packets(iter_packet_arrays(path))
    assert wanted == {1, 3, 4, 5}
    assert dns_queries(path, wanted) == EXPECTED
    assert dns_queries(path, set()) == {}


def test_pcapng_and_gzip(tmp_path: Path) -> None:
    ng = tmp_path / "q.pcapng"
    with open(ng, "wb") as fh:
        w = dpkt.pcapng.Writer(fh)
        for i, f in enumerate(FRAMES):
            w.writepkt(f, ts=100.0 + i)
    assert dns_queries(ng) == EXPECTED
    gz = tmp_path / "q.pcap.gz"
    gz.write_bytes(gzip.compress(_classic(tmp_path / "plain.pcap", FRAMES).read_bytes()))
    assert dns_queries(gz, query_packets(iter_packet_arrays(gz))) == EXPECTED


def test_a_truncated_tail_keeps_the_names_before_it(tmp_path: Path) -> None:
    path = _classic(tmp_path / "t.pcap", FRAMES)
    data = path.read_bytes()
    path.write_bytes(data[:-20])
    assert dns_queries(path) == {1: EXPECTED[1]}


def test_wrong_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, this is not a capture\n")
    with pytest.raises(ParseError, match=r"notes\.txt"):
        dns_queries(bad)
    with pytest.raises(ParseError, match="no such file"):
        dns_queries(tmp_path / "missing.pcap")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_any_bytes_give_names_or_a_parse_error(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "fuzz.pcap"
    header = _classic(tmp_path / "h.pcap", FRAMES[:1]).read_bytes()[:24]
    for data in (blob, header + blob):
        path.write_bytes(data)
        try:
            got = dns_queries(path)
        except ParseError:
            continue
        assert isinstance(got, dict) and all(isinstance(k, int) and isinstance(v, str) for k, v in got.items())
