"""Per-flow packet sequences: the first ``n_packets`` packets of every flow as a small matrix.

In the spirit of Lucid and nPrint, a flow is described by what its leading packets look like, one
column per packet and one row (channel) per quantity:

``size``
    ``log1p`` of the transport payload length in bytes (link-independent: no MAC, SLL or IP header).
``direction``
    +1 from the flow's initiator (sender of its first packet), -1 from the responder.
``iat``
    ``log1p`` of the milliseconds since the flow's previous packet (0 for the first).
``syn``, ``ack``, ``fin``, ``rst``, ``psh``
    TCP flag bits (0 for UDP and ICMP).
``present``
    1 for a real packet, 0 for padding (flows shorter than ``n_packets`` are padded with zeros).

Two sources give the same layout:

- :func:`pcap_sequences` / :func:`packet_sequences` assemble bidirectional flows (protocol and the
  two endpoints, split after ``idle_timeout`` seconds of silence) from the packet arrays of
  :func:`misuse.ingest.pcap_stream.iter_packet_arrays`, vectorised (no Python object per packet);
- :func:`history_sequences` rebuilds an *approximate* sequence from Zeek ``conn.log`` fields when only
  flow records exist (IoT-23 34-1): one step per ``history`` letter (direction from its case, flags
  from its letter), data sizes spread evenly over the data steps of each direction and the flow's
  duration spread evenly over its steps. Zeek logs each event type only once per direction, so this
  is the flow's event *shape*, not its packets; say so when reporting results on it.

:func:`to_frame` flattens a sequence array to feature columns ``p{i:02d}_{channel}`` (the layout
:class:`misuse.detectors.cnn.PacketCNN` reads back) and :func:`flow_summary` gives a few per-flow
aggregates of the same sequence (edge features for the graph model).

Example
-------
>>> import numpy as np
>>> seq = history_sequences(np.array(["ShADadFf"]), np.array([4.0]), np.array([4.0]),
...                         np.array([100.0]), np.array([900.0]), np.array([0.5]), n_packets=4)
>>> seq.shape
(1, 9, 4)
>>> seq[0, CHANNELS.index("direction")].tolist()
[1.0, -1.0, 1.0, 1.0]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from misuse.errors import InvalidParameterError, SchemaError
from misuse.ingest import pcap_kernels as kern
from misuse.ingest.pcap_stream import PacketArrays, iter_packet_arrays

CHANNELS = ("size", "direction", "iat", "syn", "ack", "fin", "rst", "psh", "present")
_FLAG_BITS = {"syn": 0x02, "ack": 0x10, "fin": 0x01, "rst": 0x04, "psh": 0x08}
COLUMN_RE = re.compile(r"^p(\d+)_([a-z]+)$")


@dataclass
class FlowSequences:
    """Flows assembled from packets and their leading-packet sequences.

    Attributes
    ----------
    flows:
        One row per flow, in order of first packet: ``first_ts`` / ``last_ts`` (seconds),
        ``src`` / ``dst`` (initiator and responder address as text), ``sport`` / ``dport``,
        ``proto``, ``packets`` (all packets of the flow, not only the leading ones).
    seq:
        ``(flows, len(CHANNELS), n_packets)`` float32 array.
    packet_flow:
        For every input packet, the row of its flow in ``flows`` (-1 for packets without an IP layer).
    packet_pos:
        For every input packet, its 0-based position within its flow (-1 without an IP layer).
    """

    flows: pd.DataFrame
    seq: np.ndarray
    packet_flow: np.ndarray
    packet_pos: np.ndarray


def _check_n(n_packets: int) -> None:
    if not isinstance(n_packets, int) or n_packets < 1:
        raise InvalidParameterError(f"n_packets must be an int >= 1. Got {n_packets!r} instead.")


def _address_text(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    out = np.empty(len(lo), dtype=object)
    v4 = hi == 0
    lo4 = lo[v4].astype(np.uint64)
    out[v4] = [f"{(a >> 24) & 255}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}" for a in lo4.tolist()]
    out[~v4] = [f"{h:016x}{low:016x}" for h, low in zip(hi[~v4].tolist(), lo[~v4].tolist(), strict=True)]
    return out


def packet_sequences(
    arr: PacketArrays, n_packets: int = 20, idle_timeout: float = 120.0, window: float | None = None
) -> FlowSequences:
    """Assemble bidirectional flows from packet arrays and take each flow's first ``n_packets``.

    A flow is the packets sharing protocol and the unordered pair of (address, port) endpoints,
    cut where the flow was silent for more than ``idle_timeout`` seconds. Packets without an IPv4
    or IPv6 layer (ARP, ...) belong to no flow. With ``window`` (seconds), a flow is further cut at
    every multiple of ``window`` in absolute time, as Lucid does, so that long-lived connections
    (an MQTT client's one TCP session) give one sample per window; direction stays relative to the
    whole flow's initiator, and each row of the result is then one (flow, window) segment.
    """
    _check_n(n_packets)
    if idle_timeout <= 0:
        raise InvalidParameterError(f"idle_timeout must be > 0 seconds. Got {idle_timeout!r} instead.")
    if window is not None and not window > 0:
        raise InvalidParameterError(f"window must be None or > 0 seconds. Got {window!r} instead.")
    n = len(arr)
    ip = np.flatnonzero((arr.l3 == kern.L3_IPV4) | (arr.l3 == kern.L3_IPV6))
    packet_flow = np.full(n, -1, dtype=np.int64)
    packet_pos = np.full(n, -1, dtype=np.int64)
    if ip.size == 0:
        empty = pd.DataFrame(columns=["first_ts", "last_ts", "src", "dst", "sport", "dport", "proto", "packets"])
        return FlowSequences(empty, np.zeros((0, len(CHANNELS), n_packets), np.float32), packet_flow, packet_pos)
    sp = np.maximum(arr.src_port[ip], 0).astype(np.int64)
    dp = np.maximum(arr.dst_port[ip], 0).astype(np.int64)
    a = pd.DataFrame({"hi": arr.src_hi[ip], "lo": arr.src_lo[ip], "p": sp})
    b = pd.DataFrame({"hi": arr.dst_hi[ip], "lo": arr.dst_lo[ip], "p": dp})
    a_first = (a["hi"] < b["hi"]) | (
        (a["hi"] == b["hi"]) & ((a["lo"] < b["lo"]) | ((a["lo"] == b["lo"]) & (a["p"] <= b["p"])))
    )
    af = a_first.to_numpy()
    key = pd.DataFrame(
        {
            "proto": arr.ip_proto[ip],
            "h1": np.where(af, a["hi"], b["hi"]),
            "l1": np.where(af, a["lo"], b["lo"]),
            "p1": np.where(af, a["p"], b["p"]),
            "h2": np.where(af, b["hi"], a["hi"]),
            "l2": np.where(af, b["lo"], a["lo"]),
            "p2": np.where(af, b["p"], a["p"]),
        }
    )
    conv = key.groupby(list(key.columns), sort=False).ngroup().to_numpy()
    ts = arr.ts_ns[ip].astype(np.int64)
    order = np.lexsort((np.arange(ip.size), ts, conv))
    conv_s, ts_s = conv[order], ts[order]
    new_flow = np.ones(ip.size, dtype=bool)
    new_flow[1:] = (conv_s[1:] != conv_s[:-1]) | (ts_s[1:] - ts_s[:-1] > int(idle_timeout * 1e9))
    conv_id = np.cumsum(new_flow) - 1  # the whole flow (direction is relative to its initiator)
    conv_first = np.flatnonzero(new_flow)
    pos_in_conv = np.arange(ip.size) - conv_first[conv_id]
    if window is not None:
        w = ts_s // int(window * 1e9)
        new_flow[1:] |= w[1:] != w[:-1]
    flow_s = np.cumsum(new_flow) - 1
    starts = np.flatnonzero(new_flow)
    pos_s = np.arange(ip.size) - starts[flow_s]
    # number flows by their first packet's time (then file order)
    first_order = np.lexsort((order[starts], ts_s[starts]))
    rank = np.empty_like(first_order)
    rank[first_order] = np.arange(first_order.size)
    flow_s = rank[flow_s]
    pkt = ip[order]
    packet_flow[pkt] = flow_s
    packet_pos[pkt] = pos_s
    initiator = pkt[conv_first][conv_id]  # per sorted packet: its whole flow's first packet
    n_flows = starts.size
    first_pkt = np.empty(n_flows, dtype=np.int64)
    first_pkt[flow_s[pos_s == 0]] = pkt[pos_s == 0]
    counts = np.bincount(flow_s, minlength=n_flows)
    last_ts = np.full(n_flows, np.iinfo(np.int64).min)
    np.maximum.at(last_ts, flow_s, ts_s)
    seg_init = np.empty(n_flows, dtype=np.int64)
    seg_init[flow_s[pos_s == 0]] = initiator[pos_s == 0]
    fs_hi, fs_lo = arr.src_hi[seg_init], arr.src_lo[seg_init]
    fs_p = np.maximum(arr.src_port[seg_init], 0)
    # direction: same source endpoint as the whole flow's first packet
    fwd = (
        (arr.src_hi[pkt] == arr.src_hi[initiator])
        & (arr.src_lo[pkt] == arr.src_lo[initiator])
        & (np.maximum(arr.src_port[pkt], 0) == np.maximum(arr.src_port[initiator], 0))
    )
    prev_ts = np.r_[ts_s[0], ts_s[:-1]]
    iat_ms = np.where(pos_in_conv == 0, 0.0, (ts_s - prev_ts) / 1e6)
    keep = pos_s < n_packets
    seq = np.zeros((n_flows, len(CHANNELS), n_packets), dtype=np.float32)
    f, p = flow_s[keep], pos_s[keep]
    kp = pkt[keep]
    flags = np.maximum(arr.tcp_flags[kp], 0).astype(np.int64)
    tcp = arr.ip_proto[kp] == 6
    seq[f, CHANNELS.index("size"), p] = np.log1p(np.maximum(arr.payload_len[kp], 0))
    seq[f, CHANNELS.index("direction"), p] = np.where(fwd[keep], 1.0, -1.0)
    seq[f, CHANNELS.index("iat"), p] = np.log1p(np.maximum(iat_ms[keep], 0.0))
    for name, bit in _FLAG_BITS.items():
        seq[f, CHANNELS.index(name), p] = (tcp & ((flags & bit) != 0)).astype(np.float32)
    seq[f, CHANNELS.index("present"), p] = 1.0
    flows = pd.DataFrame(
        {
            "first_ts": arr.ts_ns[first_pkt] / 1e9,
            "last_ts": last_ts / 1e9,
            "src": _address_text(fs_hi, fs_lo),
            "dst": _address_text(arr.dst_hi[seg_init], arr.dst_lo[seg_init]),
            "sport": fs_p.astype(np.int64),
            "dport": np.maximum(arr.dst_port[seg_init], 0).astype(np.int64),
            "proto": arr.ip_proto[first_pkt].astype(np.int64),
            "packets": counts,
        }
    )
    return FlowSequences(flows, seq, packet_flow, packet_pos)


def pcap_sequences(
    path: str | Path, n_packets: int = 20, idle_timeout: float = 120.0, window: float | None = None
) -> FlowSequences:
    """:func:`packet_sequences` of a whole pcap/pcapng file (read with the compiled reader)."""
    parts = list(iter_packet_arrays(path))
    if not parts:
        raise SchemaError(f"{path}: no packets")
    return packet_sequences(PacketArrays.concat(parts), n_packets, idle_timeout, window)


# ----- Zeek history -------------------------------------------------------------------------------
_HISTORY_FLAGS = {"s": ("syn",), "h": ("syn", "ack"), "a": ("ack",), "d": ("psh",), "f": ("fin",), "r": ("rst",)}


def history_sequences(
    history: Iterable[object],
    orig_pkts: np.ndarray,
    resp_pkts: np.ndarray,
    orig_bytes: np.ndarray,
    resp_bytes: np.ndarray,
    duration: np.ndarray,
    n_packets: int = 20,
) -> np.ndarray:
    """Approximate leading-packet sequences from Zeek conn.log fields (one step per history letter).

    Upper-case letters are the originator's, lower-case the responder's; ``^`` (direction flipped)
    is skipped. Data steps (``D``/``d``) carry that direction's payload bytes divided by its number
    of data steps; every step is ``duration / steps`` after the previous one. A flow with no history
    but packets (Zeek's ``-``) gets one step per packet up to ``n_packets``, all from the originator
    first. Missing numbers count as 0.
    """
    _check_n(n_packets)
    hist = ["" if h is None or (isinstance(h, float) and np.isnan(h)) or h == "-" else str(h) for h in history]
    n = len(hist)
    num = [
        np.nan_to_num(np.asarray(v, dtype=np.float64), nan=0.0)
        for v in (orig_pkts, resp_pkts, orig_bytes, resp_bytes, duration)
    ]
    if any(len(v) != n for v in num):
        raise SchemaError(f"history_sequences: {n} histories but numeric columns of lengths {[len(v) for v in num]}")
    o_pk, r_pk, o_by, r_by, dur = num
    seq = np.zeros((n, len(CHANNELS), n_packets), dtype=np.float32)
    ci = {c: i for i, c in enumerate(CHANNELS)}
    for k, h in enumerate(hist):
        steps = [ch for ch in h if ch != "^"]
        if not steps:
            steps = ["D"] * int(min(o_pk[k], n_packets)) + ["d"] * int(min(r_pk[k], n_packets))
        steps = steps[:n_packets]
        if not steps:
            continue
        n_data = {True: sum(1 for s in steps if s == "D"), False: sum(1 for s in steps if s == "d")}
        gap = np.log1p(1000.0 * dur[k] / len(steps)) if len(steps) > 1 else 0.0
        for j, ch in enumerate(steps):
            fwd = ch.isupper()
            seq[k, ci["direction"], j] = 1.0 if fwd else -1.0
            seq[k, ci["present"], j] = 1.0
            seq[k, ci["iat"], j] = gap if j else 0.0
            for flag in _HISTORY_FLAGS.get(ch.lower(), ()):
                seq[k, ci[flag], j] = 1.0
            if ch in "Dd":
                total = o_by[k] if fwd else r_by[k]
                seq[k, ci["size"], j] = np.log1p(max(total, 0.0) / max(n_data[fwd], 1))
    return seq


# ----- flat forms ---------------------------------------------------------------------------------
def column_names(n_packets: int) -> list[str]:
    """Flat feature names in ``to_frame`` order: packet-major, ``p00_size, p00_direction, ...``."""
    return [f"p{i:02d}_{c}" for i in range(n_packets) for c in CHANNELS]


def to_frame(seq: np.ndarray) -> pd.DataFrame:
    """A ``(flows, channels, n_packets)`` array as one row per flow, columns ``p{i:02d}_{channel}``."""
    if seq.ndim != 3 or seq.shape[1] != len(CHANNELS):
        raise SchemaError(f"to_frame: expected shape (flows, {len(CHANNELS)}, n_packets), got {seq.shape}")
    flat = np.transpose(seq, (0, 2, 1)).reshape(seq.shape[0], -1)
    return pd.DataFrame(flat.astype(np.float64), columns=column_names(seq.shape[2]))


def flow_summary(seq: np.ndarray) -> pd.DataFrame:
    """A few aggregates per flow of its leading packets (edge features for graph models)."""
    ci = {c: i for i, c in enumerate(CHANNELS)}
    present = seq[:, ci["present"]] > 0
    fwd = present & (seq[:, ci["direction"]] > 0)
    bwd = present & (seq[:, ci["direction"]] < 0)
    size = seq[:, ci["size"]]
    iat = seq[:, ci["iat"]]
    n = present.sum(axis=1).astype(np.float64)

    def _mean(v: np.ndarray, m: np.ndarray) -> np.ndarray:
        return np.asarray(np.where(m, v, 0).sum(axis=1) / np.maximum(m.sum(axis=1), 1))

    out = {
        "n_leading": n,
        "fwd_share": fwd.sum(axis=1) / np.maximum(n, 1),
        "size_fwd_mean": _mean(size, fwd),
        "size_bwd_mean": _mean(size, bwd),
        "size_max": np.where(present, size, 0).max(axis=1),
        "iat_mean": _mean(iat, present),
        "iat_max": np.where(present, iat, 0).max(axis=1),
    }
    for flag in _FLAG_BITS:
        out[f"{flag}_share"] = seq[:, ci[flag]].sum(axis=1) / np.maximum(n, 1)
    return pd.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in out.items()})
