"""Windowed per-entity features: one row per (entity, time window).

The same function, :func:`window_features`, serves bulk frames and the live path: the streaming
:class:`StreamingWindows` buffers each entity's events until its window closes and then calls it on
that small frame. There is one implementation of every feature.

Features (absent inputs give NaN, which detectors fill with the typical value):

- ``events``, ``peers``, ``actions``: log1p of the event count, distinct peers and distinct actions
- ``dst_ports``: log1p of distinct destination ports (``num.dst_port``)
- ``failed_frac``: share of failed events (rejected/unanswered connections, failed logins, errors)
- ``top_action_frac``: share of the most frequent action (a flood or a scan is one action repeated)
- ``sum:<x>`` / ``max:<x>``: log1p of the sum and maximum of additive attributes (bytes, packets)
- ``mean:<x>`` / ``max:<x>``: mean and maximum of other numeric attributes (durations, sensor values)
- ``hour_sin``, ``hour_cos``: time of day of the window (daily rhythm)
- ``dev:<f>``: the window's value of ``f`` minus the entity's own typical (median) value in training,
  added by :class:`EntityBaseline`; a per-device baseline on top of the population one.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from misuse.errors import InvalidParameterError
from misuse.events import NUM_PREFIX, Event, events_to_frame, is_malicious_label

ADDITIVE = (
    "orig_bytes",
    "resp_bytes",
    "orig_pkts",
    "resp_pkts",
    "orig_ip_bytes",
    "resp_ip_bytes",
    "len",
    "payload_len",
    "missed_bytes",
)
# identifiers and sequence numbers are not quantities: never averaged
NOT_QUANTITIES = (
    "src_port",
    "dst_port",
    "pid",
    "seq",
    "tcp_seq",
    "dst_ip_int",
    "ip_proto",
    "tcp_flags",
    "index",
)
FAILED_CONN_STATES = ("S0", "REJ", "RSTO", "RSTOS0", "RSTR", "RSTRH", "SH", "SHR", "OTH")
BASELINE_FEATURES = (
    "events",
    "peers",
    "actions",
    "dst_ports",
    "sum:orig_bytes",
    "sum:resp_bytes",
    "failed_frac",
)
META = ("entity", "window_start", "window_end", "n_events", "label")


def _failed(frame: pd.DataFrame) -> np.ndarray:
    failed = np.zeros(len(frame), dtype=bool)
    if "cat.conn_state" in frame.columns:
        failed |= frame["cat.conn_state"].isin(FAILED_CONN_STATES).to_numpy()
    action = frame["action"].astype(str)
    failed |= action.str.endswith(".failed") | action.str.contains("invalid_user") | action.str.contains("error")
    return failed.to_numpy() if hasattr(failed, "to_numpy") else np.asarray(failed)


def window_features(events: pd.DataFrame, window: float = 60.0) -> pd.DataFrame:
    """Compute per-entity, per-window features of an event frame.

    Parameters
    ----------
    events:
        Frame in the event model (see :mod:`misuse.events`).
    window:
        Window length in seconds (> 0). Windows are aligned to multiples of it since the epoch.

    Returns
    -------
    DataFrame
        One row per (entity, window) with the meta columns ``entity, window_start, window_end,
        n_events, label`` (label: the most common attack label in the window, "benign", or None when
        the events carry no labels) followed by the feature columns.

    Examples
    --------
    >>> ev = events_to_frame([
    ...     Event(ts=t, entity="cam", kind="flow", action="mqtt", peer="broker",
    ...           num={"orig_bytes": 100.0}) for t in (1.0, 2.0, 70.0)])
    >>> f = window_features(ev, window=60)
    >>> f[["entity", "n_events"]].values.tolist()
    [['cam', 2], ['cam', 1]]
    """
    if window <= 0:
        raise InvalidParameterError(f"The 'window' parameter must be > 0 seconds. Got {window!r} instead.")
    if len(events) == 0:
        return pd.DataFrame(columns=list(META))
    ts = events["ts"].to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9
    wstart = np.floor(ts / window) * window
    df = pd.DataFrame(
        {
            "entity": events["entity"].to_numpy(),
            "w": wstart,
            "peer": events["peer"].to_numpy(),
            "action": events["action"].to_numpy(),
            "failed": _failed(events).astype("float64"),
        }
    )
    if "num.dst_port" in events.columns:
        df["dst_port"] = events["num.dst_port"].to_numpy()
    nums = [c for c in events.columns if c.startswith(NUM_PREFIX)]
    additive = [c for c in nums if c[len(NUM_PREFIX) :] in ADDITIVE]
    other = [c for c in nums if c[len(NUM_PREFIX) :] not in ADDITIVE + NOT_QUANTITIES]
    for c in additive + other:
        df[c] = events[c].to_numpy(dtype="float64")
    g = df.groupby(["entity", "w"], sort=True)
    out = pd.DataFrame({"n_events": g.size()})
    out["events"] = np.log1p(out["n_events"])
    out["peers"] = np.log1p(g["peer"].nunique())
    out["actions"] = np.log1p(g["action"].nunique())
    out["dst_ports"] = np.log1p(g["dst_port"].nunique()) if "dst_port" in df.columns else np.nan
    out["failed_frac"] = g["failed"].mean()
    top = df.groupby(["entity", "w", "action"], sort=False).size().groupby(level=[0, 1]).max()
    out["top_action_frac"] = top / out["n_events"]
    for c in additive:
        name = c[len(NUM_PREFIX) :]
        out[f"sum:{name}"] = np.log1p(g[c].sum(min_count=1).clip(lower=0))
        out[f"max:{name}"] = np.log1p(g[c].max().clip(lower=0))
    for c in other:
        name = c[len(NUM_PREFIX) :]
        out[f"mean:{name}"] = g[c].mean()
        out[f"max:{name}"] = g[c].max()
    out = out.reset_index()
    hours = (out["w"] % 86400) / 3600.0
    out["hour_sin"] = np.sin(2 * np.pi * hours / 24)
    out["hour_cos"] = np.cos(2 * np.pi * hours / 24)
    out["window_start"] = pd.to_datetime(out["w"] * 1e9, unit="ns", utc=True)
    out["window_end"] = out["window_start"] + pd.to_timedelta(window, unit="s")
    out["label"] = _window_labels(events, wstart)(out)
    feats = [c for c in out.columns if c not in META and c not in ("w",)]
    return out[list(META) + feats]


def _window_labels(events: pd.DataFrame, wstart: np.ndarray):  # type: ignore[no-untyped-def]
    labels = events["label"]
    known = labels.notna().to_numpy()

    def attach(out: pd.DataFrame) -> pd.Series:
        if not known.any():
            return pd.Series([None] * len(out), index=out.index, dtype=object)
        lab = pd.DataFrame({"entity": events["entity"].to_numpy(), "w": wstart, "label": labels.to_numpy()})
        lab = lab[known]
        mal = lab[lab["label"].map(is_malicious_label)]
        by_window: dict[tuple[str, float], str] = {}
        if len(mal):
            counts = mal.groupby(["entity", "w", "label"]).size().reset_index(name="n")
            counts = counts.sort_values("n", ascending=False).drop_duplicates(["entity", "w"])
            by_window = {(e, w): str(lbl) for e, w, lbl in counts[["entity", "w", "label"]].itertuples(index=False)}
        seen = set(map(tuple, lab[["entity", "w"]].itertuples(index=False)))
        res = []
        for e, w in out[["entity", "w"]].itertuples(index=False):
            res.append(by_window.get((e, w), "benign" if (e, w) in seen else None))
        return pd.Series(res, index=out.index, dtype=object)

    return attach


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The feature columns of a window-feature frame (everything but the meta columns)."""
    return [c for c in frame.columns if c not in META]


