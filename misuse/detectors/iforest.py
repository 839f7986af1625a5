"""Isolation forest in numpy: saved as plain arrays, scored without a Python loop per row."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from misuse.detectors.base import Detector


def _c(n: np.ndarray | float) -> np.ndarray:
    """Average path length of an unsuccessful BST search among n points (Liu et al. 2008)."""
    n = np.asarray(n, dtype="float64")
    out = np.zeros_like(n)
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + 0.5772156649) - 2.0 * (n[big] - 1.0) / n[big]
    out[n == 2] = 1.0
    return out


class IsolationForest(Detector):
    """Isolation forest (Liu, Ting & Zhou 2008).

    Scores are ``2 ** (-E[h(x)] / c(psi))`` in (0, 1]; higher is more anomalous, about 0.5 for
    ordinary points. Unlike the original, a node may split on a feature that is constant in its sample
    (just beside the constant value), so a value never seen in training is isolated quickly.

    Parameters
    ----------
    n_estimators:
        Number of trees, >= 1.
    max_samples:
        Subsample size per tree (psi), >= 2.
    seed:
        Seed of the random generator.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> normal = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500)})
    >>> det = IsolationForest(seed=1).learn_many(normal)
    >>> det.score_one({"a": 8.0, "b": -8.0}) > det.score_one({"a": 0.0, "b": 0.0})
    True
    """

    _params: ClassVar[dict[str, Any]] = {"n_estimators": 100, "max_samples": 256, "seed": 0}
    n_estimators: int
    max_samples: int
    seed: int

    def _validate_params(self) -> None:
        self._check("n_estimators", isinstance(self.n_estimators, int) and self.n_estimators >= 1, "an int >= 1")
        self._check("max_samples", isinstance(self.max_samples, int) and self.max_samples >= 2, "an int >= 2")
        self._check("seed", isinstance(self.seed, int), "an int")

    def _fit(self, X: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed)
        n, d = X.shape
        psi = min(self.max_samples, n)
        self.psi_ = psi
        limit = max(1, math.ceil(math.log2(max(psi, 2))))
        feat: list[int] = []
        thr: list[float] = []
        left: list[int] = []
        right: list[int] = []
        size: list[int] = []
        depth: list[int] = []
        roots = []
        for _ in range(self.n_estimators):
            idx = rng.choice(n, size=psi, replace=False) if psi < n else np.arange(n)
            roots.append(len(feat))
            stack = [(X[idx], 0, len(feat))]
            feat.append(-1)
            thr.append(0.0)
            left.append(-1)
            right.append(-1)
            size.append(len(idx))
            depth.append(0)
            while stack:
                data, dep, node = stack.pop()
                if dep >= limit or len(data) <= 1:
                    continue
                lo, hi = data.min(axis=0), data.max(axis=0)
                f = int(rng.integers(d))
                if hi[f] > lo[f]:
                    t = float(rng.uniform(lo[f], hi[f]))
                else:
                    # A feature constant here still splits: any other value lands in an empty child
                    # and is isolated at once (plain iForest never looks at it, and misses e.g. a first
                    # failed connection on a device that never had one).
                    eps = max(1e-9, 1e-6 * abs(float(lo[f])))
                    t = float(lo[f] + eps) if rng.random() < 0.5 else float(lo[f] - eps)
                mask = data[:, f] < t
                feat[node], thr[node] = f, t
                for side, part in ((left, data[mask]), (right, data[~mask])):
                    child = len(feat)
                    side[node] = child
                    feat.append(-1)
                    thr.append(0.0)
                    left.append(-1)
                    right.append(-1)
                    size.append(len(part))
                    depth.append(dep + 1)
                    stack.append((part, dep + 1, child))
        self.feature_ = np.asarray(feat, dtype=np.int32)
        self.threshold_split_ = np.asarray(thr, dtype="float64")
        self.left_ = np.asarray(left, dtype=np.int32)
        self.right_ = np.asarray(right, dtype=np.int32)
        self.size_ = np.asarray(size, dtype=np.int64)
        self.depth_ = np.asarray(depth, dtype=np.int32)
        self.roots_ = np.asarray(roots, dtype=np.int64)

    def _score(self, X: np.ndarray) -> np.ndarray:
        n = X.shape[0]
        rows = np.repeat(np.arange(n), len(self.roots_))
        node = np.tile(self.roots_, n)
        while True:
            f = self.feature_[node]
            inner = f >= 0
            if not inner.any():
                break
            ni, ri = node[inner], rows[inner]
            go_left = X[ri, f[inner]] < self.threshold_split_[ni]
            node[inner] = np.where(go_left, self.left_[ni], self.right_[ni])
        path = self.depth_[node] + _c(self.size_[node].astype("float64"))
        mean_path = path.reshape(n, len(self.roots_)).mean(axis=1)
        return np.asarray(2.0 ** (-mean_path / max(float(_c(float(self.psi_))), 1e-12)))

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "feature": self.feature_,
            "threshold": self.threshold_split_,
            "left": self.left_,
            "right": self.right_,
            "size": self.size_,
            "depth": self.depth_,
            "roots": self.roots_,
            "psi": np.asarray([self.psi_]),
        }

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.feature_ = np.asarray(arrays["feature"])
        self.threshold_split_ = np.asarray(arrays["threshold"])
        self.left_ = np.asarray(arrays["left"])
        self.right_ = np.asarray(arrays["right"])
        self.size_ = np.asarray(arrays["size"])
        self.depth_ = np.asarray(arrays["depth"])
        self.roots_ = np.asarray(arrays["roots"])
        self.psi_ = int(np.asarray(arrays["psi"])[0])
