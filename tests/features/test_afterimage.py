"""AfterImage: hand-checked damped statistics, chunking, bounded memory, N-BaIoT names, Kitsune TSV."""

from __future__ import annotations

import csv
from pathlib import Path

import dpkt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from misuse.errors import InvalidParameterError, ParseError
from misuse.features.afterimage import AfterImage, feature_names, read_tshark_tsv
from misuse.ingest.base import DeadLetter
from misuse.ingest.pcap_stream import PacketArrays

A, B = 0xC0A80001, 0xC0A80002  # 192.168.0.1, 192.168.0.2


def packets(rows: list[tuple[float, int, int, int, int, int]]) -> PacketArrays:
    """PacketArrays from (t seconds, size, src ip, dst ip, src port, dst port) over Ethernet/TCP."""
    n = len(rows)
    t, size, src, dst, sp, dp = (np.asarray(c) for c in zip(*rows, strict=True))
    minus = np.full(n, -1)
    return PacketArrays(
        index=np.arange(1, n + 1),
        ts_ns=(t * 1e9).astype(np.int64),
        wire_len=size.astype(np.int64),
        cap_len=size.astype(np.int64),
        linktype=np.ones(n, dtype=np.int64),
        iface=np.zeros(n, dtype=np.int64),
        src_mac=src.astype(np.int64) + 0x0200_0000_0000,
        dst_mac=dst.astype(np.int64) + 0x0200_0000_0000,
        has_mac=np.ones(n, dtype=bool),
        eth_type=np.full(n, 0x800, dtype=np.int32),
        vlan=minus.astype(np.int32),
        l3=np.full(n, 4, dtype=np.int8),
        src_hi=np.zeros(n, dtype=np.uint64),
        src_lo=src.astype(np.uint64),
        dst_hi=np.zeros(n, dtype=np.uint64),
        dst_lo=dst.astype(np.uint64),
        ip_proto=np.full(n, 6, dtype=np.int16),
        ttl=np.full(n, 64, dtype=np.int16),
        src_port=sp.astype(np.int32),
        dst_port=dp.astype(np.int32),
        tcp_flags=np.full(n, 0x10, dtype=np.int16),
        tcp_seq=minus.astype(np.int64),
        payload_len=minus.astype(np.int64),
        icmp_type=minus.astype(np.int16),
        icmp_code=minus.astype(np.int16),
    )


def col(name: str) -> int:
    return feature_names().index(name)


def test_damped_statistics_match_hand_computation() -> None:
    # prepare: three packets A->B one second apart, sizes 100, 200, 300
    arr = packets([(0.0, 100, A, B, 1000, 80), (1.0, 200, A, B, 1000, 80), (2.0, 300, A, B, 1000, 80)])
    # execute
    X = AfterImage().process(arr)
    # assert: with lambda = 1 each older packet weighs half as much per second
    w = 1 + 0.5 + 0.25
    mean = (300 + 200 * 0.5 + 100 * 0.25) / w
    var = (300**2 + 200**2 * 0.5 + 100**2 * 0.25) / w - mean**2
    assert X[2, col("MI_dir_L1_weight")] == pytest.approx(w)
    assert X[2, col("H_L1_mean")] == pytest.approx(mean)
    assert X[2, col("H_L1_variance")] == pytest.approx(var)
    assert X[2, col("HH_L1_std")] == pytest.approx(np.sqrt(var))
    assert X[2, col("HH_jit_L1_mean")] == pytest.approx((1 + 0.5 * 1 + 0.25 * 0) / w)
    # no reverse traffic: magnitude is the forward mean, radius the forward std, no covariance
    assert X[2, col("HpHp_L1_magnitude")] == pytest.approx(mean)
    assert X[2, col("HpHp_L1_radius")] == pytest.approx(np.sqrt(var))
    assert X[2, col("HpHp_L1_pcc")] == 0.0


def test_reply_traffic_feeds_the_two_dimensional_statistics() -> None:
    rows = [(i * 0.1, 60 + 40 * (i % 3), A, B, 1000, 80) for i in range(0, 20, 2)]
    rows += [(i * 0.1, 1400 - 10 * (i % 5), B, A, 80, 1000) for i in range(1, 20, 2)]
    X = AfterImage().process(packets(sorted(rows)))
    last = X[-1]
    assert last[col("HH_L0.1_magnitude")] > last[col("HH_L0.1_mean")]
    assert last[col("HH_L0.1_covariance")] != 0.0
    assert abs(last[col("HpHp_L0.1_pcc")]) <= 1.0 + 1e-9


