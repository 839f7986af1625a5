"""Ingest throughput: pcap -> events (ours) against dpkt and scapy, plus Zeek conn.log rows/s.

Builds a large capture in a work folder by repeating the real packets of
``$MISUSE_DATA_DIR/iot-on-demand/pcaps`` (default ``../shared/data`` beside the repository)
with increasing timestamps (synthetic Ethernet/IPv4 packets when the data is absent), then
times, each in its own subprocess and in this one run:

* ``dpkt records``   ``for ts, buf in dpkt.pcap.Reader(f): pass`` (the reference)
* ``dpkt parse``     the same plus ``dpkt.ethernet.Ethernet`` -> IP -> TCP/UDP field access
* ``ours arrays``    :func:`misuse.ingest.pcap_stream.iter_packet_arrays` (decoded numpy arrays)
* ``ours frames``    :class:`misuse.ingest.pcap.PcapReader` event frames
* ``scapy``          ``scapy.utils.PcapReader`` on a prefix of the file (it is slow)
* ``zeek conn.log``  ``misuse.ingest.zeek.ZeekReader`` on a conn.log made by repeating the
  IoT-23 34-1 ``conn.log.labeled`` rows (skipped with a note when the reader is missing)

and prints packets (rows) per second, ratios to dpkt and each worker's peak resident memory
(VmHWM of the subprocess, which includes the interpreter and its imports; the
``imports MB`` column is the peak before reading the first byte of the big input).

Usage::

    python benchmarks/ingest.py            # ~1M packets, takes a minute or two
    python benchmarks/ingest.py --quick    # ~100k packets
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
TARGET = 0.5  # our frames must reach half of plain dpkt record iteration
ZEEK_TARGET = 300_000  # rows/s of the Zeek conn.log reader


def data_dir() -> Path:
    """Where the shared real data is (MISUSE_DATA_DIR or ../shared/data)."""
    return Path(os.environ.get("MISUSE_DATA_DIR", REPO.parent / "shared" / "data"))


# ------------------------------------------------------------------------------ inputs


def real_packets(root: Path) -> tuple[list[bytes], str]:
    """All packets of the iot-on-demand captures, or synthetic ones when they are absent."""
    import dpkt

    files = sorted((root / "iot-on-demand" / "pcaps").glob("*.pcap"))
    pkts: list[bytes] = []
    for f in files:
        with open(f, "rb") as fh:
            pkts.extend(buf for _, buf in dpkt.pcap.Reader(fh))
    if pkts:
        return pkts, f"{root / 'iot-on-demand' / 'pcaps'} ({len(files)} files, {len(pkts):,} packets)"
    return synthetic_packets(), "synthetic Ethernet/IPv4 TCP+UDP packets (real data not found)"


def synthetic_packets(n: int = 2000) -> list[bytes]:
    """Plausible Ethernet/IPv4 TCP and UDP packets of varied sizes and addresses."""
    out = []
    for i in range(n):
        udp = i % 3 == 0
        payload = bytes(i % 400)
        l4 = (
            struct.pack("!HHHH", 40000 + i % 50, 53, 8 + len(payload), 0)
            if udp
            else struct.pack("!HHIIBBHHH", 40000 + i % 50, 1883, i, 0, 0x50, 0x18, 1024, 0, 0)
        )
        total = 20 + len(l4) + len(payload)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, i, 0, 64, 17 if udp else 6, 0,
                         bytes([10, 0, i % 7, 1]), bytes([192, 168, 1, i % 13]))  # fmt: skip
        out.append(bytes(6) + bytes([2, 0, 0, 0, 0, i % 7]) + b"\x08\x00" + ip + l4 + payload)
    return out


def build_pcap(path: Path, packets: list[bytes], count: int) -> Path:
    """Write ``count`` packets (``packets`` repeated) as a little-endian microsecond pcap."""
    recs = [struct.pack("<II", len(p), len(p)) + p for p in packets]
    with open(path, "wb", buffering=8 << 20) as fh:
        fh.write(PCAP_HEADER)
        t0 = 1_600_000_000
        for i in range(count):
            fh.write(struct.pack("<II", t0 + i // 1000, (i % 1000) * 1000))
            fh.write(recs[i % len(recs)])
    return path


def build_conn_log(path: Path, source: Path, rows: int) -> int:
    """A Zeek conn.log of ``rows`` rows made by repeating the data rows of ``source``."""
    lines = source.read_bytes().splitlines(keepends=True)
    header = [ln for ln in lines if ln.startswith(b"#") and not ln.startswith(b"#close")]
    data = [ln for ln in lines if not ln.startswith(b"#")]
    with open(path, "wb", buffering=8 << 20) as fh:
        fh.writelines(header)
        for i in range(rows):
            fh.write(data[i % len(data)])
    return rows


# ------------------------------------------------------------------------------ workers


def _count_dpkt_records(path: Path) -> int:
    import dpkt

    n = 0
    with open(path, "rb") as fh:
        for _ts, _buf in dpkt.pcap.Reader(fh):
            n += 1
    return n


def _count_dpkt_parse(path: Path) -> int:
    import dpkt

    n = 0
    with open(path, "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP):
                _ = (ip.src, ip.dst, ip.p, ip.ttl)
                l4 = ip.data
                if isinstance(l4, dpkt.tcp.TCP):
                    _ = (l4.sport, l4.dport, l4.flags, l4.seq)
                elif isinstance(l4, dpkt.udp.UDP):
                    _ = (l4.sport, l4.dport)
            n += 1
    return n


def _count_ours_arrays(path: Path) -> int:
    from misuse.ingest.pcap_stream import iter_packet_arrays

    return sum(len(a) for a in iter_packet_arrays(path))


def _count_ours_frames(path: Path) -> int:
    from misuse.ingest.pcap import PcapReader

    return sum(len(f) for f in PcapReader().batches(path))


def _count_scapy(path: Path) -> int:
    from scapy.all import PcapReader as ScapyReader  # scapy.all loads the layers: packets are dissected

    n = 0
    with ScapyReader(str(path)) as reader:
        for _pkt in reader:
            n += 1
    return n


def _count_zeek(path: Path) -> int:
    from misuse.ingest.zeek import ZeekReader

    return sum(len(f) for f in ZeekReader().batches(path))


WORKERS: dict[str, Callable[[Path], int]] = {
    "dpkt records": _count_dpkt_records,
    "dpkt parse": _count_dpkt_parse,
    "ours arrays": _count_ours_arrays,
    "ours frames": _count_ours_frames,
    "scapy": _count_scapy,
    "zeek conn.log": _count_zeek,
}


def _rss_mb() -> float:
    """Peak resident size of this process in MB.

    VmHWM belongs to this process image alone; ``ru_maxrss`` (the fallback off Linux) also
    counts the parent's size at fork time.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(name: str, path: Path, warm: Path | None) -> None:
    """Run one measurement in this (fresh) process and print it as JSON."""
    fn = WORKERS[name]
    if warm is not None:
        fn(warm)  # imports, numba cache loading, first-call costs
    base = _rss_mb()
    t = time.perf_counter()
    n = fn(path)
    dt = time.perf_counter() - t
    print(json.dumps({"name": name, "n": n, "seconds": dt, "rss_mb": _rss_mb(), "base_mb": base}))


