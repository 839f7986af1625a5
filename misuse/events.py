"""The one event model every source is turned into.

An event is one thing that happened: a flow, a packet, a login, a command, a sensor reading.
It has a single-event form for streams (:class:`Event`) and a columnar form for bulk work
(a pandas DataFrame, convertible to Arrow). Both carry the same fields:

===========  ==========================  ===============================================
column       type                        meaning
===========  ==========================  ===============================================
event_id     str                         stable id, unique within a source (file:line or
                                         the source's own id such as a Zeek ``uid``)
ts           datetime64[ns, UTC]         when it happened, always UTC
entity       str                         the device or user whose behaviour this is
peer         str                         the other side (address, host, topic), "" if none
kind         str                         flow, packet, auth, command, telemetry, mqtt, ...
action       str                         what was done: protocol/service, command, event type
label        str or None                 ground truth if the source has it: "benign" or the
                                         attack class; None when unknown
source       str                         where it was read from ("conn.log:42")
num.<name>   float64                     numeric attributes (bytes, duration, port, value)
cat.<name>   str                         categorical attributes (conn_state, user, topic)
===========  ==========================  ===============================================

Feature code takes frames; the streaming path turns its buffered events into a small frame
with :func:`events_to_frame` and calls the same code, so there is one implementation of
every feature.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from misuse.errors import SchemaError

BASE_COLUMNS: tuple[str, ...] = (
    "event_id",
    "ts",
    "entity",
    "peer",
    "kind",
    "action",
    "label",
    "source",
)
NUM_PREFIX = "num."
CAT_PREFIX = "cat."
BENIGN = "benign"
#: Largest |epoch seconds| a ``datetime64[ns]`` holds (years 1677..2262); readers set other times aside.
TS_LIMIT = 9.2e9


@dataclass(slots=True)
class Event:
    """One event, the single-event form used on streams.

    Parameters
    ----------
    ts:
        Seconds since the Unix epoch, UTC.
    entity:
        Device or user whose behaviour this event belongs to.
    kind, action:
        What sort of event (``flow``, ``auth``...) and what was done (``ssh``, ``login.failed``).
    peer:
        The other side, "" when there is none.
    num, cat:
        Numeric and categorical attributes.
    label:
        Ground truth when the source carries it ("benign" or an attack class), else None.
    event_id, source:
        Stable id and where the event was read from.

    Examples
    --------
    >>> e = Event(ts=0.0, entity="cam-1", kind="flow", action="mqtt", peer="10.0.0.2",
    ...           num={"bytes_out": 120.0})
    >>> e.time.isoformat()
    '1970-01-01T00:00:00+00:00'
    >>> e.is_malicious
    False
    """

    ts: float
    entity: str
    kind: str
    action: str
    peer: str = ""
    num: dict[str, float] = field(default_factory=dict)
    cat: dict[str, str] = field(default_factory=dict)
    label: str | None = None
    event_id: str = ""
    source: str = ""

    @property
    def time(self) -> datetime:
        """The timestamp as an aware UTC datetime."""
        return datetime.fromtimestamp(self.ts, tz=UTC)

    @property
    def is_malicious(self) -> bool:
        """True when the ground-truth label names an attack."""
        return is_malicious_label(self.label)

    def to_record(self) -> dict[str, object]:
        """Flatten into one row of the columnar form."""
        row: dict[str, object] = {
            "event_id": self.event_id,
            "ts": self.ts,
            "entity": self.entity,
            "peer": self.peer,
            "kind": self.kind,
            "action": self.action,
            "label": self.label,
            "source": self.source,
        }
        for k, v in self.num.items():
            row[NUM_PREFIX + k] = v
        for k, c in self.cat.items():
            row[CAT_PREFIX + k] = c
        return row


def ts_ok(ts: float | None) -> bool:
    """True for an epoch-seconds time the event model can hold (finite, within :data:`TS_LIMIT`)."""
    return ts is not None and -TS_LIMIT < ts < TS_LIMIT


def is_malicious_label(label: object) -> bool:
    """True for a ground-truth label that names an attack (not None, not "benign")."""
    if label is None or (isinstance(label, float) and math.isnan(label)):
        return False
    return str(label).lower() != BENIGN


def events_to_frame(events: Iterable[Event | Mapping[str, object]]) -> pd.DataFrame:
    """Build the columnar form from events (or from already flattened records).

    ``ts`` may be epoch seconds or datetimes; it always comes out as ``datetime64[ns, UTC]``.
    """
    rows = [e.to_record() if isinstance(e, Event) else dict(e) for e in events]
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=list(BASE_COLUMNS))
    return normalize_frame(frame)


def normalize_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Give a frame the canonical column set, order and dtypes.

    Raises
    ------
    SchemaError
        When ``ts`` or ``entity`` is missing, or a ``num.`` column is not numeric.
    """
    for required in ("ts", "entity"):
        if required not in frame.columns:
            raise SchemaError(f"event frame has no '{required}' column (columns: {list(frame.columns)})")
    out = frame.copy()
    for col, default in (("peer", ""), ("kind", "event"), ("action", ""), ("source", "")):
        if col not in out.columns:
            out[col] = default
    if "label" not in out.columns:
        out["label"] = None
    if "event_id" not in out.columns or out["event_id"].isna().any():
        ids = pd.Series([f"e{i}" for i in range(len(out))], index=out.index)
        out["event_id"] = out["event_id"].fillna(ids) if "event_id" in out.columns else ids
    out["ts"] = to_utc(out["ts"])
    for col in ("event_id", "entity", "peer", "kind", "action", "source"):
        out[col] = out[col].fillna("").astype(str)
    out["label"] = out["label"].astype(object).where(out["label"].notna(), None)
    for col in out.columns:
        if col.startswith(NUM_PREFIX):
            try:
                out[col] = pd.to_numeric(out[col]).astype("float64")
            except (TypeError, ValueError) as exc:
                raise SchemaError(f"numeric attribute '{col}' holds non-numbers: {exc}") from None
        elif col.startswith(CAT_PREFIX):
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    extra = sorted(c for c in out.columns if c not in BASE_COLUMNS)
    return out[list(BASE_COLUMNS) + extra]


