"""Packets per second, end to end: read + AfterImage features + KitNET scoring, on one core.

For each capture the benchmark prints

- ``dpkt records``: bare ``dpkt`` record iteration (the floor of any Python pcap path);
- ``dpkt parse``: dpkt Ethernet/SLL -> IP -> TCP/UDP objects per packet (Kitsune-py's style of parse);
- ``read``: our numba record scan + header decode (:func:`iter_packet_arrays`);
- ``read+features``: plus AfterImage's 115 features;
- ``end to end``: plus KitNET scores (KitNET trained first on the first ``--train`` packets);
- per-packet latency: amortised in chunks, and for single packets (one-packet arrays, p50/p99);
- river's half-space trees and pyod's isolation forest scoring the same feature rows (rows/s);
- peak resident memory of the process and the fixed size of AfterImage's stream tables.

Captures: an IoT capture (iot-on-demand lockly-hub-01.pcap by default) and an MQTTset stream
(benign-5mb train + test, then each attack's test file, each shifted to start 1 s after the
previous ends). Run: ``python benchmarks/packets.py [--data ../shared/data]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import dpkt
import numpy as np
import pandas as pd

from misuse.detectors.kitnet import KitNET
from misuse.features.afterimage import AfterImage, feature_names
from misuse.ingest.pcap_stream import PacketArrays, iter_packet_arrays

REPEATS = 3
MQTT_FILES = (
    "benign-5mb/benign-5mb-train.pcap",
    "benign-5mb/benign-5mb-test.pcap",
    "bruteforce/bruteforce-test.pcapng",
    "flood/flood-test.pcap",
    "malariados/malariados-test.pcap",
    "malformed/malformed-test.pcap",
    "slowite/slowite-test.pcap",
)


def stream(files: list[Path]) -> Iterator[PacketArrays]:
    """The files' packets in turn, each file shifted to start 1 s after the previous one ends."""
    end: int | None = None
    for f in files:
        shift: int | None = None
        last = end
        for arr in iter_packet_arrays(f):
            if len(arr) == 0:
                continue
            if shift is None:
                shift = 0 if end is None else end + 1_000_000_000 - int(arr.ts_ns[0])
            arr.ts_ns = arr.ts_ns + shift
            last = int(arr.ts_ns[-1])
            yield arr
        end = last


def dpkt_floor(files: list[Path]) -> tuple[int, float, float]:
    """Packets, seconds for bare record iteration, seconds for Ethernet/SLL/IP/L4 parsing."""
    n, t_bare, t_parse = 0, 0.0, 0.0
    for f in files:
        with f.open("rb") as fh:  # by magic: several MQTTset ".pcap" files are pcapng
            opener = dpkt.pcapng.Reader if fh.read(4) == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader
        with f.open("rb") as fh:
            t0 = time.perf_counter()
            for _ts, _buf in opener(fh):
                n += 1
            t_bare += time.perf_counter() - t0
        with f.open("rb") as fh:
            t0 = time.perf_counter()
            rd = opener(fh)
            link = rd.datalink()
            for _ts, buf in rd:
                frame = dpkt.sll.SLL(buf) if link == 113 else dpkt.ethernet.Ethernet(buf)
                ip = frame.data
                if isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6):
                    l4 = ip.data
                    if isinstance(l4, dpkt.tcp.TCP | dpkt.udp.UDP):
                        _ = (l4.sport, l4.dport)
            t_parse += time.perf_counter() - t0
    return n, t_bare, t_parse