@dataclass
class EntityBaseline:
    """Each entity's typical (median) value of a few base features in training.

    :meth:`transform` adds ``dev:<feature>`` = value - the entity's own median; entities never seen in
    training get NaN there (the detector then uses the population's typical value).
    """

    features: tuple[str, ...] = BASELINE_FEATURES
    medians_: dict[str, dict[str, float]] = field(default_factory=dict)

    def fit(self, windows: pd.DataFrame) -> EntityBaseline:
        """Learn the per-entity medians from training windows."""
        cols = [f for f in self.features if f in windows.columns]
        med = windows.groupby("entity")[cols].median()
        self.medians_ = {str(e): {k: float(v) for k, v in row.items() if pd.notna(v)} for e, row in med.iterrows()}
        return self

    def transform(self, windows: pd.DataFrame) -> pd.DataFrame:
        """Add the ``dev:`` columns to a window-feature frame."""
        out = windows.copy()
        for f in self.features:
            if f not in out.columns:
                continue
            typical = out["entity"].map(lambda e, f=f: self.medians_.get(str(e), {}).get(f, np.nan))
            out[f"dev:{f}"] = out[f].to_numpy(dtype="float64") - typical.to_numpy(dtype="float64")
        return out

    def to_json(self, path: Path) -> None:
        """Save as JSON."""
        path.write_text(json.dumps({"features": list(self.features), "medians": self.medians_}))

    @classmethod
    def from_json(cls, path: Path) -> EntityBaseline:
        """Load what :meth:`to_json` wrote."""
        d = json.loads(path.read_text())
        return cls(features=tuple(d["features"]), medians_=d["medians"])


