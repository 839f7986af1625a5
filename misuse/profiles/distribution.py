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

_EMPTY = np.zeros((2, 0), dtype=np.float32)
_EMPTY.flags.writeable = False


@dataclass(slots=True)
class QuantileSketch:
    """Bounded-memory quantile sketch with relative accuracy.

    Buckets live in one small float32 array of shape (2, n): row 0 the sorted signed keys (exact as
    float32 up to 2**24), row 1 the counts; key order is value order. One array instead of two, and
    empty sketches share one read-only empty table, keep the per-entity footprint small.

    Examples
    --------
    >>> s = QuantileSketch()
    >>> s.update(np.arange(1, 1001, dtype=float))
    >>> abs(s.quantile(0.5) - 500) / 500 < 0.05
    True
    """

    accuracy: float = 0.02
    max_buckets: int = 128
    table: np.ndarray = field(default_factory=lambda: _EMPTY)
    count: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    min_value = 1e-9

    def __post_init__(self) -> None:
        if not 0 < self.accuracy < 0.5:
            raise InvalidParameterError(f"QuantileSketch accuracy must be in (0, 0.5). Got {self.accuracy} instead.")
        if self.max_buckets < 8:
            raise InvalidParameterError(f"QuantileSketch max_buckets must be >= 8. Got {self.max_buckets} instead.")

    @property
    def _lg(self) -> float:
        return math.log((1 + self.accuracy) / (1 - self.accuracy))

    @property
    def _offset(self) -> int:
        return math.floor(math.log(self.min_value) / self._lg) - 1

    @property
    def keys(self) -> np.ndarray:
        """Sorted signed bucket keys (int64)."""
        return self.table[0].astype(np.int64)

    @property
    def counts(self) -> np.ndarray:
        """Bucket counts, aligned with :attr:`keys` (a read-only view)."""
        return self.table[1]

    @property
    def buckets(self) -> dict[int, float]:
        """Bucket key -> count (a copy, for inspection)."""
        return {int(k): float(c) for k, c in zip(self.keys, self.counts, strict=True)}

    def _keys(self, x: np.ndarray) -> np.ndarray:
        ax = np.abs(x)
        k = np.ceil(np.log(np.maximum(ax, self.min_value)) / self._lg).astype(np.int64) - self._offset  # >= 1
        return np.where(ax < self.min_value, 0, np.sign(x).astype(np.int64) * k)  # type: ignore[no-any-return]

    def _values(self, keys: np.ndarray) -> np.ndarray:
        gamma = (1 + self.accuracy) / (1 - self.accuracy)
        k = np.abs(keys).astype("float64") + self._offset
        v = 2 * gamma**k / (gamma + 1)
        return np.where(keys == 0, 0.0, np.sign(keys) * v)  # type: ignore[no-any-return]

    def _add(self, keys: np.ndarray, counts: np.ndarray) -> None:
        allk = np.r_[self.keys.astype(np.int64), keys]
        allc = np.r_[self.counts.astype("float64"), counts]
        uk, inv = np.unique(allk, return_inverse=True)
        uc = np.bincount(inv, weights=allc, minlength=uk.size)
        if uk.size > self.max_buckets:
            extra = uk.size - self.max_buckets
            uc[extra] += uc[:extra].sum()
            uk, uc = uk[extra:], uc[extra:]
        self.table = np.stack([uk, uc]).astype(np.float32)

    def update(self, values: Iterable[float] | np.ndarray) -> None:
        """Add finite values (non-finite ones are ignored)."""
        x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype="float64")
        x = x[np.isfinite(x)]
        if x.size == 0:
            return
        keys, counts = np.unique(self._keys(x), return_counts=True)
        self._add(keys, counts.astype("float64"))
        self.count += float(x.size)
        self.low, self.high = min(self.low, float(x.min())), max(self.high, float(x.max()))

    def merge(self, other: QuantileSketch) -> None:
        """Add another sketch's counts (same accuracy)."""
        if other.accuracy != self.accuracy:
            raise InvalidParameterError(f"cannot merge sketches of accuracy {self.accuracy} and {other.accuracy}")
        self._add(other.keys.astype(np.int64), other.counts.astype("float64"))
        self.count += other.count
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)

    def quantile(self, q: float) -> float:
        """Approximate ``q``-quantile (NaN when empty)."""
        if self.count == 0:
            return math.nan
        cum = np.cumsum(self.counts, dtype="float64")
        i = int(np.searchsorted(cum, q * (cum[-1] - 1) + 1))
        value = float(self._values(self.keys[min(i, self.keys.size - 1) : min(i, self.keys.size - 1) + 1])[0])
        return float(np.clip(value, self.low, self.high))

    def quantiles(self, qs: Iterable[float] = (0.01, 0.25, 0.5, 0.75, 0.99)) -> dict[float, float]:
        """Several quantiles at once."""
        return {float(q): self.quantile(q) for q in qs}

    def cdf(self, x: float) -> float:
        """Approximate share of values <= x."""
        if self.count == 0:
            return math.nan
        values = self._values(self.keys)
        return float(self.counts[values <= x].sum() / self.counts.sum())

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON."""
        return {
            "accuracy": self.accuracy,
            "max_buckets": self.max_buckets,
            "keys": [int(k) for k in self.keys],
            "counts": self.counts.tolist(),
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
            np.stack([np.asarray(d["keys"], dtype=np.float32), np.asarray(d["counts"], dtype=np.float32)]).reshape(
                2, -1
            ),
            float(d["count"]),
            math.inf if d["low"] is None else float(d["low"]),
            -math.inf if d["high"] is None else float(d["high"]),
        )


def _grid(a: QuantileSketch, b: QuantileSketch) -> np.ndarray:
    return np.union1d(a._values(a.keys), b._values(b.keys))


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