def run(name: str, files: list[Path], n_train: int) -> None:
    """Benchmark one capture (a list of files streamed as one)."""
    print(f"\n== {name}: {', '.join(f.name for f in files)}")
    n, t_bare, t_parse = dpkt_floor(files)
    print(f"dpkt records      {n / t_bare:>12,.0f} packets/s   ({n:,} packets)")
    print(f"dpkt parse        {n / t_parse:>12,.0f} packets/s")
    # warm the compiled kernels (cached on disk; not part of the timings)
    warm = AfterImage()
    for arr in stream(files[:1]):
        warm.process(arr.take(slice(0, 50)))
        break
    t0 = time.perf_counter()
    total = sum(len(a) for a in stream(files))
    t_read = time.perf_counter() - t0
    print(f"read (numba)      {total / t_read:>12,.0f} packets/s")
    ai = AfterImage()
    feats = []
    t0 = time.perf_counter()
    for arr in stream(files):
        feats.append(ai.process(arr))
    t_feat = time.perf_counter() - t0
    X = np.vstack(feats)
    print(
        f"read+features     {total / t_feat:>12,.0f} packets/s"
        f"   (streams held {ai.n_streams:,}, evicted {ai.evicted_:,})"
    )
    train = pd.DataFrame(X[:n_train], columns=feature_names())
    t0 = time.perf_counter()
    det = KitNET(seed=0, epochs=1).learn_many(train)
    t_fit = time.perf_counter() - t0
    print(
        f"KitNET training   {n_train / t_fit:>12,.0f} rows/s"
        f"      ({n_train:,} rows, {t_fit:.1f} s, not in the figures below)"
    )
    det._score(X[:64])  # compile
    runs, cpu = [], []
    for _ in range(REPEATS):
        ai = AfterImage()
        t0, c0 = time.perf_counter(), time.process_time()
        for arr in stream(files):
            det._score(ai.process(arr))
        runs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    t_e2e = float(np.median(runs))
    print(
        f"end to end        {total / t_e2e:>12,.0f} packets/s   (read + features + KitNET score;"
        f" wall clock, median of {REPEATS} runs, range {total / max(runs):,.0f}-{total / min(runs):,.0f})"
    )
    print(
        f"end to end, CPU   {total / float(np.median(cpu)):>12,.0f} packets per CPU-second"
        f"   (process CPU time: what one core does when the machine is shared)"
    )
    print(f"  latency, chunked   {1e6 * t_e2e / total:>9.2f} us/packet")
    single = AfterImage()
    one_arr = next(stream(files[:1]))
    lat = []
    for i in range(min(2000, len(one_arr))):
        p = one_arr.take(slice(i, i + 1))
        t0 = time.perf_counter()
        det._score(single.process(p))
        lat.append(time.perf_counter() - t0)
    lat_us = 1e6 * np.asarray(lat[100:])
    print(
        f"  latency, one packet at a time  p50 {np.percentile(lat_us, 50):.1f} us"
        f"  p99 {np.percentile(lat_us, 99):.1f} us"
    )
    # other detectors on the same features
    from pyod.models.iforest import IForest
    from river.anomaly import HalfSpaceTrees

    iso = IForest(random_state=0, n_jobs=1).fit(X[:n_train])
    t0 = time.perf_counter()
    iso.decision_function(X)
    t_iso = time.perf_counter() - t0
    print(
        f"pyod IForest      {total / t_iso:>12,.0f} rows/s      (scoring the same features;"
        f" with read+features: {total / (t_feat + t_iso):,.0f} packets/s)"
    )
    lo, span = X[:n_train].min(axis=0), np.ptp(X[:n_train], axis=0)
    span[span == 0] = 1.0
    U = np.clip((X - lo) / span, 0, 1)
    keys = feature_names()
    hst = HalfSpaceTrees(seed=0)
    for row in U[: min(n_train, 2000)]:
        hst.learn_one(dict(zip(keys, row, strict=True)))
    k = min(5000, len(U))
    t0 = time.perf_counter()
    for row in U[:k]:
        hst.score_one(dict(zip(keys, row, strict=True)))
    t_hst = (time.perf_counter() - t0) / k
    print(
        f"river HST         {1 / t_hst:>12,.0f} rows/s      (scoring the same features, {k:,} rows;"
        f" with read+features: {total / (t_feat + t_hst * total):,.0f} packets/s)"
    )
    print(f"AfterImage tables {ai.memory_bytes / 2**20:>12.1f} MiB (fixed)")


def main() -> None:
    """Parse arguments and run the benchmark on both captures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("MISUSE_DATA_DIR", "../shared/data"))
    ap.add_argument("--iot", default="iot-on-demand/pcaps/lockly-hub-01.pcap")
    ap.add_argument("--train", type=int, default=10_000, help="KitNET training packets")
    args = ap.parse_args()
    root = Path(args.data)
    run("IoT capture", [root / args.iot], args.train)
    run("MQTTset stream", [root / "mqttset" / f for f in MQTT_FILES], args.train)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory of this process: {peak:.0f} MiB (includes numpy, numba, pandas, river, pyod)")


if __name__ == "__main__":
    main()
