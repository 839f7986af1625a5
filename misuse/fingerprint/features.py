"""Per-device window features: the fingerprint vector of one device over one time window.

In the spirit of IoT Sentinel (Miettinen et al., ICDCS 2017), which fingerprints a device from the
header features of its packets, a device's traffic in a window of ``window`` seconds becomes one
fixed-length vector (columns starting with ``f.``), in groups:

* ``size``: log volume (units, bytes), and the mean, spread and 10/50/90th percentiles of the log
  size of a packet (or flow);
* ``timing``: log median gap between units, share of gaps under one second;
* ``protocol``: shares of TCP, UDP, ICMP, other IP and non-IP (ARP) units, share sent by the device;
* ``ports``: shares of units per service port class (DNS, DHCP, NTP, HTTP, HTTPS, MQTT, MQTT/TLS,
  mDNS, SSDP, telnet, SSH, IRC, other well-known, registered, dynamic, none) and distinct ports;
* ``peers``: distinct remote networks, share of local/multicast peers;
* ``peer_hash`` (not in the defaults): the share of units per hashed remote /24 (16 stable
  buckets). It names the device's cloud, but cloud addresses move from day to day (on the
  iot-on-demand pcaps it lowered next-days accuracy from about 0.99 to 0.75), so it is opt-in.
* ``dns`` (not in the defaults): the names the device looks up (observations with a ``dns_name``, from
  :func:`misuse.ingest.pcap_dns.dns_queries`): log count of queries and the share of queries per
  hashed registered domain (last two labels, 16 stable buckets). Unlike cloud addresses, the
  names a device resolves stay the same from day to day. Windows without a query have zeros. On
  the iot-on-demand pcaps (1 h windows) most windows hold no query and the other groups already
  separate the types, so adding it changed next-days accuracy by noise only (0.985 -> 0.982,
  ``benchmarks/fingerprint.py`` prints both); it is opt-in.

The same function serves bulk scoring and the live path (which buffers one window of
observations and calls it), so there is one implementation of every feature.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from misuse.errors import InvalidParameterError

GROUPS: tuple[str, ...] = ("size", "timing", "protocol", "ports", "peers")
ALL_GROUPS: tuple[str, ...] = (*GROUPS, "peer_hash", "dns")
PORT_CLASSES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("dns", (53,)),
    ("dhcp", (67, 68)),
    ("ntp", (123,)),
    ("http", (80, 8080)),
    ("https", (443,)),
    ("mqtt", (1883,)),
    ("mqtts", (8883,)),
    ("mdns", (5353,)),
    ("ssdp", (1900,)),
    ("telnet", (23, 2323)),
    ("ssh", (22,)),
    ("irc", (6667,)),
)
PEER_BUCKETS = 16
DNS_BUCKETS = 16
_EVIDENCE = 10
_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)


def _port_class(port: np.ndarray) -> np.ndarray:
    """Index into the port-class names (see :func:`port_class_names`)."""
    out = np.full(port.shape, len(PORT_CLASSES) + 3, dtype=np.int64)  # none
    out[(port >= 0) & (port < 1024)] = len(PORT_CLASSES)  # other well-known
    out[(port >= 1024) & (port < 49152)] = len(PORT_CLASSES) + 1  # registered
    out[port >= 49152] = len(PORT_CLASSES) + 2  # dynamic
    for i, (_, ports) in enumerate(PORT_CLASSES):
        out[np.isin(port, ports)] = i
    return out


def port_class_names() -> list[str]:
    """The names of the port classes, in feature order."""
    return [n for n, _ in PORT_CLASSES] + ["well_known", "registered", "dynamic", "none"]


def peer_bucket(remote_net: np.ndarray) -> np.ndarray:
    """A stable hash bucket (0..15) per remote network number."""
    h = (remote_net.astype(np.uint64) * _HASH_MULT) >> np.uint64(60)
    return h.astype(np.int64)  # type: ignore[no-any-return]


def window_features(
    obs: pd.DataFrame,
    window: float = 3600.0,
    *,
    min_units: int = 5,
    groups: Sequence[str] = GROUPS,
) -> pd.DataFrame:
    """One fingerprint vector per (device, window) from an observation frame.

    Parameters
    ----------
    obs:
        Observations (:mod:`misuse.fingerprint.observe`).
    window:
        Window length in seconds; windows start at multiples of it (UTC epoch).
    min_units:
        Windows with fewer packets/flows are dropped (too little to fingerprint).
    groups:
        Feature groups to compute (any of :data:`ALL_GROUPS`; default :data:`GROUPS`).

    Returns
    -------
    pandas.DataFrame
        ``device``, ``window_start`` (epoch s), ``units``, ``ports`` (frozenset of service
        ports seen), ``evidence`` (the first event ids of the window) and the ``f.*``
        features; one row per window, sorted by device and time.

    Examples
    --------
    >>> obs = pd.DataFrame({"device": ["cam"] * 6, "ts": [0.0, 1, 2, 3, 4, 5], "outbound": [True] * 6,
    ...     "remote_net": [7] * 6, "remote_local": [False] * 6, "port": [443] * 6, "proto": [6] * 6,
    ...     "bytes": [60.0] * 6, "units": [1.0] * 6, "event_id": list("abcdef")})
    >>> f = window_features(obs, 60.0)
    >>> float(f["f.port.https"].iloc[0]), float(f["f.proto.tcp"].iloc[0]), int(f["units"].iloc[0])
    (1.0, 1.0, 6)
    """
    if not window > 0:
        raise InvalidParameterError(f"The 'window' parameter of window_features must be > 0. Got {window}.")
    unknown = sorted(set(groups) - set(ALL_GROUPS))
    if unknown:
        raise InvalidParameterError(
            f"The 'groups' parameter of window_features must be among {ALL_GROUPS}. Got {unknown}."
        )
    if obs.empty:
        return pd.DataFrame(columns=["device", "window_start", "units", "ports", "evidence"])
    o = obs.assign(w=np.floor(obs["ts"].to_numpy() / window) * window).sort_values(["device", "w", "ts"], kind="stable")
    keys = ["device", "w"]
    g = o.groupby(keys, sort=True)
    units = g["units"].sum()
    out = pd.DataFrame({"units": units})
    u = o["units"].to_numpy()
    wsum = _WeightedShares(o, keys, u)
    if "size" in groups:
        per = np.log1p(o["bytes"].to_numpy() / np.maximum(u, 1.0))
        s = o.assign(_s=per).groupby(keys, sort=True)["_s"]
        out["f.size.log_units"] = np.log1p(units)
        out["f.size.log_bytes"] = np.log1p(g["bytes"].sum())
        out["f.size.mean"] = s.mean()
        out["f.size.std"] = s.std(ddof=0)
        for q in (0.1, 0.5, 0.9):
            out[f"f.size.q{int(q * 100)}"] = s.quantile(q)
    if "timing" in groups:
        gap = o.groupby(keys, sort=False)["ts"].diff()
        t = o.assign(_g=gap, _fast=(gap < 1.0).astype(float).where(gap.notna())).groupby(keys, sort=True)
        out["f.timing.log_median_gap"] = np.log1p(t["_g"].median().fillna(window))
        out["f.timing.fast_share"] = t["_fast"].mean().fillna(0.0)
    if "protocol" in groups:
        proto = o["proto"].to_numpy()
        for name, sel in (
            ("tcp", proto == 6),
            ("udp", proto == 17),
            ("icmp", np.isin(proto, (1, 58))),
            ("other_ip", ~np.isin(proto, (0, 1, 6, 17, 58))),
            ("non_ip", proto == 0),
        ):
            out[f"f.proto.{name}"] = wsum.share(sel)
        out["f.proto.outbound"] = wsum.share(o["outbound"].to_numpy().astype(bool))
    if "ports" in groups:
        cls = _port_class(o["port"].to_numpy())
        for i, name in enumerate(port_class_names()):
            out[f"f.port.{name}"] = wsum.share(cls == i)
        out["f.port.log_distinct"] = (
            np.log1p(o[o["port"] >= 0].groupby(keys)["port"].nunique()).reindex(out.index).fillna(0.0)
        )
    if "peers" in groups:
        remote = o[o["remote_net"] != 0]
        out["f.peer.log_distinct"] = (
            np.log1p(remote.groupby(keys)["remote_net"].nunique()).reindex(out.index).fillna(0.0)
        )
        out["f.peer.local_share"] = wsum.share(o["remote_local"].to_numpy().astype(bool))
    if "peer_hash" in groups:
        bucket = peer_bucket(o["remote_net"].to_numpy())
        public = ~o["remote_local"].to_numpy().astype(bool)
        for b in range(PEER_BUCKETS):
            out[f"f.peer.h{b:02d}"] = wsum.share(public & (bucket == b))
    if "dns" in groups:
        names = o["dns_name"].fillna("").astype(str).to_numpy() if "dns_name" in o.columns else None
        asked = names != "" if names is not None else np.zeros(len(o), dtype=bool)
        n_q = o.assign(_q=asked.astype(float)).groupby(keys, sort=True)["_q"].sum()
        out["f.dns.log_queries"] = np.log1p(n_q)
        bucket = (
            name_bucket(np.array([registered_domain(n) for n in names]), DNS_BUCKETS)
            if names is not None
            else np.zeros(len(o), dtype=np.int64)
        )
        for b in range(DNS_BUCKETS):
            hit = o.assign(_h=(asked & (bucket == b)).astype(float)).groupby(keys, sort=True)["_h"].sum()
            out[f"f.dns.h{b:02d}"] = hit / n_q.where(n_q > 0, 1.0)
    ports = o[o["port"] >= 0].groupby(keys)["port"].agg(lambda p: frozenset(int(x) for x in p.unique()))
    out["ports"] = ports.reindex(out.index)
    out["ports"] = out["ports"].apply(lambda p: p if isinstance(p, frozenset) else frozenset())
    first = o.groupby(keys, sort=True).head(_EVIDENCE)
    out["evidence"] = first.groupby(keys, sort=True)["event_id"].agg(lambda e: tuple(str(x) for x in e))
    out = out[out["units"] >= min_units].reset_index().rename(columns={"w": "window_start"})
    return out


class _WeightedShares:
    """Share of units per group for a boolean selection, aligned to the sorted group index."""

    def __init__(self, o: pd.DataFrame, keys: list[str], units: np.ndarray) -> None:
        self._o = o
        self._keys = keys
        self._units = units
        self._total = o.groupby(keys, sort=True)["units"].sum()

    def share(self, sel: np.ndarray) -> pd.Series:
        hit = self._o.assign(_h=np.where(sel, self._units, 0.0)).groupby(self._keys, sort=True)["_h"].sum()
        return hit / self._total.where(self._total > 0, 1.0)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The ``f.*`` feature columns of a window-feature frame, in order."""
    return [c for c in frame.columns if c.startswith("f.")]


def registered_domain(name: str) -> str:
    """The last two labels of a host name (``a1.iot.us-west-2.amazonaws.com`` -> ``amazonaws.com``).

    A plain heuristic, not the public-suffix list: ``example.co.uk`` gives ``co.uk``.
    """
    labels = [p for p in name.lower().rstrip(".").split(".") if p]
    return ".".join(labels[-2:])


def name_bucket(names: np.ndarray, buckets: int) -> np.ndarray:
    """A stable bucket in ``[0, buckets)`` per name (FNV-1a, the same on every run and machine)."""
    out = np.empty(len(names), dtype=np.int64)
    cache: dict[str, int] = {}
    for i, n in enumerate(names):
        b = cache.get(n)
        if b is None:
            h = 0xCBF29CE484222325
            for byte in str(n).encode():
                h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
            b = cache[n] = h % buckets
        out[i] = b
    return out
