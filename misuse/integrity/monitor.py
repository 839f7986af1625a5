"""Telemetry integrity: injected, replayed, frozen or impossible sensor values, per device.

:class:`IntegrityMonitor` learns, from normal telemetry of each device (entity), the limits its
readings keep, then checks new readings against them. Six checks, each scored as actual / learned
limit (a score above 1 crosses the limit):

``range``     a numeric value outside the device's training range widened by ``range_margin``
              (or outside physical ``bounds`` given by the user): physically impossible values.
``rate``      a change between consecutive readings larger than the learned ``rate_quantile``
              of the device's own changes, times ``margin``.
``frozen``    a value (or the whole reading) repeated longer than the longest run seen in
              training, times ``margin``: a stuck or frozen sensor.
``replay``    a sequence of ``k`` consecutive readings that already occurred (in training or
              earlier in the stream); ``k`` is the shortest length whose repeats were rarer than
              ``replay_max_rate`` in training, so devices with naturally repetitive readings
              get longer sequences or no replay check.
``shift``     the distribution of the last ``shift_window`` readings drifts from training
              (population stability index against training quantile bins), beyond the
              ``shift_quantile`` of the training windows' own drift times ``margin``.
``pair``      a combination of two sensors' values that was (almost) never seen together in
              training although each value alone is common: cross-sensor inconsistency.

Thresholds come from training (normal) data only. The monitor keeps the tail of each device's
stream, so consecutive calls to :meth:`IntegrityMonitor.check` behave like one stream.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> ts = pd.date_range("2024-01-01", periods=3000, freq="min", tz="UTC")
>>> temp = 20 + np.cumsum(rng.normal(0, 0.05, 3000))
>>> f = pd.DataFrame({"ts": ts, "entity": "t1", "event_id": [str(i) for i in range(3000)], "num.temp": temp})
>>> mon = IntegrityMonitor().fit(f.iloc[:2000])
>>> test = f.iloc[2000:].copy()
>>> test.loc[test.index[500], "num.temp"] = 400.0
>>> flags = mon.check(test)
>>> sorted(flags.loc[flags["score"] > 1, "check"].unique())
['range', 'rate']
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from misuse.errors import InvalidParameterError, NotFittedError, SchemaError
from misuse.events import CAT_PREFIX, NUM_PREFIX

CHECKS: tuple[str, ...] = ("range", "rate", "frozen", "replay", "shift", "pair")
_P = np.uint64(1099511628211)
_EPS = 1e-12


@dataclass
class DeviceLimits:
    """What one device's normal telemetry looks like (learned by :class:`IntegrityMonitor`)."""

    num: list[str]
    cat: list[str]
    lo: dict[str, float]
    hi: dict[str, float]
    rate: dict[str, float]
    run: dict[str, float]
    replay_k: int
    replay_seen: set[int]
    bins: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]
    shift_limit: float
    pair_cells: dict[tuple[str, str], dict[tuple[int, int], float]]
    marginals: dict[str, np.ndarray]
    n_train: int
    tail: pd.DataFrame = field(default_factory=pd.DataFrame)
    heads: dict[str, float] = field(default_factory=dict)


