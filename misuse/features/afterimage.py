"""AfterImage: online per-packet damped statistics (Kitsune, Mirsky et al., NDSS 2018; N-BaIoT schema).

For every packet, five kinds of stream are updated and read, each at several decay factors
``lambda`` (a packet ``dt`` seconds old weighs ``2 ** (-lambda * dt)``):

========  ====================================  ====================================================
prefix    stream key                            statistics per decay factor
========  ====================================  ====================================================
MI_dir    source MAC + source IP                weight, mean, variance of packet size
H         source IP                             weight, mean, variance of packet size
HH        source IP -> destination IP           weight, mean, std, magnitude, radius, covariance, pcc
HH_jit    source IP -> destination IP           weight, mean, variance of the inter-packet gap
HpHp      source IP:port -> destination IP:port weight, mean, std, magnitude, radius, covariance, pcc
========  ====================================  ====================================================

With the default five decay factors this gives 115 features named exactly as N-BaIoT's columns
(``MI_dir_L5_weight`` ... ``HpHp_L0.01_pcc``). Magnitude and radius combine both directions of a
channel (``sqrt(mean_a^2 + mean_b^2)``, ``sqrt(var_a + var_b)``); covariance is the damped mean of
the product of the two directions' latest residuals and pcc that covariance over ``std_a * std_b``.
Differences from Kitsune-py: the first packet of a channel has jitter 0 (not its epoch timestamp),
and packets without TCP/UDP ports use their IP protocol number (256 + proto) as port.

All state sits in fixed-size tables filled by a numba kernel (:mod:`afterimage_kernels`); streams
idle for ``max_idle`` seconds are evicted first, the least recently seen next, so memory is bounded
by ``max_streams`` whatever the traffic.

Examples
--------
>>> import numpy as np
>>> ai = AfterImage()
>>> len(ai.feature_names), ai.feature_names[0], ai.feature_names[-1]
(115, 'MI_dir_L5_weight', 'HpHp_L0.01_pcc')
"""

from __future__ import annotations

import csv
import ipaddress
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from misuse.errors import InvalidParameterError, ParseError
from misuse.features import afterimage_kernels as kern
from misuse.ingest.base import DeadLetter, open_text
from misuse.ingest.pcap_stream import PacketArrays, iter_packet_arrays

DEFAULT_LAMBDAS = (5.0, 3.0, 1.0, 0.1, 0.01)
_STATS_1D = ("weight", "mean", "variance")
_STATS_2D = ("weight", "mean", "std", "magnitude", "radius", "covariance", "pcc")
# link-layer header bytes by LINKTYPE (for sizes that do not depend on the capture's link type)
_LINK_HEADER = {1: 14, 113: 16, 276: 20, 0: 4, 101: 0, 228: 0, 229: 0}


def feature_names(lambdas: Sequence[float] = DEFAULT_LAMBDAS) -> list[str]:
    """The feature names in output order (N-BaIoT's columns for the default decay factors)."""
    names: list[str] = []
    for prefix, stats in (
        ("MI_dir", _STATS_1D),
        ("H", _STATS_1D),
        ("HH", _STATS_2D),
        ("HH_jit", _STATS_1D),
        ("HpHp", _STATS_2D),
    ):
        for lam in lambdas:
            names += [f"{prefix}_L{lam:g}_{s}" for s in stats]
    return names


def _pow2_at_least(n: int) -> int:
    return 1 << max(4, int(np.ceil(np.log2(max(n, 2)))))


