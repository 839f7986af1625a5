"""Functional footprint: what an entity does (actions, commands, functions) and with whom (peers).

Counts are bounded: at most ``capacity`` items are kept per kind; when full, the least frequent item
is evicted and its count carried by the newcomer (Space-Saving), so memory per entity stays fixed
while frequent items stay exact enough for shares.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from misuse.errors import InvalidParameterError


@dataclass(slots=True)
class BoundedCounts:
    """Item counts bounded to ``capacity`` items (Space-Saving eviction).

    Kept compact: a list of (interned) item names and a parallel ``array('d')`` of counts, about
    16 bytes per item instead of a dict entry plus a float object; ``counts`` builds a dict on demand.

    Examples
    --------
    >>> c = BoundedCounts(capacity=2)
    >>> c.update(["a", "a", "b", "c"])
    >>> c.total, sorted(c.counts)
    (4, ['a', 'c'])
    """

    capacity: int = 32
    items: list[str] = field(default_factory=list)
    values: array = field(default_factory=lambda: array("d"))
    total: int = 0
    distinct_seen: int = 0

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise InvalidParameterError(f"BoundedCounts capacity must be >= 1. Got {self.capacity} instead.")
        if len(self.items) != len(self.values):
            raise InvalidParameterError(
                f"BoundedCounts: {len(self.items)} items but {len(self.values)} counts; they must match"
            )

    @property
    def counts(self) -> dict[str, float]:
        """Item -> count (a new dict; at most ``capacity`` entries)."""
        return dict(zip(self.items, self.values, strict=True))

    def __contains__(self, item: object) -> bool:
        return item in self.items

    def update(self, items: Iterable[str]) -> None:
        """Count each item."""
        keys, vals = self.items, self.values
        for item in items:
            self.total += 1
            try:
                vals[keys.index(item)] += 1
                continue
            except ValueError:
                pass
            self.distinct_seen += 1
            if len(keys) < self.capacity:
                keys.append(sys.intern(str(item)))
                vals.append(1.0)
            else:
                low = min(range(len(vals)), key=vals.__getitem__)
                keys[low] = sys.intern(str(item))
                vals[low] += 1

    def get(self, item: str, default: float = 0.0) -> float:
        """The item's count (``default`` when never seen or evicted)."""
        try:
            return float(self.values[self.items.index(item)])
        except ValueError:
            return default

    def share(self, item: str) -> float:
        """The item's share of everything counted (0 when never seen or evicted)."""
        return self.get(item) / self.total if self.total else 0.0

    def top(self, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` most frequent items with their shares."""
        ranked = sorted(zip(self.items, self.values, strict=True), key=lambda kv: (-kv[1], kv[0]))[:n]
        return [(k, v / self.total) for k, v in ranked]

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON."""
        return {"capacity": self.capacity, "counts": self.counts, "total": self.total, "distinct": self.distinct_seen}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BoundedCounts:
        """Inverse of :meth:`to_dict`."""
        counts = {sys.intern(str(k)): float(v) for k, v in d["counts"].items()}
        return cls(
            int(d["capacity"]),
            list(counts),
            array("d", counts.values()),
            int(d["total"]),
            int(d.get("distinct", len(d["counts"]))),
        )


@dataclass(slots=True)
class Footprint:
    """An entity's distribution over actions and peers, with novelty of never-seen ones, and the
    contexts it acts from (client strings, source networks: :func:`context_values`), kept only for
    entities whose events carry them."""

    actions: BoundedCounts = field(default_factory=BoundedCounts)
    peers: BoundedCounts = field(default_factory=lambda: BoundedCounts(capacity=16))
    contexts: BoundedCounts | None = None

    def update(self, actions: Iterable[str], peers: Iterable[str] = (), contexts: Iterable[str] = ()) -> None:
        """Fold a run of actions (and their peers and contexts, "" ignored) into the footprint."""
        self.actions.update(str(a) for a in actions)
        self.peers.update(str(p) for p in peers if p)
        ctx = [c for c in contexts if c]
        if ctx:
            if self.contexts is None:
                self.contexts = BoundedCounts(capacity=CONTEXT_CAPACITY)
            self.contexts.update(ctx)

    def new_contexts(self, contexts: Iterable[str]) -> list[str] | None:
        """Contexts never seen for this entity; None when the entity has no contexts to compare with."""
        if self.contexts is None:
            return None
        return sorted({c for c in contexts if c and c not in self.contexts})

    def novelty(self, actions: Iterable[str]) -> float:
        """Share of ``actions`` that the footprint has never seen (0..1)."""
        items = list(actions)
        if not items:
            return 0.0
        return sum(a not in self.actions for a in items) / len(items)

    def divergence(self, actions: Iterable[str], top: int = 5) -> list[dict[str, Any]]:
        """Actions over-represented in a window compared with the footprint: typical vs actual share."""
        items = [str(a) for a in actions]
        if not items:
            return []
        window = BoundedCounts(capacity=max(len(set(items)), 1))
        window.update(items)
        rows: list[dict[str, Any]] = []
        for a, actual in window.top(len(window.items)):
            typical = self.actions.share(a)
            excess = actual - typical
            if excess > 0:
                rows.append(
                    {
                        "view": "functional",
                        "item": a,
                        "typical": typical,
                        "actual": actual,
                        "novel": a not in self.actions,
                        "excess": excess,
                    }
                )
        return sorted(rows, key=lambda r: -r["excess"])[:top]

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON."""
        out = {"actions": self.actions.to_dict(), "peers": self.peers.to_dict()}
        if self.contexts is not None:
            out["contexts"] = self.contexts.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Footprint:
        """Inverse of :meth:`to_dict` (profiles saved before contexts existed load without them)."""
        ctx = d.get("contexts")
        return cls(
            BoundedCounts.from_dict(d["actions"]),
            BoundedCounts.from_dict(d["peers"]),
            BoundedCounts.from_dict(ctx) if ctx is not None else None,
        )


#: event columns that say where an entity acts from: the client string and the source address
CONTEXT_COLUMNS: tuple[str, ...] = ("cat.client", "cat.user_agent", "cat.client_id", "cat.src_ip")
CONTEXT_CAPACITY = 8


def context_values(frame: Any) -> list[str]:
    """One context string per event and context column present: ``client:<value>`` for client
    strings, ``net:<a.b.c>`` (the /24) for IPv4 sources, ``net:<address>`` otherwise.

    Examples
    --------
    >>> import pandas as pd
    >>> context_values(pd.DataFrame({"cat.client": ["App/1"], "cat.src_ip": ["192.168.1.20"]}))
    ['client:App/1', 'net:192.168.1']
    """
    out: list[str] = []
    for col in CONTEXT_COLUMNS:
        if col not in getattr(frame, "columns", ()):
            continue
        values = [str(v) for v in frame[col].tolist() if v is not None and v == v and str(v) not in ("", "-")]
        if col == "cat.src_ip":
            out += [f"net:{_net24(v)}" for v in values]
        else:
            out += [f"client:{v}" for v in values]
    return out


def _net24(address: str) -> str:
    parts = address.split(".")
    return ".".join(parts[:3]) if len(parts) == 4 and all(p.isdigit() for p in parts) else address
