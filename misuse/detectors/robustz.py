"""Robust z-score detector: how far a point lies outside each feature's typical range.

Isolation forests dilute a strong deviation in one or two features among many ordinary ones (a
random split rarely picks the feature that matters); this detector does not: a window with 100x its
usual flows scores high whatever its other features say. It is also its own explanation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from misuse.detectors.base import Contribution, Detector


class RobustZ(Detector):
    """Mean of the ``top_k`` largest robust z-scores ``|x - median| / scale`` over the features.

    The scale is the interquartile range / 1.349 (the standard deviation where the IQR is 0, else
    ``min_scale``), floored at ``min_scale`` so near-constant features do not explode. Scores are
    >= 0; higher is more anomalous.

    Parameters
    ----------
    top_k:
        How many of the largest per-feature deviations to average, >= 1.
    min_scale:
        Smallest scale a feature may have, > 0.
    cap:
        Largest z a single feature may contribute, > 0 (one absurd value cannot dominate).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> det = RobustZ().learn_many(pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)}))
    >>> det.score_one({"a": 9.0, "b": 0.0}) > 3 > det.score_one({"a": 0.1, "b": -0.2})
    True
    """

    _params: ClassVar[dict[str, Any]] = {"top_k": 2, "min_scale": 0.1, "cap": 1000.0}
    top_k: int
    min_scale: float
    cap: float

    def _validate_params(self) -> None:
        self._check("top_k", isinstance(self.top_k, int) and self.top_k >= 1, "an int >= 1")
        self._check("min_scale", isinstance(self.min_scale, int | float) and self.min_scale > 0, "a number > 0")
        self._check("cap", isinstance(self.cap, int | float) and self.cap > 0, "a number > 0")

    def _fit(self, X: np.ndarray) -> None:
        self.center_ = np.median(X, axis=0)
        q75, q25 = np.percentile(X, [75, 25], axis=0)
        spread = (q75 - q25) / 1.349
        std = X.std(axis=0)
        self.spread_ = np.maximum(np.where(spread > 0, spread, std), float(self.min_scale))

    def _z(self, X: np.ndarray) -> np.ndarray:
        return np.minimum(np.abs(X - self.center_) / self.spread_, float(self.cap))

    def _score(self, X: np.ndarray) -> np.ndarray:
        z = self._z(X)
        k = min(int(self.top_k), z.shape[1])
        top = np.partition(z, z.shape[1] - k, axis=1)[:, -k:]
        return np.asarray(top.mean(axis=1))

    def explain_one(self, x: Mapping[str, float], top: int = 5) -> list[Contribution]:
        """The features with the largest robust z-scores, with typical (median) vs actual values."""
        self._require_fitted()
        row = self._row(x)
        z = self._z(row[None, :])[0]
        order = np.argsort(-z)[:top]
        total = float(z.sum()) or 1.0
        out = [
            Contribution(self.features_[i], float(self.center_[i]), float(row[i]), float(z[i] / total))
            for i in order
            if z[i] > 0
        ]
        known = set(self.features_)
        out += [Contribution(k, float("nan"), float(v), 0.0) for k, v in x.items() if k not in known][:top]
        return out

    def _state(self) -> dict[str, np.ndarray]:
        return {"center": self.center_, "spread": self.spread_}

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.center_ = np.asarray(arrays["center"])
        self.spread_ = np.asarray(arrays["spread"])