def _columns(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    num = [c for c in frame.columns if c.startswith(NUM_PREFIX) and frame[c].notna().any()]
    cat = [c for c in frame.columns if c.startswith(CAT_PREFIX) and frame[c].notna().any()]
    return num, [c for c in cat if c != "cat.uid"]


def _range_is_stable(v: np.ndarray, margin: float, split: float = 0.7, tolerance: float = 0.005) -> bool:
    """Whether the last 30% of training stays inside the first 70%'s range (else the range drifts)."""
    cut = int(len(v) * split)
    if cut < 10 or len(v) - cut < 10:
        return True
    early, late = v[:cut], v[cut:]
    pad = margin * max(float(early.max() - early.min()), 1e-12)
    outside = (late < early.min() - pad) | (late > early.max() + pad)
    return float(outside.mean()) <= tolerance


def _row_hash(frame: pd.DataFrame, cols: list[str]) -> np.ndarray:
    return pd.util.hash_pandas_object(frame[cols].astype(str), index=False).to_numpy(np.uint64)


def _window_hash(rows: np.ndarray, k: int) -> np.ndarray:
    """Hash of the k rows ending at each position (positions < k-1 get 0)."""
    out = np.zeros(len(rows), dtype=np.uint64)
    if len(rows) < k:
        return out
    acc = np.zeros(len(rows) - k + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            acc = acc * _P + rows[j : len(rows) - k + 1 + j]
    out[k - 1 :] = acc
    return out


def _runs(values: np.ndarray, head: float = 1.0) -> np.ndarray:
    """Length of the run of equal values ending at each position.

    ``head`` is the run length already reached at position 0 (carried over from earlier data).
    """
    same = np.r_[False, values[1:] == values[:-1]]
    idx = np.arange(len(values))
    starts = np.maximum.accumulate(np.where(~same, idx, 0))
    out = (idx - starts + 1).astype(float)
    out[starts == 0] += head - 1.0
    return out


def _codes(values: pd.Series, bins: np.ndarray) -> np.ndarray:
    """Bin index of each value: quantile bins for numbers, category index (last = other) for text."""
    if bins.dtype.kind == "f":
        return np.searchsorted(bins, values.to_numpy(float), side="right")
    lookup = {v: i for i, v in enumerate(bins.tolist())}
    return np.array([lookup.get(v, len(bins)) for v in values.astype(str).tolist()], dtype=np.int64)


def _nbins(bins: np.ndarray) -> int:
    return len(bins) + 1


def _psi(codes: np.ndarray, expected: np.ndarray, window: int, lift: float = 0.0) -> np.ndarray:
    """Rolling population stability index of the last ``window`` codes against ``expected``.

    With ``lift`` > 0, a position keeps its window's index only when its own bin is over-represented
    in the window (share above ``lift`` times expected), so the drift is pinned on the readings
    that cause it rather than on every reading of the window.
    """
    onehot = np.zeros((len(codes), len(expected)))
    onehot[np.arange(len(codes)), codes] = 1.0
    c = np.cumsum(onehot, axis=0)
    counts = c.copy()
    counts[window:] -= c[:-window]
    n = np.minimum(np.arange(1, len(codes) + 1), window)[:, None]
    p = (counts + 0.5) / (n + 0.5 * len(expected))
    q = expected[None, :]
    out = ((p - q) * np.log(p / q)).sum(axis=1)
    out[: window - 1] = 0.0
    if lift > 0:
        own = p[np.arange(len(codes)), codes] / expected[codes]
        out = np.where(own > lift, out, 0.0)
    return out


@dataclass
class IntegrityMonitor:
    """Per-device telemetry integrity checks with limits learned from normal data.

    Parameters
    ----------
    rate_quantile:
        Quantile of training step changes taken as the rate limit (before ``margin``).
    margin:
        Factor every learned limit is widened by.
    range_margin:
        Share of the training range added on each side before a value counts as impossible.
    bounds:
        Physical limits per column (``{"num.humidity": (0, 100)}``), always enforced.
    replay_lengths:
        Candidate sequence lengths for the replay check, shortest first.
    replay_max_rate:
        Largest share of repeated sequences in training for a length to be usable.
    shift_window:
        Readings in the rolling window of the shift check.
    shift_quantile:
        Quantile of the training windows' drift taken as the shift limit (before ``margin``).
    pair_min:
        A pair of values seen in less than this share of training readings is inconsistent...
    pair_common:
        ...when each value alone is seen in at least this share.
    n_bins:
        Quantile bins per numeric column (shift and pair checks).
    """

    rate_quantile: float = 0.999
    margin: float = 1.5
    range_margin: float = 0.1
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    replay_lengths: tuple[int, ...] = (4, 8, 16, 32)
    replay_max_rate: float = 0.001
    shift_window: int = 200
    shift_quantile: float = 0.99
    pair_min: float = 0.0005
    pair_common: float = 0.02
    n_bins: int = 8
    devices_: dict[str, DeviceLimits] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rules: list[tuple[str, bool, str]] = [
            ("rate_quantile", 0.5 <= self.rate_quantile <= 1.0, "in [0.5, 1]"),
            ("margin", self.margin >= 1.0, ">= 1"),
            ("range_margin", self.range_margin >= 0.0, ">= 0"),
            ("replay_lengths", bool(self.replay_lengths) and min(self.replay_lengths) >= 2, "non-empty, each >= 2"),
            ("replay_max_rate", 0.0 <= self.replay_max_rate < 1.0, "in [0, 1)"),
            ("shift_window", self.shift_window >= 10, ">= 10"),
            ("shift_quantile", 0.5 <= self.shift_quantile <= 1.0, "in [0.5, 1]"),
            ("pair_min", 0.0 <= self.pair_min < self.pair_common <= 1.0, "below pair_common, both in [0, 1]"),
            ("n_bins", 2 <= self.n_bins <= 64, "in [2, 64]"),
        ]
        for name, ok, rule in rules:
            if not ok:
                raise InvalidParameterError(
                    f"The '{name}' parameter of IntegrityMonitor must be {rule}. Got {getattr(self, name)!r}."
                )

    def fit(self, frame: pd.DataFrame) -> IntegrityMonitor:
        """Learn each device's limits from normal telemetry (events frame: ts, entity, num.*, cat.*)."""
        for col in ("ts", "entity"):
            if col not in frame.columns:
                raise SchemaError(f"IntegrityMonitor.fit: frame has no {col!r} column (has {list(frame.columns)[:8]})")
        self.devices_ = {}
        for entity, part in frame.groupby("entity", sort=True):
            part = part.sort_values("ts", kind="stable")
            if len(part) >= 2:
                self.devices_[str(entity)] = self._learn(part)
        if not self.devices_:
            raise InvalidParameterError(f"IntegrityMonitor.fit: no device has 2 readings or more ({len(frame)} rows)")
        return self

    def _learn(self, part: pd.DataFrame) -> DeviceLimits:
        num, cat = _columns(part)
        cols = num + cat
        lo, hi, rate, run = {}, {}, {}, {}
        for c in num:
            v = part[c].to_numpy(float)
            v = v[np.isfinite(v)]
            lo[c], hi[c] = (float(v.min()), float(v.max())) if len(v) else (0.0, 0.0)
            if not _range_is_stable(v, self.range_margin):
                lo[c], hi[c] = -np.inf, np.inf
            steps = np.abs(np.diff(v))
            rate[c] = float(np.quantile(steps, self.rate_quantile)) * self.margin if len(steps) else 0.0
        for c in cols:
            run[c] = float(_runs(part[c].astype(str).to_numpy()).max()) * self.margin
        rows = _row_hash(part, cols)
        run["<reading>"] = float(_runs(rows).max()) * self.margin
        replay_k, seen = 0, set()
        for k in sorted(self.replay_lengths):
            if len(part) < 2 * k:
                break
            h = _window_hash(rows, k)[k - 1 :]
            varied = _runs(rows)[k - 1 :] < k
            rate_k = float(pd.Series(h[varied]).duplicated().mean()) if varied.any() else 1.0
            if rate_k <= self.replay_max_rate:
                replay_k, seen = k, {int(x) for x in h[varied]}
                break
        bins, expected, marg = {}, {}, {}
        for c in cols:
            b = self._bins(part[c], c in num)
            codes = _codes(part[c], b)
            counts = np.bincount(codes, minlength=_nbins(b)).astype(float)
            bins[c] = b
            marg[c] = counts / counts.sum()
            expected[c] = (counts + 0.5) / (counts.sum() + 0.5 * len(counts))
        w = min(self.shift_window, max(10, len(part) // 4))
        drift = [_psi(_codes(part[c], bins[c]), expected[c], w)[w - 1 :] for c in cols]
        split = int(len(part) * 0.7)
        late = []
        if len(part) - split >= w:
            for c in cols:
                early = np.bincount(_codes(part[c].iloc[:split], bins[c]), minlength=_nbins(bins[c])).astype(float)
                early = (early + 0.5) / (early.sum() + 0.5 * len(early))
                late.append(_psi(_codes(part[c].iloc[split:], bins[c]), early, w)[w - 1 :])
        q_in = float(np.quantile(np.max(drift, axis=0), self.shift_quantile)) if drift else 0.0
        q_late = float(np.quantile(np.max(late, axis=0), self.shift_quantile)) if late else 0.0
        shift_limit = max(q_in, q_late) * self.margin
        pairs: dict[tuple[str, str], dict[tuple[int, int], float]] = {}
        codes_all = {c: _codes(part[c], bins[c]) for c in cols}
        for a, b2 in itertools.combinations(cols, 2):
            joint = pd.Series(list(zip(codes_all[a].tolist(), codes_all[b2].tolist(), strict=True))).value_counts()
            pairs[(a, b2)] = {k: v / len(part) for k, v in joint.items()}
        return DeviceLimits(
            num,
            cat,
            lo,
            hi,
            rate,
            run,
            replay_k,
            seen,
            bins,
            expected,
            shift_limit,
            pairs,
            marg,
            len(part),
            tail=part.tail(self._keep()),
            heads={c: float(_runs(part[c].astype(str).to_numpy())[max(0, len(part) - self._keep())]) for c in cols}
            | {"<reading>": float(_runs(rows)[max(0, len(part) - self._keep())])},
        )

    def _keep(self) -> int:
        return max(self.shift_window, max(self.replay_lengths))

    def _bins(self, values: pd.Series, numeric: bool) -> np.ndarray:
        if numeric:
            v = values.to_numpy(float)
            v = v[np.isfinite(v)]
            qs = np.quantile(v, np.linspace(0, 1, self.n_bins + 1)[1:-1]) if len(v) else np.array([])
            return np.unique(qs).astype(float)
        top = values.astype(str).value_counts().index[: self.n_bins * 2]
        return np.array(sorted(top), dtype=object)

    def check(self, frame: pd.DataFrame, update: bool = True) -> pd.DataFrame:
        """Score every reading of known devices with every check.

        Parameters
        ----------
        frame:
            Telemetry events (ts, entity, event_id, num.*, cat.*).
        update:
            Keep each device's stream tail (and seen sequences) for the next call.

        Returns
        -------
        pandas.DataFrame
            One row per (reading, check): ``event_id``, ``entity``, ``ts``, ``check``, ``score``
            (actual / limit), ``feature``, ``typical``, ``actual``. Readings of devices the
            monitor never learned are left out.
        """
        if not self.devices_:
            raise NotFittedError("IntegrityMonitor has not learned any device; call fit first")
        out = []
        for entity, part in frame.groupby("entity", sort=True):
            lim = self.devices_.get(str(entity))
            if lim is not None and len(part):
                out.append(self._check_device(str(entity), part.sort_values("ts", kind="stable"), lim, update))
        if not out:
            return pd.DataFrame(columns=["event_id", "entity", "ts", "check", "score", "feature", "typical", "actual"])
        return pd.concat(out, ignore_index=True)

    def _check_device(self, entity: str, part: pd.DataFrame, lim: DeviceLimits, update: bool) -> pd.DataFrame:
        n_tail = len(lim.tail)
        both = pd.concat([lim.tail, part], ignore_index=True)
        ids = part["event_id"].astype(str).to_numpy() if "event_id" in part else np.arange(len(part)).astype(str)
        recs: list[dict[str, Any]] = []
        best: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

        def add(check: str, score: np.ndarray, feature: np.ndarray, typical: np.ndarray, actual: np.ndarray) -> None:
            if check in best:
                s0, f0, t0, a0 = best[check]
                take = score > s0
                score, feature = np.where(take, score, s0), np.where(take, feature, f0)
                typical, actual = np.where(take, typical, t0), np.where(take, actual, a0)
            best[check] = (score, feature, typical, actual)

        m = len(part)
        new_heads: dict[str, float] = {}
        for c in lim.num:
            v = both[c].to_numpy(float) if c in both else np.full(len(both), np.nan)
            cur = v[n_tail:]
            lo, hi = lim.lo[c], lim.hi[c]
            pad = self.range_margin * max(hi - lo, abs(hi) * 0.01, _EPS) if np.isfinite(hi - lo) else np.inf
            blo, bhi = self.bounds.get(c, (-np.inf, np.inf))
            lo2, hi2 = max(lo - pad, blo), min(hi + pad, bhi)
            excess = np.maximum(lo2 - cur, cur - hi2)
            with np.errstate(invalid="ignore"):
                rel = excess / max(pad, _EPS) if np.isfinite(pad) else excess / max(abs(bhi - blo), 1.0)
            score = np.where(np.isfinite(cur) & (excess > 0), 1.0 + np.nan_to_num(rel), 0.0)
            add("range", score, np.full(m, c), np.full(m, f"{lo2:.4g}..{hi2:.4g}"), _fmt(cur))
            step = np.abs(np.diff(v, prepend=np.nan))[n_tail:]
            score = np.nan_to_num(step / max(lim.rate[c], _EPS))
            add("rate", score, np.full(m, c), np.full(m, f"|change| <= {lim.rate[c]:.4g}"), _fmt(step))
        for c in lim.num + lim.cat:
            vals = both[c].astype(str).to_numpy() if c in both else np.full(len(both), "nan")
            full = _runs(vals, lim.heads.get(c, 1.0))
            new_heads[c] = float(full[max(0, len(both) - self._keep())])
            r = full[n_tail:]
            add("frozen", r / max(lim.run[c], 1.0), np.full(m, c), np.full(m, f"runs <= {lim.run[c]:.0f}"), _fmt(r))
        cols = lim.num + lim.cat
        rows = _row_hash(both.reindex(columns=cols), cols)
        full = _runs(rows, lim.heads.get("<reading>", 1.0))
        new_heads["<reading>"] = float(full[max(0, len(both) - self._keep())])
        r = full[n_tail:]
        limit = max(lim.run["<reading>"], 1.0)
        add("frozen", r / limit, np.full(m, "<reading>"), np.full(m, f"identical readings <= {limit:.0f}"), _fmt(r))
        if lim.replay_k:
            k = lim.replay_k
            h = _window_hash(rows, k)
            varied = _runs(rows) < k
            hs = h[n_tail:]
            earlier = pd.Series(h).duplicated().to_numpy()[n_tail:]
            seen = np.fromiter((int(x) in lim.replay_seen for x in hs), dtype=bool, count=m)
            hit = (seen | earlier) & varied[n_tail:] & (np.arange(n_tail, len(both)) >= k - 1)
            add(
                "replay",
                np.where(hit, 2.0, 0.0),
                np.full(m, f"last {k} readings"),
                np.full(m, f"sequences of {k} readings repeat in <= {self.replay_max_rate:.2%} of training"),
                np.where(hit, "sequence seen before", "new sequence"),
            )
            if update:
                lim.replay_seen.update(int(x) for x in hs[varied[n_tail:]])
        w = min(self.shift_window, max(10, lim.n_train // 4))
        for c in cols:
            psi = _psi(_codes(both[c], lim.bins[c]), lim.expected[c], w, lift=2.0)[n_tail:]
            if n_tail < w - 1:
                psi[: max(0, w - 1 - n_tail)] = 0.0
            lim_s = max(lim.shift_limit, 0.01)
            add("shift", psi / lim_s, np.full(m, c), np.full(m, f"PSI <= {lim_s:.3f}"), _fmt(psi))
        for (a, b2), cells in lim.pair_cells.items():
            ca, cb = _codes(part[a], lim.bins[a]), _codes(part[b2], lim.bins[b2])
            fa, fb = lim.marginals[a][ca], lim.marginals[b2][cb]
            fab = np.array([cells.get((x, y), 0.0) for x, y in zip(ca.tolist(), cb.tolist(), strict=True)])
            common = (fa >= self.pair_common) & (fb >= self.pair_common)
            score = np.where(common, self.pair_min / np.maximum(fab, self.pair_min / 10), 0.0)
            typ = np.array([f"each value common, expected together in ~{x:.2%}" for x in fa * fb])
            act = np.array([f"{x} with {y}, seen in {z:.3%}" for x, y, z in zip(part[a], part[b2], fab, strict=True)])
            add("pair", score, np.full(m, f"{a}~{b2}"), typ, act)
        for check, (score, feature, typical, actual) in best.items():
            recs.append(
                pd.DataFrame(
                    {
                        "event_id": ids,
                        "entity": entity,
                        "ts": part["ts"].to_numpy(),
                        "check": check,
                        "score": score.astype(float),
                        "feature": feature,
                        "typical": typical,
                        "actual": actual,
                    }
                )
            )
        if update:
            lim.tail = both.tail(self._keep()).reset_index(drop=True)
            lim.heads = new_heads
        return pd.concat(recs, ignore_index=True)


def _fmt(values: np.ndarray) -> np.ndarray:
    return np.array([f"{x:.4g}" for x in values], dtype=object)