def test_chunks_give_the_same_features_as_one_batch() -> None:
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.exponential(0.05, 300))
    sizes, hosts = rng.integers(60, 1500, 300), rng.integers(0, 5, 300)
    rows = [
        (float(t), int(s), int(A + h), int(B), 1000 + int(h), 80) for t, s, h in zip(times, sizes, hosts, strict=True)
    ]
    arr = packets(rows)
    whole = AfterImage().process(arr)
    ai = AfterImage()
    parts = np.vstack([ai.process(arr.take(slice(0, 123))), ai.process(arr.take(slice(123, None)))])
    np.testing.assert_allclose(parts, whole)


def test_memory_is_bounded_and_stale_streams_are_evicted() -> None:
    # prepare: 5,000 distinct sources, a table for 64 streams
    rows = [(i * 0.01, 100, 0x0A000000 + i, B, 1000, 80) for i in range(5000)]
    ai = AfterImage(max_streams=64)
    before = ai.memory_bytes
    # execute
    X = ai.process(packets(rows))
    # assert
    assert ai.n_streams <= 64
    assert ai.evicted_ > 0
    assert ai.memory_bytes == before
    assert np.isfinite(X).all()
    assert X[-1, col("H_L1_weight")] == pytest.approx(1.0)  # a brand-new source


def test_bad_parameters_fail_loudly() -> None:
    with pytest.raises(InvalidParameterError, match="lambdas"):
        AfterImage(lambdas=(1.0, -2.0))
    with pytest.raises(InvalidParameterError, match="size"):
        AfterImage(size="payload")


def test_reads_a_pcap_file_written_with_dpkt(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pcap"
    with path.open("wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for i in range(10):
            tcp = dpkt.tcp.TCP(sport=1000, dport=80, flags=dpkt.tcp.TH_ACK, data=b"x" * i)
            ip = dpkt.ip.IP(src=bytes([10, 0, 0, 1]), dst=bytes([10, 0, 0, 2]), p=6, data=tcp)
            ip.len = len(bytes(ip))
            eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x800, data=ip)
            w.writepkt(bytes(eth), ts=1_600_000_000 + i)
    feats = np.vstack([X for _, X in AfterImage().iter_file(path)])
    assert feats.shape == (10, 115)
    assert feats[-1, col("HH_jit_L0.01_mean")] > 0.5  # one-second gaps


@pytest.mark.realdata
def test_feature_names_equal_nbaiot_columns(shared_data: Path) -> None:
    with (shared_data / "nbaiot-sample" / "benign_traffic.csv").open() as fh:
        header = next(csv.reader(fh))
    assert feature_names() == header


def _tsv(tmp_path: Path, rows: list[list[str]]) -> Path:
    head = "frame.time_epoch	frame.len	eth.src	eth.dst	ip.src	ip.dst	tcp.srcport	tcp.dstport	udp.srcport	udp.dstport	icmp.type	icmp.code	arp.opcode	arp.src.hw_mac	arp.src.proto_ipv4	arp.dst.hw_mac	arp.dst.proto_ipv4	ipv6.src	ipv6.dst"  # noqa: E501
    path = tmp_path / "k.tsv"
    path.write_text(head + "\n" + "\n".join("\t".join(r) for r in rows) + "\n")
    return path


def test_tshark_tsv_reader_keeps_good_rows_and_sets_bad_ones_aside(tmp_path: Path) -> None:
    e = [""] * 19
    mac, bcast = "5c:cf:7f:05:f2:c6", "ff:ff:ff:ff:ff:ff"
    tcp = ["1540446382.933899000", "60", mac, "4c:09:d4:c6:12:7b", "192.168.2.108", "52.24.43.67", "21074", "80"]
    tcp += e[:11]
    arp = ["1540446383.5", "42", mac, bcast, *e[:8], "1", mac, "192.168.2.108", "00:00:00:00:00:00", "192.168.2.1"]
    arp += ["", ""]
    bad = ["not-a-time", "60", *e[:17]]
    dead = DeadLetter()
    arr = read_tshark_tsv(_tsv(tmp_path, [tcp, bad, arp]), dead=dead)
    assert len(arr) == 2
    assert dead.count == 1
    assert arr.src_port.tolist() == [21074, -1]
    assert arr.l3.tolist() == [4, 1]
    assert int(arr.src_lo[1]) == 0xC0A8026C
    assert AfterImage().process(arr).shape == (2, 115)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_tshark_tsv_reader_on_arbitrary_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("tsv") / "x.tsv"
    path.write_bytes(data)
    try:
        arr = read_tshark_tsv(path)
    except ParseError:
        return
    assert len(arr) >= 0


@pytest.mark.realdata
def test_kitsune_benign_prefix_reads_completely(shared_data: Path) -> None:
    dead = DeadLetter()
    arr = read_tshark_tsv(shared_data / "kitsune-mirai-benign" / "mirai.pcap.first38362pkts.tsv", dead=dead)
    assert len(arr) + dead.count == 38_362
    assert dead.count == 0
    X = AfterImage().process(arr)
    assert np.isfinite(X).all()