class StreamingWindows:
    """The live path: buffer events per entity and emit a feature row when an entity's window closes.

    Uses :func:`window_features` on the buffered events, so live and batch features are identical.

    Examples
    --------
    >>> sw = StreamingWindows(window=60)
    >>> sw.add(Event(ts=1.0, entity="cam", kind="flow", action="mqtt", peer="b"))
    []
    >>> rows = sw.add(Event(ts=61.0, entity="cam", kind="flow", action="mqtt", peer="b"))
    >>> int(rows[0]["n_events"])
    1
    """

    def __init__(self, window: float = 60.0) -> None:
        if window <= 0:
            raise InvalidParameterError(f"The 'window' parameter must be > 0 seconds. Got {window!r} instead.")
        self.window = window
        self._buf: dict[str, list[Event]] = defaultdict(list)
        self._start: dict[str, float] = {}

    def add(self, event: Event) -> list[dict[str, object]]:
        """Add one event; return the feature rows of windows this event closed (usually none)."""
        w = np.floor(event.ts / self.window) * self.window
        closed: list[dict[str, object]] = []
        start = self._start.get(event.entity)
        if start is not None and w > start:
            closed = self._close(event.entity)
        self._start[event.entity] = w if start is None or w > start else start
        self._buf[event.entity].append(event)
        return closed

    def flush(self, now: float | None = None) -> list[dict[str, object]]:
        """Close windows that ended before ``now`` (all of them when ``now`` is None)."""
        rows: list[dict[str, object]] = []
        for entity in list(self._buf):
            if now is None or self._start[entity] + self.window <= now:
                rows += self._close(entity)
        return rows

    def _close(self, entity: str) -> list[dict[str, object]]:
        events = self._buf.pop(entity, [])
        self._start.pop(entity, None)
        if not events:
            return []
        return window_features(events_to_frame(events), self.window).to_dict("records")  # type: ignore[return-value]


def windows_of(events: Iterable[Event], window: float) -> pd.DataFrame:
    """Convenience: window features of an iterable of single events."""
    return window_features(events_to_frame(events), window)


def evidence_mask(events: pd.DataFrame, entity: str, start: pd.Timestamp, end: pd.Timestamp) -> np.ndarray:
    """Rows of ``events`` that belong to one entity's window (the evidence of an alert)."""
    ts = events["ts"]
    return ((events["entity"] == entity) & (ts >= start) & (ts < end)).to_numpy()


LOG_FEATURES = ("events", "peers", "actions", "dst_ports")


def display_value(feature: str, value: float) -> float:
    """A feature value in the units a person reads (counts and bytes rather than their log1p)."""
    base = feature[4:] if feature.startswith("dev:") else feature
    is_log = base in LOG_FEATURES or (
        (base.startswith("sum:") or base.startswith("max:")) and base.split(":", 1)[1] in ADDITIVE
    )
    if is_log and np.isfinite(value):
        return float(np.expm1(value))
    return float(value)
