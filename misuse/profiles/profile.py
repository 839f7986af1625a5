"""Per-entity behavioural profiles in three views, learned incrementally, saved in the project store.

Views: functional footprint (:mod:`misuse.profiles.footprint`), temporal behaviour
(:mod:`misuse.profiles.temporal`) and numeric distributions (:mod:`misuse.profiles.distribution`).
A :class:`ProfileBook` holds one :class:`EntityProfile` per device or user; ``learn(frame)`` folds a
frame of events in (any number of times), ``save``/``load`` write JSON or the store's ``profiles``
table (created here, on the store's DuckDB connection).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from misuse.errors import NotFoundError, SchemaError
from misuse.events import NUM_PREFIX
from misuse.profiles.distribution import QuantileSketch
from misuse.profiles.footprint import Footprint, context_values
from misuse.profiles.temporal import WEEKDAYS, Temporal
from misuse.store.duck import Store

PROFILE_VERSION = 1
_DDL = """CREATE TABLE IF NOT EXISTS profiles (
    dataset VARCHAR, entity VARCHAR, updated_at TIMESTAMPTZ, events BIGINT, profile VARCHAR,
    PRIMARY KEY (dataset, entity))"""


def _seconds(ts: pd.Series) -> np.ndarray:
    """Epoch seconds of a time column (datetimes or numbers)."""
    if pd.api.types.is_datetime64_any_dtype(ts):
        utc = pd.to_datetime(ts, utc=True)
        return (utc - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype="float64")  # type: ignore[no-any-return]
    return pd.to_numeric(ts, errors="coerce").to_numpy(dtype="float64")  # type: ignore[no-any-return]


def numeric_key(action: str, attribute: str) -> str:
    """Name of the sketch of a command's numeric parameter: ``set_temp:value``."""
    return f"{action}:{attribute}"


