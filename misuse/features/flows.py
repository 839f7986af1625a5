"""Flow features for flow-level detectors: per flow, per device window and per device baseline.

Each flow row gets

- its own quantities: ``log1p`` of duration, bytes and packets each way; protocol and Zeek
  connection state as one-hot columns;
- its device's 60 s window (from :func:`misuse.features.windows.window_features`, one
  implementation of window features): flow count, distinct peers and ports, bytes, failed share;
- its device's own baseline (:class:`~misuse.features.windows.EntityBaseline`): the window values
  minus the device's training medians (``dev:`` columns);
- novelty against training: whether the destination port was ever used by this device, and
  whether it was used by any training device. (Peer novelty is left out on purpose: NTP and DNS
  pools rotate servers, so a new peer is ordinary; on IoT-23 it tripled the false alarms.)

Works on any Zeek conn.log-shaped frame (IoT-23 labelled logs, the renamed IoT-23 CSV, or Zeek
output of a pcap).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from misuse.errors import SchemaError
from misuse.features.windows import EntityBaseline, window_features
from misuse.ingest.zeek import ZeekReader

FLOW_NUMS = ("duration", "orig_bytes", "resp_bytes", "orig_pkts", "resp_pkts", "orig_ip_bytes", "resp_ip_bytes")
PROTOS = ("tcp", "udp", "icmp")
STATES = ("S0", "S1", "SF", "REJ", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH", "S2", "S3")
_CSV_RENAME = {
    "timestamp": "ts",
    "origin_address": "entity",
    "response_address": "peer",
    "response_port": "dst_port",
    "protocol": "proto",
}


def read_iot23_flows(path: str | Path) -> pd.DataFrame:
    """A Zeek conn.log (labelled or not) or IoT-23's renamed CSV as one flat flow frame.

    Columns: ``ts`` (seconds), ``entity``, ``peer``, ``dst_port``, ``proto``, ``conn_state``,
    the ``FLOW_NUMS`` quantities and ``label`` ("benign" or the attack detail).
    """
    path = Path(path)
    if path.suffix == ".csv":
        raw = pd.read_csv(path).rename(columns=_CSV_RENAME)
        missing = {"ts", "entity", "peer", "dst_port", "proto", "conn_state"} - set(raw.columns)
        if missing:
            raise SchemaError(f"{path}: missing flow columns {sorted(missing)}")
        label = raw.get("detailed_label", pd.Series("-", index=raw.index)).astype(str)
        coarse = raw.get("label", pd.Series("benign", index=raw.index)).astype(str).str.lower()
        out = raw[["ts", "entity", "peer", "dst_port", "proto", "conn_state"]].copy()
        out["label"] = np.where(coarse == "benign", "benign", label)
        for c in FLOW_NUMS:
            out[c] = pd.to_numeric(raw.get(c), errors="coerce")
        return out
    ev = pd.concat(list(ZeekReader().batches(path)), ignore_index=True)
    out = pd.DataFrame(
        {
            "ts": ev["ts"].to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9,
            "entity": ev["entity"].astype(str).to_numpy(),
            "peer": ev["peer"].astype(str).to_numpy(),
            "dst_port": ev.get("num.dst_port"),
            "proto": ev.get("cat.proto"),
            "conn_state": ev.get("cat.conn_state"),
            "label": ev["label"].fillna("benign").astype(str).to_numpy(),
        }
    )
    for c in FLOW_NUMS:
        col = f"num.{c}"
        out[c] = ev[col].to_numpy(dtype="float64") if col in ev.columns else np.nan
    return out


@dataclass
class FlowBaseline:
    """What the training flows looked like per device: window medians and ports used."""

    entity: EntityBaseline = field(default_factory=EntityBaseline)
    ports: set[tuple[str, float]] = field(default_factory=set)
    any_ports: set[float] = field(default_factory=set)


def _as_events(flows: pd.DataFrame) -> pd.DataFrame:
    ev = pd.DataFrame(
        {
            "ts": pd.to_datetime(flows["ts"].to_numpy() * 1e9, unit="ns", utc=True),
            "entity": flows["entity"].to_numpy(),
            "peer": flows["peer"].astype(str).to_numpy(),
            "kind": "flow",
            "action": flows["proto"].astype(str).to_numpy(),
            "label": flows["label"].to_numpy(),
            "cat.conn_state": flows["conn_state"].astype(str).to_numpy(),
            "num.dst_port": flows["dst_port"].to_numpy(dtype="float64"),
        }
    )
    for c in ("orig_bytes", "resp_bytes", "orig_pkts", "resp_pkts"):
        ev[f"num.{c}"] = flows[c].to_numpy(dtype="float64")
    return ev


def iot23_flow_features(
    flows: pd.DataFrame, window: float = 60.0, baseline: FlowBaseline | None = None
) -> tuple[pd.DataFrame, FlowBaseline]:
    """Feature rows, one per flow (same order). Fits the baseline when ``baseline`` is None."""
    flows = flows.reset_index(drop=True)
    out = pd.DataFrame(index=flows.index)
    for c in FLOW_NUMS:
        out[f"flow:{c}"] = np.log1p(flows[c].to_numpy(dtype="float64").clip(min=0))
    proto = flows["proto"].astype(str).str.lower()
    for p in PROTOS:
        out[f"proto={p}"] = (proto == p).astype(float)
    state = flows["conn_state"].astype(str)
    for s in STATES:
        out[f"state={s}"] = (state == s).astype(float)
    ev = _as_events(flows)
    win = window_features(ev, window)
    if baseline is None:  # fit on these (training) flows; their novelty columns are then 0
        baseline = FlowBaseline()
        baseline.entity.fit(win)
        baseline.ports = set(zip(flows["entity"].astype(str), flows["dst_port"].astype(float), strict=True))
        baseline.any_ports = set(flows["dst_port"].astype(float))
    win = baseline.entity.transform(win)
    keep = ["events", "peers", "dst_ports", "failed_frac", "top_action_frac", "sum:orig_bytes", "sum:resp_bytes"]
    keep += [f"dev:{f}" for f in baseline.entity.features]
    keep = [c for c in keep if c in win.columns]
    wkey = np.floor(flows["ts"].to_numpy() / window) * window
    win_key = win["window_start"].astype("int64") / 1e9
    wf = win[keep].set_axis([f"win:{c}" for c in keep], axis=1)
    wf.index = pd.MultiIndex.from_arrays([win["entity"].astype(str).to_numpy(), win_key.to_numpy()])
    joined = wf.reindex(pd.MultiIndex.from_arrays([flows["entity"].astype(str).to_numpy(), wkey]))
    out = pd.concat([out, joined.reset_index(drop=True)], axis=1)
    ent = flows["entity"].astype(str)
    port = flows["dst_port"].astype(float)
    known_dev = ent.isin({e for e, _ in baseline.ports})
    dev_port = np.array([(e, p) in baseline.ports for e, p in zip(ent, port, strict=True)])
    out["novel:port_for_device"] = np.where(known_dev, (~dev_port).astype(float), np.nan)
    out["novel:port_any_device"] = (~port.isin(baseline.any_ports)).astype(float).to_numpy()
    return out, baseline