def run(name: str, path: Path, warm: Path | None) -> dict[str, float]:
    """Time one worker in a subprocess."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, str(path)]
    if warm is not None:
        cmd += ["--warm", str(warm)]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------ sections


def bench_pcap(work: Path, packets: int, scapy_packets: int) -> list[dict[str, float]]:
    """The pcap section: ours against dpkt and scapy on one big capture."""
    pkts, what = real_packets(data_dir())
    big = build_pcap(work / "ingest-bench.pcap", pkts, packets)
    small = build_pcap(work / "ingest-bench-prefix.pcap", pkts, scapy_packets)
    warm = build_pcap(work / "ingest-bench-warm.pcap", pkts, 200)
    print(f"capture: {big} ({big.stat().st_size / 1e6:,.0f} MB, {packets:,} packets)")
    print(f"packets from: {what}")
    del pkts
    with open(big, "rb") as fh:  # page cache: every worker reads from memory
        while fh.read(16 << 20):
            pass
    results = []
    for name in ("dpkt records", "dpkt parse", "ours arrays", "ours frames"):
        results.append(run(name, big, warm))
    results.append(run("scapy", small, warm))
    return results


def bench_zeek(work: Path, rows: int) -> dict[str, float] | None:
    """The Zeek section: conn.log rows/s of ``misuse.ingest.zeek.ZeekReader``; None when missing."""
    if not (REPO / "misuse" / "ingest" / "zeek.py").exists():
        return None
    source = data_dir() / "iot23" / "CTU-IoT-Malware-Capture-34-1" / "bro" / "conn.log.labeled"
    if not source.exists():
        print(f"zeek: {source} not found, section skipped")
        return None
    log = work / "conn.log"
    build_conn_log(log, source, rows)
    warm = work / "warm" / "conn.log"
    warm.parent.mkdir(exist_ok=True)
    build_conn_log(warm, source, 100)
    print(f"conn.log: {log} ({log.stat().st_size / 1e6:,.0f} MB, {rows:,} rows from {source.name})")
    return run("zeek conn.log", log, warm)


def report(results: list[dict[str, float]]) -> Iterator[str]:
    """Table lines: rate, ratio to dpkt record iteration, peak memory."""
    ref = next(r for r in results if r["name"] == "dpkt records")
    ref_rate = ref["n"] / ref["seconds"]
    yield f"{'reader':<16}{'items':>11}{'seconds':>9}{'items/s':>12}{'x dpkt rec':>11}{'peak MB':>9}{'imports MB':>11}"
    for r in results:
        rate = r["n"] / r["seconds"]
        yield (
            f"{r['name']:<16}{int(r['n']):>11,}{r['seconds']:>9.2f}{rate:>12,.0f}{rate / ref_rate:>11.2f}"
            f"{r['rss_mb']:>9.0f}{r['base_mb']:>11.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    """Entry point: build the inputs, run every worker, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100k packets / rows instead of 1M")
    ap.add_argument("--packets", type=int, help="packets in the big capture (default 1,000,000)")
    ap.add_argument("--scapy-packets", type=int, help="packets given to scapy (default 50,000)")
    ap.add_argument("--zeek-rows", type=int, help="rows in the synthetic conn.log (default 1,000,000)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/misuse-bench"), help="where inputs go")
    ap.add_argument("--keep", action="store_true", help="keep the generated inputs")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--warm", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("path", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.path, args.warm)
        return 0
    packets = args.packets or (100_000 if args.quick else 1_000_000)
    scapy_packets = args.scapy_packets or (5_000 if args.quick else 50_000)
    zeek_rows = args.zeek_rows or (100_000 if args.quick else 1_000_000)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = bench_pcap(args.workdir, packets, scapy_packets)
    zeek = bench_zeek(args.workdir, zeek_rows)
    print()
    for line in report(results + ([zeek] if zeek else [])):
        print(line)
    frames = next(r for r in results if r["name"] == "ours frames")
    ref = next(r for r in results if r["name"] == "dpkt records")
    ratio = (frames["n"] / frames["seconds"]) / (ref["n"] / ref["seconds"])
    print(f"\nours frames / dpkt records = {ratio:.2f} (target >= {TARGET}: {'met' if ratio >= TARGET else 'MISSED'})")
    if zeek is None:
        print("zeek conn.log: misuse/ingest/zeek.py (ZeekReader) not found; section skipped")
    else:
        rows = zeek["n"] / zeek["seconds"]
        ok = "met" if rows >= ZEEK_TARGET else "MISSED"
        print(f"zeek conn.log rows/s = {rows:,.0f} (target >= {ZEEK_TARGET:,}: {ok})")
    if not args.keep:
        for f in args.workdir.glob("ingest-bench*.pcap"):
            f.unlink()
        for f in (args.workdir / "conn.log", args.workdir / "warm" / "conn.log"):
            f.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