class AfterImage:
    """Stateful per-packet feature extractor over :class:`PacketArrays` chunks.

    Parameters
    ----------
    lambdas:
        Decay factors (per second), all > 0.
    max_streams:
        Capacity of the stream table (the 2D cross-term table gets half); bounds memory.
    max_idle:
        Seconds after which an idle stream may be evicted.
    size:
        ``"wire"``: packet length on the wire (Kitsune's ``frame.len``); ``"ip"``: without the link
        header, so that captures of different link types compare.
    use_mac:
        Key the ``MI_dir`` streams by source MAC and IP (True) or by IP only.

    Examples
    --------
    >>> ai = AfterImage(max_streams=1024)
    >>> from misuse.ingest.pcap_stream import PacketArrays
    >>> ai.n_features
    115
    """

    def __init__(
        self,
        lambdas: Sequence[float] = DEFAULT_LAMBDAS,
        max_streams: int = 100_000,
        max_idle: float = 600.0,
        size: str = "wire",
        use_mac: bool = True,
    ) -> None:
        if not lambdas or any(not (float(x) > 0) for x in lambdas):
            raise InvalidParameterError(f"The 'lambdas' parameter of AfterImage must be > 0. Got {lambdas!r} instead.")
        if max_streams < 64:
            raise InvalidParameterError(
                f"The 'max_streams' parameter of AfterImage must be >= 64. Got {max_streams!r} instead."
            )
        if not max_idle > 0:
            raise InvalidParameterError(
                f"The 'max_idle' parameter of AfterImage must be > 0. Got {max_idle!r} instead."
            )
        if size not in ("wire", "ip"):
            raise InvalidParameterError(
                f"The 'size' parameter of AfterImage must be 'wire' or 'ip'. Got {size!r} instead."
            )
        self.lambdas = np.asarray([float(x) for x in lambdas], dtype="float64")
        self.max_streams = int(max_streams)
        self.max_idle = float(max_idle)
        self.size = size
        self.use_mac = bool(use_mac)
        self.feature_names = feature_names(self.lambdas.tolist())
        self.n_features = len(self.feature_names)
        self.reset()

    def reset(self) -> None:
        """Forget every stream."""
        n_lam = len(self.lambdas)
        self._t1 = self._table(self.max_streams, n_lam * kern.PER_1D)
        self._t2 = self._table(max(self.max_streams // 2, 32), n_lam * kern.PER_2D)
        self._t0: int | None = None
        self.evicted_ = 0
        self.packets_ = 0

    @staticmethod
    def _table(cap: int, width: int) -> tuple[np.ndarray, ...]:
        return (
            np.zeros(_pow2_at_least(2 * cap), dtype=np.int64),  # index: slot + 1, 0 = empty
            np.zeros(cap, dtype=np.uint64),  # keys
            np.zeros(cap, dtype=np.bool_),  # live
            np.zeros(cap, dtype=np.float64),  # last seen (s)
            np.zeros((cap, width), dtype=np.float64),  # state
            np.arange(cap, dtype=np.int64)[::-1].copy(),  # free slots (stack)
            np.array([cap], dtype=np.int64),  # number of free slots
        )

    @property
    def n_streams(self) -> int:
        """Streams currently held (1D table)."""
        return int(self._t1[2].sum())

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the stream tables (fixed at construction)."""
        return int(sum(a.nbytes for a in self._t1 + self._t2))

    def process(self, arr: PacketArrays) -> np.ndarray:
        """Update the streams with a chunk of packets and return their features, shape (n, 115)."""
        n = len(arr)
        out = np.zeros((n, self.n_features), dtype=np.float64)
        if n == 0:
            return out
        if self._t0 is None:
            self._t0 = int(arr.ts_ns[0])
        t = (arr.ts_ns - self._t0).astype(np.float64) / 1e9
        size = arr.wire_len.astype(np.float64)
        if self.size == "ip":
            head = np.zeros(n, dtype=np.float64)
            for lt, h in _LINK_HEADER.items():
                head[arr.linktype == lt] = h
            head += np.where(arr.vlan >= 0, 4.0, 0.0)
            size = np.maximum(size - head, 0.0)
        mac = np.where(arr.has_mac, arr.src_mac, 0).astype(np.uint64) if self.use_mac else np.zeros(n, np.uint64)
        no_ip = arr.l3 == 0
        src_lo = np.where(no_ip, arr.src_mac.astype(np.uint64), arr.src_lo)
        dst_lo = np.where(no_ip, arr.dst_mac.astype(np.uint64), arr.dst_lo)
        proto_port = np.where(arr.l3 == 1, 1000, 256 + arr.ip_proto.astype(np.int64))
        sport = np.where(arr.src_port >= 0, arr.src_port, proto_port).astype(np.uint64)
        dport = np.where(arr.dst_port >= 0, arr.dst_port, proto_port).astype(np.uint64)
        self.evicted_ += kern.extract(
            t,
            size,
            mac,
            arr.src_hi.astype(np.uint64),
            src_lo.astype(np.uint64),
            arr.dst_hi.astype(np.uint64),
            dst_lo.astype(np.uint64),
            sport,
            dport,
            self.lambdas,
            self._t1,
            self._t2,
            self.max_idle,
            out,
        )
        self.packets_ += n
        return out

    def iter_file(
        self, path: str | Path, *, dead: DeadLetter | None = None
    ) -> Iterator[tuple[PacketArrays, np.ndarray]]:
        """Stream a pcap/pcapng file: each chunk's packets with their features."""
        for arr in iter_packet_arrays(path, dead=dead):
            yield arr, self.process(arr)


# ----- Kitsune's tshark TSV ---------------------------------------------------------------------

_TSV_COLUMNS = (
    "frame.time_epoch",
    "frame.len",
    "eth.src",
    "eth.dst",
    "ip.src",
    "ip.dst",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "icmp.type",
    "icmp.code",
    "arp.opcode",
    "arp.src.hw_mac",
    "arp.src.proto_ipv4",
    "arp.dst.hw_mac",
    "arp.dst.proto_ipv4",
    "ipv6.src",
    "ipv6.dst",
)


def _mac_int(text: str) -> int:
    return int(text.replace(":", ""), 16) if text else 0


def _ip_pair(text: str) -> tuple[int, int]:
    if not text:
        return 0, 0
    v = int(ipaddress.ip_address(text.split(",")[0]))
    return v >> 64, v & 0xFFFFFFFFFFFFFFFF


def read_tshark_tsv(path: str | Path, *, dead: DeadLetter | None = None) -> PacketArrays:
    """Read Kitsune's tshark field TSV (19 columns) into one :class:`PacketArrays`.

    Rows that cannot be read go to ``dead`` with their line number.

    Raises
    ------
    ParseError
        When the header is not Kitsune's 19 tshark fields.
    """
    dead = dead if dead is not None else DeadLetter()
    name = str(path)
    cols: dict[str, list[int]] = {
        k: [] for k in ("ts", "len", "smac", "dmac", "shi", "slo", "dhi", "dlo", "sp", "dp", "l3", "proto")
    }
    with open_text(path) as fh:
        rows = csv.reader(fh, delimiter="\t")
        header = next(rows, None)
        if header is None or tuple(h.strip() for h in header) != _TSV_COLUMNS:
            raise ParseError(f"not a Kitsune tshark TSV: header {header!r}", source=name)
        for line_no, row in enumerate(rows, start=2):
            try:
                rec = _tsv_row(row)
            except (ValueError, IndexError) as exc:
                dead.add(name, line_no, f"{type(exc).__name__}: {exc}", "\t".join(row))
                continue
            for k, v in zip(cols, rec, strict=True):
                cols[k].append(v)
    n = len(cols["ts"])
    minus = np.full(n, -1)
    u64 = np.uint64
    return PacketArrays(
        index=np.arange(1, n + 1, dtype=np.int64),
        ts_ns=np.asarray(cols["ts"], dtype=np.int64),
        wire_len=np.asarray(cols["len"], dtype=np.int64),
        cap_len=np.asarray(cols["len"], dtype=np.int64),
        linktype=np.ones(n, dtype=np.int64),
        iface=np.zeros(n, dtype=np.int64),
        src_mac=np.asarray(cols["smac"], dtype=np.int64),
        dst_mac=np.asarray(cols["dmac"], dtype=np.int64),
        has_mac=np.ones(n, dtype=bool),
        eth_type=minus.astype(np.int32),
        vlan=minus.astype(np.int32),
        l3=np.asarray(cols["l3"], dtype=np.int8),
        src_hi=np.asarray(cols["shi"], dtype=u64),
        src_lo=np.asarray(cols["slo"], dtype=u64),
        dst_hi=np.asarray(cols["dhi"], dtype=u64),
        dst_lo=np.asarray(cols["dlo"], dtype=u64),
        ip_proto=np.asarray(cols["proto"], dtype=np.int16),
        ttl=minus.astype(np.int16),
        src_port=np.asarray(cols["sp"], dtype=np.int32),
        dst_port=np.asarray(cols["dp"], dtype=np.int32),
        tcp_flags=minus.astype(np.int16),
        tcp_seq=minus.astype(np.int64),
        payload_len=minus.astype(np.int64),
        icmp_type=minus.astype(np.int16),
        icmp_code=minus.astype(np.int16),
    )


def _tsv_row(row: list[str]) -> tuple[int, ...]:
    row = row + [""] * (len(_TSV_COLUMNS) - len(row))
    ts_text = row[0].strip()
    sec, _, frac = ts_text.partition(".")
    ts = int(sec) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
    size = int(row[1])
    smac, dmac = _mac_int(row[2]), _mac_int(row[3])
    if row[4]:
        (shi, slo), (dhi, dlo), l3 = _ip_pair(row[4]), _ip_pair(row[5]), 4
    elif row[17]:
        (shi, slo), (dhi, dlo), l3 = _ip_pair(row[17]), _ip_pair(row[18]), 6
    elif row[14]:
        (shi, slo), (dhi, dlo), l3 = _ip_pair(row[14]), _ip_pair(row[16]), 1
    else:
        shi = slo = dhi = dlo = 0
        l3 = 0
    if row[6]:
        sp, dp, proto = int(row[6]), int(row[7]), 6
    elif row[8]:
        sp, dp, proto = int(row[8]), int(row[9]), 17
    else:
        sp = dp = -1
        proto = 1 if row[10] else -1
    return ts, size, smac, dmac, shi, slo, dhi, dlo, sp, dp, l3, proto
