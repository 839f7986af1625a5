"""Windowed correlation with bounded state, one implementation for batches and streams.

A :class:`CorrelationState` receives the hits of the rules a correlation names, in time order,
one at a time (:meth:`CorrelationState.feed`). Per group (the values of ``group-by``) it keeps
the hits inside the timespan; older hits are evicted on arrival, idle groups are swept by
:meth:`CorrelationState.sweep`, and the number of groups and of hits per group is capped
(oldest dropped first and counted in :attr:`CorrelationState.dropped`). When the condition
holds the group *fires* (a :class:`Fired`) and starts afresh, so one burst gives one hit.

Types: ``event_count`` (hits), ``value_count`` (distinct values of a field), ``value_sum`` (sum
of a numeric field), ``temporal`` (every named rule hit within the timespan, any order),
``temporal_ordered`` (in the order listed) and the project extension ``periodic``: the last
``gte`` hits are evenly spaced (coefficient of variation of their intervals at most
``max_cv``), as beaconing is.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from itertools import pairwise

from misuse.rules.model import Correlation


@dataclass
class Fired:
    """A correlation whose condition held for one group."""

    key: tuple[str, ...]
    first_ts: float
    last_ts: float
    value: float
    count: int
    event_ids: list[str]
    detail: dict[str, float] = field(default_factory=dict)


@dataclass
class _Group:
    hits: deque[tuple[float, object, str, int]] = field(default_factory=deque)
    values: Counter[object] = field(default_factory=Counter)
    total: float = 0.0
    per_rule: dict[int, deque[float]] = field(default_factory=dict)
    last_ts: float = -math.inf


def _holds(cond: dict[str, float] | object, value: float) -> bool:
    checks = {
        "gt": lambda b: value > b,
        "gte": lambda b: value >= b,
        "lt": lambda b: value < b,
        "lte": lambda b: value <= b,
        "eq": lambda b: value == b,
        "neq": lambda b: value != b,
    }
    assert isinstance(cond, dict)
    return all(checks[op](bound) for op, bound in cond.items())


class CorrelationState:
    """The windowed state of one correlation rule.

    Parameters
    ----------
    corr:
        The correlation definition.
    max_groups:
        Most groups kept at once; the least recently updated is dropped beyond it.
    max_hits:
        Most hits kept per group; the oldest is dropped beyond it.
    evidence:
        Most event ids kept per fired group.

    Examples
    --------
    >>> from misuse.rules.model import Correlation
    >>> c = Correlation("event_count", ("r",), ("peer",), 60.0, {"gte": 3})
    >>> s = CorrelationState(c)
    >>> [len(s.feed(float(t), ("1.2.3.4",), None, f"e{t}")) for t in range(4)]
    [0, 0, 1, 0]
    """

    def __init__(
        self, corr: Correlation, max_groups: int = 100_000, max_hits: int = 10_000, evidence: int = 50
    ) -> None:
        self.corr = corr
        self.max_groups = max_groups
        self.max_hits = max_hits
        self.evidence = evidence
        self.groups: OrderedDict[tuple[str, ...], _Group] = OrderedDict()
        self.dropped = 0
        if corr.type == "periodic":
            self.max_hits = min(max_hits, int(corr.condition.get("gte", corr.condition.get("gt", 2) + 1)))

    def __len__(self) -> int:
        return len(self.groups)

    def _evict(self, g: _Group, now: float) -> None:
        horizon = now - self.corr.timespan
        while g.hits and (g.hits[0][0] < horizon or len(g.hits) > self.max_hits):
            if g.hits[0][0] >= horizon:
                self.dropped += 1
            _, value, _, rule_idx = g.hits.popleft()
            self._forget(g, value, rule_idx)

    def _forget(self, g: _Group, value: object, rule_idx: int) -> None:
        if self.corr.type == "value_count":
            g.values[value] -= 1
            if g.values[value] <= 0:
                del g.values[value]
        elif self.corr.type == "value_sum" and isinstance(value, float) and not math.isnan(value):
            g.total -= value
        elif self.corr.type in ("temporal", "temporal_ordered"):
            q = g.per_rule.get(rule_idx)
            if q:
                q.popleft()

    def feed(self, ts: float, key: tuple[str, ...], value: object, event_id: str, rule_idx: int = 0) -> list[Fired]:
        """Add one hit (in time order); return the groups that fired."""
        g = self.groups.get(key)
        if g is None:
            g = _Group()
            self.groups[key] = g
            if len(self.groups) > self.max_groups:
                self.groups.popitem(last=False)
                self.dropped += 1
        else:
            self.groups.move_to_end(key)
        g.last_ts = ts
        g.hits.append((ts, value, event_id, rule_idx))
        ctype = self.corr.type
        if ctype == "value_count" and value is not None and value == value:
            g.values[value] += 1
        elif ctype == "value_sum" and isinstance(value, float) and not math.isnan(value):
            g.total += value
        elif ctype in ("temporal", "temporal_ordered"):
            g.per_rule.setdefault(rule_idx, deque()).append(ts)
        self._evict(g, ts)
        fired = self._check(g, ts, rule_idx)
        if fired is None:
            return []
        out = Fired(
            key=key,
            first_ts=g.hits[0][0],
            last_ts=ts,
            value=fired,
            count=len(g.hits),
            event_ids=[h[2] for h in list(g.hits)[-self.evidence :]],
            detail={"distinct": float(len(g.values))} if ctype == "value_count" else {},
        )
        del self.groups[key]
        return [out]

    def _check(self, g: _Group, ts: float, rule_idx: int) -> float | None:
        ctype = self.corr.type
        cond = dict(self.corr.condition)
        if ctype == "event_count":
            value = float(len(g.hits))
        elif ctype == "value_count":
            value = float(len(g.values))
        elif ctype == "value_sum":
            value = g.total
        elif ctype == "temporal":
            n = len(self.corr.rules)
            return float(n) if all(g.per_rule.get(i) for i in range(n)) else None
        elif ctype == "temporal_ordered":
            return self._ordered(g, ts, rule_idx)
        else:
            return self._periodic(g, cond)
        return value if _holds(cond, value) else None

    def _ordered(self, g: _Group, ts: float, rule_idx: int) -> float | None:
        n = len(self.corr.rules)
        if rule_idx != n - 1:
            return None
        t = ts
        for i in range(n - 2, -1, -1):
            earlier = [x for x in g.per_rule.get(i, ()) if x <= t]
            if not earlier:
                return None
            t = max(earlier)
        return float(n) if t >= ts - self.corr.timespan else None

    def _periodic(self, g: _Group, cond: dict[str, float]) -> float | None:
        need = int(cond.get("gte", cond.get("gt", 2) + 1))
        if len(g.hits) < max(need, 3):
            return None
        times = [h[0] for h in list(g.hits)[-need:]]
        gaps = [b - a for a, b in pairwise(times)]
        mean = sum(gaps) / len(gaps)
        if mean <= 0 or mean < self.corr.min_interval:
            return None
        sd = math.sqrt(sum((x - mean) ** 2 for x in gaps) / len(gaps))
        cv = sd / mean
        return mean if cv <= self.corr.max_cv else None

    def sweep(self, watermark: float) -> int:
        """Drop groups idle for longer than the timespan before ``watermark``; return how many."""
        horizon = watermark - self.corr.timespan
        n = 0
        while self.groups:
            key, g = next(iter(self.groups.items()))
            if g.last_ts >= horizon:
                break
            del self.groups[key]
            n += 1
        return n
