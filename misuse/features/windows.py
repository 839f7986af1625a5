"""Windowed per-entity features: one row per (entity, time window).

The same function, :func:`window_features`, serves bulk frames and the live path: the streaming
:class:`StreamingWindows` buffers each entity's events until its window closes and then calls it on
that small frame. There is one implementation of every feature.

Features (absent inputs give NaN, which detectors fill with the typical value):

- ``events``, ``peers``, ``actions``: log1p of the event count, distinct peers and distinct actions
- ``dst_ports``: log1p of distinct destination ports (``num.dst_port``)
- ``failed_frac``: share of rejected or unanswered connections (Zeek ``conn_state``)
- ``login_frac``: share of login attempts (auth events, ssh/telnet, ports 22/23/2323)
- ``login_failures``: log1p of the failed logins (failed passwords, invalid users)
- ``new_entity``, ``new_peer_frac``, ``new_action_frac``: novelty against what each entity did in
  training (:class:`KnownSets`), when given
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


LOGIN_PORTS = (22.0, 23.0, 2323.0)
LOGIN_SERVICES = ("ssh", "telnet")


def _flags(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per-event booleans: failed connection, login attempt, failed login."""
    n = len(frame)
    action = frame["action"].astype(str)
    conn_failed = np.zeros(n, dtype=bool)
    if "cat.conn_state" in frame.columns:
        conn_failed = frame["cat.conn_state"].isin(FAILED_CONN_STATES).to_numpy(dtype=bool)
    login_failed = (
        action.str.endswith("login.failed") | action.str.contains("invalid_user") | action.str.endswith("auth.failed")
    ).to_numpy(dtype=bool)
    login = (frame["kind"].astype(str) == "auth").to_numpy(dtype=bool) | action.isin(LOGIN_SERVICES).to_numpy(
        dtype=bool
    )
    if "num.dst_port" in frame.columns:
        login |= frame["num.dst_port"].isin(LOGIN_PORTS).to_numpy(dtype=bool)
    return {"conn_failed": conn_failed, "login": login, "login_failed": login_failed}


