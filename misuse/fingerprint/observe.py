"""Device observations: packets or flows seen from one device's side, in one small frame.

Both packet captures and flow logs become the same per-device *observation* frame, so one feature
function (:func:`~misuse.fingerprint.features.window_features`) serves both:

===========  ========  =====================================================================
column       type      meaning
===========  ========  =====================================================================
device       str       the device (its name, or its address when no name is given)
ts           float     epoch seconds, UTC
outbound     bool      the device sent it (packet) or opened it (flow)
remote_net   int64     the other side's network: IPv4 /24 number, IPv6 /48 bits, 0 when none
remote_local bool      the other side is private, link-local, multicast or broadcast
port         int64     the service port: the lower of the two ports, -1 without ports
proto        int64     IP protocol (6 TCP, 17 UDP, 1/58 ICMP), 0 for non-IP frames (ARP...)
bytes        float     bytes (packet length, or both directions of a flow)
units        float     packets: 1; flows: 1 (the unit the size statistics are over)
event_id     str       the packet number or flow uid (evidence)
dns_name     str       the name a DNS query asks for, "" for anything else (optional column)
===========  ========  =====================================================================
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from misuse.errors import InvalidParameterError, SchemaError
from misuse.ingest.base import DeadLetter
from misuse.ingest.pcap_dns import dns_queries, query_packets
from misuse.ingest.pcap_stream import PacketArrays, iter_packet_arrays

OBS_COLUMNS: tuple[str, ...] = (
    "device",
    "ts",
    "outbound",
    "remote_net",
    "remote_local",
    "port",
    "proto",
    "bytes",
    "units",
    "event_id",
)
_PRIVATE_V4 = ((0x0A000000, 8), (0xAC100000, 12), (0xC0A80000, 16), (0xA9FE0000, 16), (0x7F000000, 8), (0, 8))


def _v4_local(addr: np.ndarray) -> np.ndarray:
    a = addr.astype(np.uint64)
    out = a >= np.uint64(0xE0000000)  # multicast, reserved, broadcast
    for net, bits in _PRIVATE_V4:
        out |= (a >> np.uint64(32 - bits)) == np.uint64(net >> (32 - bits))
    return out  # type: ignore[no-any-return]


def parse_device_keys(devices: Mapping[str, str]) -> tuple[dict[int, str], dict[int, str]]:
    """Split ``{address or MAC: device name}`` into IPv4-integer and MAC-integer lookups.

    Raises
    ------
    InvalidParameterError
        When a key is neither an IPv4 address nor a MAC address (``aa:bb:cc:dd:ee:ff``).
    """
    v4: dict[int, str] = {}
    mac: dict[int, str] = {}
    for key, name in devices.items():
        text = key.strip().lower()
        parts = text.replace("-", ":").split(":")
        if len(parts) == 6 and all(len(p) == 2 for p in parts):
            try:
                mac[int("".join(parts), 16)] = name
                continue
            except ValueError:
                pass
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise InvalidParameterError(
                f"device key {key!r} (device {name!r}) is neither an IPv4 nor a MAC address"
            ) from None
        if ip.version != 4:
            raise InvalidParameterError(
                f"device key {key!r} (device {name!r}): only IPv4 addresses or MACs are supported"
            )
        v4[int(ip)] = name
    return v4, mac


def packet_observations(
    chunks: Iterable[PacketArrays], devices: Mapping[str, str] | None, dns: Mapping[int, str] | None = None
) -> pd.DataFrame:
    """The packets to or from the given devices, as observations (one row per packet and device side).

    Parameters
    ----------
    chunks:
        Packet arrays, e.g. from :func:`~misuse.ingest.pcap_stream.iter_packet_arrays`.
    devices:
        ``{IPv4 address or MAC: device name}``. A packet belongs to a device when its IPv4 (or
        ARP sender/target) address is the device's address, or, for other frames, when its
        source or destination MAC is the device's MAC. None makes every private unicast
        IPv4 address a device named by its address.
    dns:
        ``{packet number: queried name}`` (:func:`misuse.ingest.pcap_dns.dns_queries`): fills the
        ``dns_name`` column of the sender's observation of each query.
    """
    if devices is None:
        return _with_dns(_local_packet_observations(list(chunks)), dns)
    v4, mac = parse_device_keys(devices)
    names = sorted(set(devices.values()))
    code = {n: i for i, n in enumerate(names)}
    v4_keys = np.array(sorted(v4), dtype=np.uint64)
    v4_codes = np.array([code[v4[k]] for k in sorted(v4)], dtype=np.int64)
    mac_keys = np.array(sorted(mac), dtype=np.uint64)
    mac_codes = np.array([code[mac[k]] for k in sorted(mac)], dtype=np.int64)
    parts: list[pd.DataFrame] = []
    for arr in chunks:
        if len(arr) == 0:
            continue
        is_v4 = (arr.l3 == 4) | (arr.l3 == 1)  # IPv4, or ARP with its protocol addresses
        for outbound in (True, False):
            mine = (arr.src_lo if outbound else arr.dst_lo).astype(np.uint64)
            other = (arr.dst_lo if outbound else arr.src_lo).astype(np.uint64)
            dev = _lookup(mine, v4_keys, v4_codes) if v4_keys.size else np.full(len(arr), -1)
            dev = np.where(is_v4, dev, -1)
            if mac_keys.size:
                by_mac = _lookup((arr.src_mac if outbound else arr.dst_mac).astype(np.uint64), mac_keys, mac_codes)
                dev = np.where((dev < 0) & ~is_v4 & arr.has_mac, by_mac, dev)
            sel = dev >= 0
            if not sel.any():
                continue
            ports = np.where(
                (arr.src_port[sel] >= 0) & (arr.dst_port[sel] >= 0),
                np.minimum(arr.src_port[sel], arr.dst_port[sel]),
                -1,
            )
            o = other[sel]
            remote_v4 = is_v4[sel]
            parts.append(
                pd.DataFrame(
                    {
                        "device": np.array(names, dtype=object)[dev[sel]],
                        "ts": arr.ts_ns[sel] / 1e9,
                        "outbound": np.full(int(sel.sum()), outbound),
                        "remote_net": np.where(remote_v4, o >> np.uint64(8), 0).astype(np.int64),
                        "remote_local": np.where(remote_v4, _v4_local(o), True),
                        "port": ports.astype(np.int64),
                        "proto": np.where(arr.l3[sel] >= 4, arr.ip_proto[sel], 0).astype(np.int64),
                        "bytes": arr.wire_len[sel].astype(np.float64),
                        "units": np.ones(int(sel.sum())),
                        "event_id": arr.index[sel].astype(str),
                    }
                )
            )
    if not parts:
        return _with_dns(_empty(), dns)
    obs = pd.concat(parts, ignore_index=True).sort_values("ts", kind="stable").reset_index(drop=True)
    return _with_dns(obs, dns)


def _with_dns(obs: pd.DataFrame, dns: Mapping[int, str] | None) -> pd.DataFrame:
    if dns is None or "dns_name" in obs.columns:
        return obs
    names = {str(k): v for k, v in dns.items()}
    asked = obs["event_id"].map(names).astype(object)
    asked = asked.where(asked.notna(), "")
    return obs.assign(dns_name=asked.where(obs["outbound"].to_numpy(dtype=bool), ""))


def capture_observations(
    path: str | Path, devices: Mapping[str, str] | None, *, dead: DeadLetter | None = None
) -> pd.DataFrame:
    """:func:`packet_observations` of one capture file, with the names of its DNS queries (a second,
    cheap pass over the file parses only the packets the first pass saw going to port 53).

    Records the packet reader cannot read go to ``dead`` (a fresh in-memory
    :class:`~misuse.ingest.base.DeadLetter` when None) and are skipped.
    """
    queries: set[int] = set()

    def tap() -> Iterator[PacketArrays]:
        for arr in iter_packet_arrays(path, dead=dead):
            queries.update(query_packets([arr]))
            yield arr

    obs = packet_observations(tap(), devices)
    return _with_dns(obs, dns_queries(path, queries))


def _local_packet_observations(chunks: list[PacketArrays]) -> pd.DataFrame:
    addrs: set[int] = set()
    for arr in chunks:
        v4 = (arr.l3 == 4) | (arr.l3 == 1)
        for col in (arr.src_lo[v4], arr.dst_lo[v4]):
            a = col.astype(np.uint64)
            unicast = (
                _v4_local(a) & (a < np.uint64(0xE0000000)) & ((a >> np.uint64(24)) != 0) & ((a >> np.uint64(24)) != 127)
            )
            addrs.update(int(x) for x in np.unique(a[unicast]))
    names = {str(ipaddress.IPv4Address(a)): str(ipaddress.IPv4Address(a)) for a in sorted(addrs)}
    return packet_observations(chunks, names) if names else _empty()


def _lookup(values: np.ndarray, keys: np.ndarray, codes: np.ndarray) -> np.ndarray:
    pos = np.clip(np.searchsorted(keys, values), 0, keys.size - 1)
    return np.where(keys[pos] == values, codes[pos], -1)  # type: ignore[no-any-return]


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in zip(OBS_COLUMNS, _DTYPES, strict=True)})


_DTYPES = (object, "float64", bool, "int64", bool, "int64", "int64", "float64", "float64", object)
_PROTO = {"tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58}


def _net_and_local(addresses: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    nets = np.zeros(len(addresses), dtype=np.int64)
    local = np.ones(len(addresses), dtype=bool)
    cache: dict[str, tuple[int, bool]] = {}
    for i, text in enumerate(addresses.astype(str)):
        hit = cache.get(text)
        if hit is None:
            try:
                ip = ipaddress.ip_address(text)
                net = int(ip) >> 8 if ip.version == 4 else (int(ip) >> 80) & 0x7FFFFFFFFFFF
                hit = (net, ip.is_private or ip.is_multicast or ip.is_link_local or ip.is_unspecified)
            except ValueError:
                hit = (0, True)
            if text == "255.255.255.255":
                hit = (hit[0], True)
            cache[text] = hit
        nets[i], local[i] = hit
    return nets, local


def flow_observations(frame: pd.DataFrame, devices: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Flow events (Zeek ``conn.log`` through the readers) as observations of their devices.

    Parameters
    ----------
    frame:
        ``kind="flow"`` events: ``entity`` the originator, ``peer`` the responder,
        ``num.orig_bytes``/``num.resp_bytes``, ``num.src_port``/``num.dst_port``, ``cat.proto``.
    devices:
        ``{address: device name}``; a flow is observed from each side that is a device. None
        makes every private address a device named by its address.

    Raises
    ------
    SchemaError
        When ``entity``, ``peer`` or ``ts`` is missing.
    """
    for col in ("ts", "entity", "peer"):
        if col not in frame.columns:
            raise SchemaError(f"flow_observations: flow frame lacks the '{col}' column")
    flows = frame[frame["kind"] == "flow"] if "kind" in frame.columns else frame
    if flows.empty:
        return _empty()
    ts = flows["ts"].to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9

    def num(name: str) -> np.ndarray:
        if name not in flows.columns:
            return np.zeros(len(flows))
        return pd.to_numeric(flows[name], errors="coerce").fillna(0.0).to_numpy()

    sp, dp = num("num.src_port"), num("num.dst_port")
    has_ports = ("num.src_port" in flows.columns) and ("num.dst_port" in flows.columns)
    port = np.where(has_ports, np.minimum(sp, dp), -1).astype(np.int64)
    proto_text = flows["cat.proto"].astype(str).str.lower() if "cat.proto" in flows.columns else None
    proto = (
        proto_text.map(_PROTO).fillna(255).to_numpy().astype(np.int64)
        if proto_text is not None
        else np.full(len(flows), 6, dtype=np.int64)
    )
    size = num("num.orig_bytes") + num("num.resp_bytes")
    ids = flows["event_id"].astype(str).to_numpy() if "event_id" in flows.columns else np.arange(len(flows)).astype(str)
    parts = []
    for outbound, mine_col, other_col in ((True, "entity", "peer"), (False, "peer", "entity")):
        mine = flows[mine_col].astype(str)
        if devices is None:
            _, mine_local = _net_and_local(mine)
            sel = mine_local & (mine != "") & ~mine.isin(["0.0.0.0", "255.255.255.255", "::"]).to_numpy()
            names = mine.to_numpy()
        else:
            names = mine.map(devices).to_numpy()
            sel = pd.notna(names)
        if not sel.any():
            continue
        nets, local = _net_and_local(flows[other_col].astype(str)[sel])
        parts.append(
            pd.DataFrame(
                {
                    "device": names[sel].astype(object),
                    "ts": ts[sel],
                    "outbound": np.full(int(sel.sum()), outbound),
                    "remote_net": nets,
                    "remote_local": local,
                    "port": port[sel],
                    "proto": proto[sel],
                    "bytes": size[sel],
                    "units": np.ones(int(sel.sum())),
                    "event_id": ids[sel],
                }
            )
        )
    if not parts:
        return _empty()
    return pd.concat(parts, ignore_index=True).sort_values("ts", kind="stable").reset_index(drop=True)
