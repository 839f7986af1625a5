"""Temporal behaviour: hour-of-day x day-of-week activity, inter-event times, sessions, rates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from misuse.errors import InvalidParameterError
from misuse.profiles.distribution import QuantileSketch

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_U16_MAX = 65535


def _compact(grid: np.ndarray) -> np.ndarray:
    """The smallest exact dtype for a count grid: uint16 while it fits, float32 beyond."""
    if grid.max(initial=0.0) <= _U16_MAX and np.all(grid == np.floor(grid)):
        return grid.astype(np.uint16)
    return grid.astype(np.float32)


@dataclass(slots=True)
class Temporal:
    """When an entity is active.

    ``grid`` counts events per (weekday, hour) in UTC, as uint16 while every cell is under 65,536
    (half the memory) and float32 beyond; ``gaps`` sketches inter-event seconds;
    ``sessions`` sketches session lengths in events (a gap over ``session_gap`` seconds ends one).

    Examples
    --------
    >>> t = Temporal()
    >>> t.update(np.array([0.0, 60.0, 3600.0 * 24]))  # Thursday 1970-01-01
    >>> int(t.grid[3, 0]), int(t.grid[4, 0])
    (2, 1)
    """

    session_gap: float = 1800.0
    grid: np.ndarray = field(default_factory=lambda: np.zeros((7, 24), dtype=np.uint16))
    gaps: QuantileSketch = field(default_factory=lambda: QuantileSketch(max_buckets=32))
    sessions: QuantileSketch = field(default_factory=lambda: QuantileSketch(accuracy=0.05, max_buckets=16))
    last_ts: float | None = None
    session_events: int = 0
    first_ts: float | None = None

    def __post_init__(self) -> None:
        if self.session_gap <= 0:
            raise InvalidParameterError(f"Temporal session_gap must be > 0 seconds. Got {self.session_gap} instead.")

    def update(self, ts: np.ndarray) -> None:
        """Fold sorted epoch seconds (UTC) into the profile."""
        ts = np.sort(np.asarray(ts, dtype="float64"))
        if ts.size == 0:
            return
        day = ((np.floor(ts / 86400).astype(np.int64) + 3) % 7).astype(np.int64)  # 1970-01-01 was a Thursday
        hour = (np.floor(ts / 3600).astype(np.int64) % 24).astype(np.int64)
        grid = self.grid.astype("float64")
        np.add.at(grid, (day, hour), 1.0)
        self.grid = _compact(grid)
        seq = ts if self.last_ts is None else np.r_[self.last_ts, ts]
        gaps = np.diff(seq)
        self.gaps.update(gaps)
        n = self.session_events if self.last_ts is not None else 1
        cuts = np.flatnonzero(gaps > self.session_gap)
        if cuts.size:
            closed = np.r_[n + cuts[0], np.diff(cuts)]
            self.sessions.update(closed.astype("float64"))
            n = int(gaps.size - cuts[-1])
        else:
            n += int(gaps.size)
        self.session_events = n
        self.first_ts = float(ts[0]) if self.first_ts is None else self.first_ts
        self.last_ts = float(ts[-1])

    @property
    def total(self) -> float:
        """Events counted."""
        return float(self.grid.sum())

    def cell_share(self, ts: np.ndarray) -> np.ndarray:
        """For each time stamp, the share of past activity in its (weekday, hour) cell."""
        ts = np.asarray(ts, dtype="float64")
        day = ((np.floor(ts / 86400).astype(np.int64) + 3) % 7).astype(np.int64)
        hour = (np.floor(ts / 3600).astype(np.int64) % 24).astype(np.int64)
        return self.grid[day, hour] / max(self.total, 1.0)  # type: ignore[no-any-return]

    def hour_share(self) -> np.ndarray:
        """Share of activity per hour of day (24 values)."""
        return self.grid.sum(axis=0) / max(self.total, 1.0)  # type: ignore[no-any-return]

    def rate_per_active_hour(self) -> float:
        """Mean events per (weekday, hour) cell that saw any activity, per week observed."""
        if self.first_ts is None or self.last_ts is None:
            return 0.0
        weeks = max((self.last_ts - self.first_ts) / (7 * 86400), 1.0)
        active = int((self.grid > 0).sum()) or 1
        return self.total / active / weeks

    def off_hours(self, ts: np.ndarray, floor: float = 0.25) -> float:
        """Share of ``ts`` in hours of day holding less than ``floor`` / 24 of the usual activity."""
        ts = np.asarray(ts, dtype="float64")
        if ts.size == 0 or self.total == 0:
            return 0.0
        hours = np.floor(ts / 3600).astype(np.int64) % 24
        quiet = self.hour_share() < floor / 24
        return float(quiet[hours].mean())

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON (the grid as nested lists)."""
        return {
            "session_gap": self.session_gap,
            "grid": self.grid.tolist(),
            "gaps": self.gaps.to_dict(),
            "sessions": self.sessions.to_dict(),
            "last_ts": self.last_ts,
            "first_ts": self.first_ts,
            "session_events": self.session_events,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Temporal:
        """Inverse of :meth:`to_dict`."""
        return cls(
            float(d["session_gap"]),
            _compact(np.asarray(d["grid"], dtype="float64").reshape(7, 24)),
            QuantileSketch.from_dict(d["gaps"]),
            QuantileSketch.from_dict(d["sessions"]),
            d["last_ts"],
            int(d["session_events"]),
            d["first_ts"],
        )