@dataclass
class KnownSets:
    """What each entity did in training: its peers and its actions (the most frequent, capped).

    Passed to :func:`window_features` it adds novelty features: ``new_peer_frac`` and
    ``new_action_frac`` (share of the window's events with a peer / action the entity never used),
    and ``new_entity`` (1 when the entity was never seen).
    """

    peers: dict[str, set[str]] = field(default_factory=dict)
    actions: dict[str, set[str]] = field(default_factory=dict)
    cap: int = 256

    @classmethod
    def learn(cls, events: pd.DataFrame, cap: int = 256) -> KnownSets:
        """Collect each entity's most frequent peers and actions."""
        out = cls(cap=cap)
        for col, target in (("peer", out.peers), ("action", out.actions)):
            counts = events.groupby(["entity", col], sort=False).size().reset_index(name="n")
            counts = counts.sort_values("n", ascending=False).groupby("entity", sort=False).head(cap)
            for entity, grp in counts.groupby("entity", sort=False):
                target[str(entity)] = set(map(str, grp[col]))
        return out

    def novelty(self, events: pd.DataFrame) -> dict[str, np.ndarray]:
        """Per-event booleans: unknown entity, peer never used by the entity, action never used."""
        ent = events["entity"].astype(str).to_numpy()
        peer = events["peer"].astype(str).to_numpy()
        act = events["action"].astype(str).to_numpy()
        empty: set[str] = set()
        known_entity = np.fromiter((e in self.actions for e in ent), dtype=bool, count=len(ent))
        new_peer = np.fromiter(
            (p != "" and p not in self.peers.get(e, empty) for e, p in zip(ent, peer, strict=True)),
            dtype=bool,
            count=len(ent),
        )
        new_action = np.fromiter(
            (a not in self.actions.get(e, empty) for e, a in zip(ent, act, strict=True)), dtype=bool, count=len(ent)
        )
        return {"new_entity": ~known_entity, "new_peer": new_peer, "new_action": new_action}

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "cap": self.cap,
            "peers": {k: sorted(v) for k, v in self.peers.items()},
            "actions": {k: sorted(v) for k, v in self.actions.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> KnownSets:
        """Rebuild from :meth:`to_dict`."""
        peers = {k: set(v) for k, v in dict(d.get("peers", {})).items()}  # type: ignore[call-overload]
        actions = {k: set(v) for k, v in dict(d.get("actions", {})).items()}  # type: ignore[call-overload]
        return cls(peers=peers, actions=actions, cap=int(d.get("cap", 256)))  # type: ignore[call-overload]


def window_features(events: pd.DataFrame, window: float = 60.0, known: KnownSets | None = None) -> pd.DataFrame:
    """Compute per-entity, per-window features of an event frame.

    Parameters
    ----------
    events:
        Frame in the event model (see :mod:`misuse.events`).
    window:
        Window length in seconds (> 0). Windows are aligned to multiples of it since the epoch.
    known:
        What each entity did in training; adds the novelty features when given.

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
        }
    )
    for name, flag in _flags(events).items():
        df[name] = flag.astype("float64")
    if known is not None:
        for name, flag in known.novelty(events).items():
            df[name] = flag.astype("float64")
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
    out["failed_frac"] = g["conn_failed"].mean()
    out["login_frac"] = g["login"].mean()
    out["login_failures"] = np.log1p(g["login_failed"].sum())
    if known is not None:
        out["new_entity"] = g["new_entity"].max()
        out["new_peer_frac"] = g["new_peer"].mean()
        out["new_action_frac"] = g["new_action"].mean()
    top = df.groupby(["entity", "w", "action"], sort=False).size().groupby(level=[0, 1]).max()
    out["top_action_frac"] = top / out["n_events"]
    # sums and means in each window's own event order (np.bincount adds a bin's values one after the
    # other): pandas' grouped sum/mean can differ in the last bit with the *other* windows in the frame,
    # so a window scored alone (live) or in a batch (misuse detect) would not always get the same value
    codes = g.ngroup().to_numpy()
    for c in additive:
        name = c[len(NUM_PREFIX) :]
        total, count = _sum_count(codes, df[c].to_numpy(), len(out))
        out[f"sum:{name}"] = np.log1p(np.where(count > 0, total, np.nan).clip(min=0))
        out[f"max:{name}"] = np.log1p(g[c].max().clip(lower=0))
    for c in other:
        name = c[len(NUM_PREFIX) :]
        total, count = _sum_count(codes, df[c].to_numpy(), len(out))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"mean:{name}"] = np.where(count > 0, total / count, np.nan)
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


def _sum_count(codes: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-group sum and count of the finite ``values``, each group summed in row order."""
    ok = np.isfinite(values)
    total = np.bincount(codes[ok], weights=values[ok], minlength=n)
    return total, np.bincount(codes[ok], minlength=n).astype(np.float64)


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
    """Each entity's typical (median) value of every feature in training.

    :meth:`transform` adds ``dev:<feature>`` = value - the entity's own median for the base
    ``features``; entities never seen in training get NaN there (the detector then uses the
    population's typical value). The medians of all features serve the explanations.
    """

    features: tuple[str, ...] = BASELINE_FEATURES
    medians_: dict[str, dict[str, float]] = field(default_factory=dict)

    def fit(self, windows: pd.DataFrame) -> EntityBaseline:
        """Learn the per-entity medians from training windows."""
        cols = [c for c in feature_columns(windows) if pd.api.types.is_numeric_dtype(windows[c])]
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

    def __init__(self, window: float = 60.0, known: KnownSets | None = None) -> None:
        if window <= 0:
            raise InvalidParameterError(f"The 'window' parameter must be > 0 seconds. Got {window!r} instead.")
        self.window = window
        self.known = known
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
        return window_features(events_to_frame(events), self.window, self.known).to_dict("records")  # type: ignore[return-value]


def windows_of(events: Iterable[Event], window: float) -> pd.DataFrame:
    """Convenience: window features of an iterable of single events."""
    return window_features(events_to_frame(events), window)


def evidence_mask(events: pd.DataFrame, entity: str, start: pd.Timestamp, end: pd.Timestamp) -> np.ndarray:
    """Rows of ``events`` that belong to one entity's window (the evidence of an alert)."""
    ts = events["ts"]
    return ((events["entity"] == entity) & (ts >= start) & (ts < end)).to_numpy()


LOG_FEATURES = ("events", "peers", "actions", "dst_ports", "login_failures")


def display_value(feature: str, value: float) -> float:
    """A feature value in the units a person reads (counts and bytes rather than their log1p)."""
    base = feature[4:] if feature.startswith("dev:") else feature
    is_log = base in LOG_FEATURES or (
        (base.startswith("sum:") or base.startswith("max:")) and base.split(":", 1)[1] in ADDITIVE
    )
    if is_log and np.isfinite(value):
        return float(np.expm1(value))
    return float(value)