@dataclass(slots=True)
class EntityProfile:
    """One entity's baseline: footprint, temporal behaviour and numeric sketches.

    Numeric sketches are kept per ``num.*`` attribute (at most ``max_numeric``) and, for events of
    kind ``command``, also per command and attribute (:func:`numeric_key`): a thermostat's
    ``set_temp`` value and a camera's ``view_stream`` duration are different quantities.
    """

    entity: str
    footprint: Footprint = field(default_factory=Footprint)
    temporal: Temporal = field(default_factory=Temporal)
    numeric: dict[str, QuantileSketch] = field(default_factory=dict)
    events: int = 0
    max_numeric: int = 8

    def update(self, frame: pd.DataFrame) -> None:
        """Fold this entity's events (a frame in the event model's columnar form) into the profile."""
        if len(frame) == 0:
            return
        frame = frame.sort_values("ts", kind="stable")
        peers = frame["peer"].astype(str) if "peer" in frame else pd.Series([], dtype=str)
        self.footprint.update(frame["action"].astype(str).tolist(), peers.tolist(), context_values(frame))
        self.temporal.update(_seconds(frame["ts"]))
        commands = frame["kind"].astype(str).to_numpy() == "command" if "kind" in frame else None
        actions = frame["action"].astype(str).to_numpy()
        for col in [c for c in frame.columns if str(c).startswith(NUM_PREFIX)]:
            name = str(col)[len(NUM_PREFIX) :]
            values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype="float64")
            self._sketch(name, values)
            if commands is not None and commands.any():  # a command's parameter means what its command says
                for action in np.unique(actions[commands & np.isfinite(values)]):
                    self._sketch(numeric_key(str(action), name), values[commands & (actions == action)])
        self.events += len(frame)

    def _sketch(self, key: str, values: np.ndarray) -> None:
        if not np.isfinite(values).any() or (key not in self.numeric and len(self.numeric) >= self.max_numeric):
            return
        self.numeric.setdefault(key, QuantileSketch()).update(values)

    def describe(self) -> list[str]:
        """The baseline in words."""
        lines = [f"{self.entity}: {self.events:,} events learned."]
        top = self.footprint.actions.top(5)
        if top:
            parts = ", ".join(f"{a} ({s:.0%})" for a, s in top)
            lines.append(f"Mostly does {parts}; {self._distinct()} distinct actions seen.")
        peers = self.footprint.peers.top(3)
        if peers:
            lines.append("Talks mostly to " + ", ".join(f"{p} ({s:.0%})" for p, s in peers) + ".")
        hours = self.temporal.hour_share()
        if self.temporal.total:
            busy = np.argsort(-hours)[:3]
            quiet = int((hours < 0.25 / 24).sum())
            days = self.temporal.grid.sum(axis=1)
            lines.append(
                "Busiest hours (UTC) "
                + ", ".join(f"{h:02d}h" for h in sorted(busy))
                + f"; busiest day {WEEKDAYS[int(np.argmax(days))]}; {quiet} of 24 hours are nearly silent."
            )
            gap = self.temporal.gaps.quantile(0.5)
            sess = self.temporal.sessions.quantile(0.5)
            if not self.temporal.sessions.count:
                sess = float(self.temporal.session_events)
            lines.append(
                f"Median gap between events {gap:,.1f} s; typical session {sess:,.0f} events; "
                f"{self.temporal.rate_per_active_hour():,.1f} events per active hour-slot per week."
            )
        for name, sk in sorted(self.numeric.items()):
            q = sk.quantiles((0.01, 0.5, 0.99))
            lines.append(f"{name}: median {q[0.5]:,.4g}, 1%-99% range {q[0.01]:,.4g} to {q[0.99]:,.4g}.")
        return lines

    def _distinct(self) -> str:
        counts = self.footprint.actions
        if counts.distinct_seen > len(counts.items):
            return f"more than {counts.capacity}"
        return str(counts.distinct_seen)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON."""
        return {
            "version": PROFILE_VERSION,
            "entity": self.entity,
            "events": self.events,
            "footprint": self.footprint.to_dict(),
            "temporal": self.temporal.to_dict(),
            "numeric": {k: v.to_dict() for k, v in self.numeric.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EntityProfile:
        """Inverse of :meth:`to_dict`."""
        if int(d.get("version", 0)) > PROFILE_VERSION:
            raise SchemaError(
                f"profile of {d.get('entity')!r} has version {d.get('version')}, newer than {PROFILE_VERSION}"
            )
        return cls(
            str(d["entity"]),
            Footprint.from_dict(d["footprint"]),
            Temporal.from_dict(d["temporal"]),
            {k: QuantileSketch.from_dict(v) for k, v in d["numeric"].items()},
            int(d["events"]),
        )


class ProfileBook:
    """Profiles of many entities.

    Examples
    --------
    >>> f = pd.DataFrame({"ts": [0.0, 60.0, 120.0], "entity": ["cam", "cam", "lock"],
    ...                   "action": ["motion", "motion", "unlock"], "peer": ["", "", ""]})
    >>> book = ProfileBook().learn(f)
    >>> sorted(book), book["cam"].footprint.actions.share("motion")
    (['cam', 'lock'], 1.0)
    """

    def __init__(self) -> None:
        self.profiles: dict[str, EntityProfile] = {}

    def __iter__(self) -> Iterator[str]:
        return iter(self.profiles)

    def __len__(self) -> int:
        return len(self.profiles)

    def __contains__(self, entity: object) -> bool:
        return entity in self.profiles

    def __getitem__(self, entity: str) -> EntityProfile:
        try:
            return self.profiles[entity]
        except KeyError:
            raise SchemaError(f"no profile for entity {entity!r} (known: {sorted(self.profiles)[:8]}...)") from None

    def learn(self, frame: pd.DataFrame) -> ProfileBook:
        """Fold a frame of events (any entities) into the profiles; returns self."""
        missing = {"ts", "entity", "action"} - set(frame.columns)
        if missing:
            raise SchemaError(f"ProfileBook.learn: frame lacks column(s) {sorted(missing)}")
        for entity, part in frame.groupby("entity", sort=False, observed=True):
            key = str(entity)
            self.profiles.setdefault(key, EntityProfile(key)).update(part)
        return self

    # ----- persistence ------------------------------------------------------------------------
    def to_json(self, path: str | Path) -> Path:
        """Write every profile to one JSON file."""
        p = Path(path)
        p.write_text(json.dumps({k: v.to_dict() for k, v in self.profiles.items()}))
        return p

    @classmethod
    def from_json(cls, path: str | Path) -> ProfileBook:
        """Read a file written by :meth:`to_json`."""
        book = cls()
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SchemaError(f"{path}: not a profile file: {exc}") from None
        book.profiles = {k: EntityProfile.from_dict(v) for k, v in data.items()}
        return book

    def save(self, store: Store, dataset: str) -> int:
        """Store the profiles of ``dataset`` in the store's ``profiles`` table; returns how many."""
        store.con.execute(_DDL)
        now = datetime.now(UTC)
        rows = [[dataset, k, now, v.events, json.dumps(v.to_dict())] for k, v in self.profiles.items()]
        store.con.execute("DELETE FROM profiles WHERE dataset = ?", [dataset])
        if rows:
            store.con.executemany("INSERT INTO profiles VALUES (?, ?, ?, ?, ?)", rows)
        return len(rows)

    @classmethod
    def load(cls, store: Store, dataset: str, entity: str | None = None) -> ProfileBook:
        """Read the stored profiles of ``dataset`` (one entity or all)."""
        store.con.execute(_DDL)
        q, args = "SELECT entity, profile FROM profiles WHERE dataset = ?", [dataset]
        if entity is not None:
            q += " AND entity = ?"
            args.append(entity)
        rows = store.con.execute(q, args).fetchall()
        if not rows:
            what = f"entity {entity!r} in " if entity else ""
            raise NotFoundError(
                f"{store.root}: no stored profiles for {what}dataset {dataset!r}; run `misuse profile build`"
            )
        book = cls()
        book.profiles = {str(e): EntityProfile.from_dict(json.loads(p)) for e, p in rows}
        return book