def to_utc(values: pd.Series) -> pd.Series:
    """Convert epoch seconds, strings or datetimes to ``datetime64[ns, UTC]``."""
    if pd.api.types.is_datetime64_any_dtype(values):
        s = pd.to_datetime(values)
        return s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
    if pd.api.types.is_numeric_dtype(values):
        return pd.to_datetime(values.astype("float64") * 1e9, unit="ns", utc=True)
    return pd.to_datetime(values, utc=True)


def frame_to_events(frame: pd.DataFrame) -> Iterator[Event]:
    """Yield the single-event form of each row of a columnar batch."""
    nums = [c for c in frame.columns if c.startswith(NUM_PREFIX)]
    cats = [c for c in frame.columns if c.startswith(CAT_PREFIX)]
    ts = frame["ts"].to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9
    cols = list(frame.columns)
    for i, row in enumerate(frame.itertuples(index=False, name=None)):
        rec = dict(zip(cols, row, strict=True))
        yield Event(
            ts=float(ts[i]),
            entity=str(rec["entity"]),
            kind=str(rec["kind"]),
            action=str(rec["action"]),
            peer=str(rec["peer"]),
            num={c[len(NUM_PREFIX) :]: float(rec[c]) for c in nums if not _isnan(rec[c])},
            cat={c[len(CAT_PREFIX) :]: str(rec[c]) for c in cats if rec[c] is not None and not _isnan(rec[c])},
            label=None if rec["label"] is None or _isnan(rec["label"]) else str(rec["label"]),
            event_id=str(rec["event_id"]),
            source=str(rec["source"]),
        )


def _isnan(v: object) -> bool:
    return isinstance(v, float) and math.isnan(v)


def num_columns(frame: pd.DataFrame) -> list[str]:
    """Names (without prefix) of the numeric attributes of a frame."""
    return [c[len(NUM_PREFIX) :] for c in frame.columns if c.startswith(NUM_PREFIX)]


def cat_columns(frame: pd.DataFrame) -> list[str]:
    """Names (without prefix) of the categorical attributes of a frame."""
    return [c[len(CAT_PREFIX) :] for c in frame.columns if c.startswith(CAT_PREFIX)]
