"""Statistical distribution of numeric attributes: a small robust quantile sketch and drift tests.

:class:`QuantileSketch` keeps log-spaced buckets (DDSketch-like): any quantile comes back within a
relative error of ``accuracy``, memory is bounded by ``max_buckets`` (the lowest buckets are merged
when it overflows) and two sketches merge by adding counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from misuse.errors import InvalidParameterError


@dataclass
class QuantileSketch:
    """Bounded-memory quantile sketch with relative accuracy.

    Examples
    --------
    >>> s = QuantileSketch()
    >>> s.update(np.arange(1, 1001, dtype=float))
    >>> abs(s.quantile(0.5) - 500) / 500 < 0.05
    True
    """

    accuracy: float = 0.02
    max_buckets: int = 128
    buckets: dict[int, float] = field(default_factory=dict)  # signed key -> count; key 0 = |x| < min_value
    count: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    min_value = 1e-9

    def __post_init__(self) -> None:
        if not 0 < self.accuracy < 0.5:
            raise InvalidParameterError(f"QuantileSketch accuracy must be in (0, 0.5). Got {self.accuracy} instead.")
        if self.max_buckets < 8:
            raise InvalidParameterError(f"QuantileSketch max_buckets must be >= 8. Got {self.max_buckets} instead.")
        self._gamma = (1 + self.accuracy) / (1 - self.accuracy)
        self._lg = math.log(self._gamma)

    def _keys(self, x: np.ndarray) -> np.ndarray:
        ax = np.abs(x)
        k = np.ceil(np.log(np.maximum(ax, self.min_value)) / self._lg).astype(np.int64)
        k = k - math.floor(math.log(self.min_value) / self._lg) + 1  # >= 1
        return np.where(ax < self.min_value, 0, np.sign(x).astype(np.int64) * k)

    def _value(self, key: int) -> float:
        if key == 0:
            return 0.0
        k = abs(key) + math.floor(math.log(self.min_value) / self._lg) - 1
        v = 2 * self._gamma**k / (self._gamma + 1)
        return math.copysign(v, key)

    def update(self, values: Iterable[float] | np.ndarray) -> None:
        """Add finite values (non-finite ones are ignored)."""
        x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype="float64")
        x = x[np.isfinite(x)]
        if x.size == 0:
            return
        keys, counts = np.unique(self._keys(x), return_counts=True)
        b = self.buckets
        for k, c in zip(keys.tolist(), counts.tolist(), strict=True):
            b[k] = b.get(k, 0.0) + c
        self.count += float(x.size)
        self.low, self.high = min(self.low, float(x.min())), max(self.high, float(x.max()))
        self._collapse()

    def _collapse(self) -> None:
        b = self.buckets
        if len(b) <= self.max_buckets:
            return
        ordered = sorted(b, key=self._value)
        extra = len(b) - self.max_buckets
        into = ordered[extra]
        for k in ordered[:extra]:
            b[into] += b.pop(k)

    def merge(self, other: QuantileSketch) -> None:
        """Add another sketch's counts (same accuracy)."""
        if other.accuracy != self.accuracy:
            raise InvalidParameterError(f"cannot merge sketches of accuracy {self.accuracy} and {other.accuracy}")
        for k, c in other.buckets.items():
            self.buckets[k] = self.buckets.get(k, 0.0) + c
        self.count += other.count
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)
        self._collapse()

    def _ordered(self) -> tuple[np.ndarray, np.ndarray]:
        keys = sorted(self.buckets, key=self._value)
        return np.array([self._value(k) for k in keys]), np.array([self.buckets[k] for k in keys])

    def quantile(self, q: float) -> float:
        """Approximate ``q``-quantile (NaN when empty)."""
        if self.count == 0:
            return math.nan
        values, counts = self._ordered()
        i = int(np.searchsorted(np.cumsum(counts), q * (self.count - 1) + 1))
        return float(np.clip(values[min(i, len(values) - 1)], self.low, self.high))

    def quantiles(self, qs: Iterable[float] = (0.01, 0.25, 0.5, 0.75, 0.99)) -> dict[float, float]:
        """Several quantiles at once."""
        return {float(q): self.quantile(q) for q in qs}

    def cdf(self, x: float) -> float:
        """Approximate share of values <= x."""
        if self.count == 0:
            return math.nan
        values, counts = self._ordered()
        return float(counts[values <= x].sum() / self.count)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON."""
        return {
            "accuracy": self.accuracy,
            "max_buckets": self.max_buckets,
            "buckets": {str(k): v for k, v in self.buckets.items()},
            "count": self.count,
            "low": self.low if math.isfinite(self.low) else None,
            "high": self.high if math.isfinite(self.high) else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantileSketch:
        """Inverse of :meth:`to_dict`."""
        return cls(
            float(d["accuracy"]),
            int(d["max_buckets"]),
            {int(k): float(v) for k, v in d["buckets"].items()},
            float(d["count"]),
            math.inf if d["low"] is None else float(d["low"]),
            -math.inf if d["high"] is None else float(d["high"]),
        )


def _grid(a: QuantileSketch, b: QuantileSketch) -> np.ndarray:
    return np.array(sorted({a._value(k) for k in a.buckets} | {b._value(k) for k in b.buckets}))


def ks_drift(reference: QuantileSketch, current: QuantileSketch) -> dict[str, float]:
    """Two-sample Kolmogorov-Smirnov test between two sketches (statistic and asymptotic p-value).

    Examples
    --------
    >>> a, b = QuantileSketch(), QuantileSketch()
    >>> a.update(np.random.default_rng(0).normal(10, 1, 2000)); b.update(np.random.default_rng(1).normal(13, 1, 500))
    >>> ks_drift(a, b)["p_value"] < 0.01
    True
    """
    if reference.count == 0 or current.count == 0:
        return {"statistic": math.nan, "p_value": math.nan}
    grid = _grid(reference, current)
    d = float(max(abs(reference.cdf(x) - current.cdf(x)) for x in grid))
    n = reference.count * current.count / (reference.count + current.count)
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    p = 2 * sum((-1) ** (j - 1) * math.exp(-2 * j * j * lam * lam) for j in range(1, 101))
    return {"statistic": d, "p_value": float(min(max(p, 0.0), 1.0))}


def psi(reference: QuantileSketch, current: QuantileSketch, bins: int = 10) -> float:
    """Population stability index over the reference's deciles (> 0.25 is usually called drift)."""
    if reference.count == 0 or current.count == 0:
        return math.nan
    edges = np.unique([reference.quantile(q) for q in np.linspace(0, 1, bins + 1)[1:-1]])
    ref = np.diff(np.r_[0.0, [reference.cdf(e) for e in edges], 1.0])
    cur = np.diff(np.r_[0.0, [current.cdf(e) for e in edges], 1.0])
    ref, cur = np.clip(ref, 1e-4, None), np.clip(cur, 1e-4, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))
