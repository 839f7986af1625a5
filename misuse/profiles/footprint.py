"""Functional footprint: what an entity does (actions, commands, functions) and with whom (peers).

Counts are bounded: at most ``capacity`` items are kept per kind; when full, the least frequent item
is evicted and its count carried by the newcomer (Space-Saving), so memory per entity stays fixed
while frequent items stay exact enough for shares.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from misuse.errors import InvalidParameterError


@dataclass(slots=True)
class BoundedCounts:
    """Item counts bounded to ``capacity`` items (Space-Saving eviction).

    Examples
    --------
    >>> c = BoundedCounts(capacity=2)
    >>> c.update(["a", "a", "b", "c"])
    >>> c.total, sorted(c.counts)
    (4, ['a', 'c'])
    """

    capacity: int = 32
    counts: dict[str, float] = field(default_factory=dict)
    total: int = 0
    distinct_seen: int = 0

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise InvalidParameterError(f"BoundedCounts capacity must be >= 1. Got {self.capacity} instead.")

    def update(self, items: Iterable[str]) -> None:
        """Count each item."""
        counts = self.counts
        for item in items:
            self.total += 1
            if item in counts:
                counts[item] += 1
            elif len(counts) < self.capacity:
                counts[item] = 1
                self.distinct_seen += 1
            else:
                low = min(counts, key=counts.__getitem__)
                counts[item] = counts.pop(low) + 1
                self.distinct_seen += 1

    def share(self, item: str) -> float:
        """The item's share of everything counted (0 when never seen or evicted)."""
        return self.counts.get(item, 0.0) / self.total if self.total else 0.0

    def top(self, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` most frequent items with their shares."""
        ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
        return [(k, v / self.total) for k, v in ranked]

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON."""
        return {"capacity": self.capacity, "counts": self.counts, "total": self.total, "distinct": self.distinct_seen}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BoundedCounts:
        """Inverse of :meth:`to_dict`."""
        return cls(
            int(d["capacity"]),
            {str(k): float(v) for k, v in d["counts"].items()},
            int(d["total"]),
            int(d.get("distinct", len(d["counts"]))),
        )


@dataclass(slots=True)
class Footprint:
    """An entity's distribution over actions and peers, with novelty of never-seen ones."""

    actions: BoundedCounts = field(default_factory=BoundedCounts)
    peers: BoundedCounts = field(default_factory=lambda: BoundedCounts(capacity=16))

    def update(self, actions: Iterable[str], peers: Iterable[str] = ()) -> None:
        """Fold a run of actions (and their peers, "" ignored) into the footprint."""
        self.actions.update(str(a) for a in actions)
        self.peers.update(str(p) for p in peers if p)

    def novelty(self, actions: Iterable[str]) -> float:
        """Share of ``actions`` that the footprint has never seen (0..1)."""
        items = list(actions)
        if not items:
            return 0.0
        return sum(a not in self.actions.counts for a in items) / len(items)

    def divergence(self, actions: Iterable[str], top: int = 5) -> list[dict[str, Any]]:
        """Actions over-represented in a window compared with the footprint: typical vs actual share."""
        items = [str(a) for a in actions]
        if not items:
            return []
        window = BoundedCounts(capacity=max(len(set(items)), 1))
        window.update(items)
        rows: list[dict[str, Any]] = []
        for a, actual in window.top(len(window.counts)):
            typical = self.actions.share(a)
            excess = actual - typical
            if excess > 0:
                rows.append(
                    {
                        "view": "functional",
                        "item": a,
                        "typical": typical,
                        "actual": actual,
                        "novel": a not in self.actions.counts,
                        "excess": excess,
                    }
                )
        return sorted(rows, key=lambda r: -r["excess"])[:top]

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON."""
        return {"actions": self.actions.to_dict(), "peers": self.peers.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Footprint:
        """Inverse of :meth:`to_dict`."""
        return cls(BoundedCounts.from_dict(d["actions"]), BoundedCounts.from_dict(d["peers"]))
