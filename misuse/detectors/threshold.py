"""Thresholding, kept apart from scoring: turn scores into decisions at a stated false-positive rate.

A threshold is always fitted on scores of *training* (benign, held-out) data, never on test labels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from scipy import stats

from misuse.errors import InvalidParameterError, NotFittedError


class Threshold(ABC):
    """Maps anomaly scores to alarms. ``fit`` takes scores of normal data; ``threshold_`` is learned."""

    def fit(self, scores: np.ndarray) -> Threshold:
        """Learn the threshold from scores of normal (training or calibration) data."""
        s = np.asarray(scores, dtype="float64")
        s = s[np.isfinite(s)]
        if s.size == 0:
            raise InvalidParameterError(f"{type(self).__name__}.fit needs at least one finite score")
        self.threshold_ = float(self._fit(np.sort(s)))
        med = float(np.median(s))
        spread = float(np.percentile(s, 99) - med)
        self.scale_ = spread if spread > 0 else (float(np.std(s)) or 1.0)
        self.n_calibration_ = int(s.size)
        return self

    @abstractmethod
    def _fit(self, sorted_scores: np.ndarray) -> float:
        """The threshold for these (sorted, finite) scores."""

    def is_alarm(self, scores: np.ndarray | float) -> np.ndarray:
        """True where a score is above the threshold."""
        if not hasattr(self, "threshold_"):
            raise NotFittedError(f"{type(self).__name__} has not been fitted on calibration scores")
        return np.asarray(scores) > self.threshold_

    def severity(self, score: float) -> str:
        """low / medium / high / critical by how far a score lies beyond the threshold.

        The unit is the spread of the calibration scores' upper tail (99th percentile - median).
        """
        excess = (score - self.threshold_) / self.scale_
        if excess < 0.5:
            return "low"
        if excess < 2:
            return "medium"
        if excess < 5:
            return "high"
        return "critical"

    def to_dict(self) -> dict[str, Any]:
        """Parameters and learned state, for saving as JSON."""
        return {"class": type(self).__name__, **self.__dict__}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Threshold:
        """Rebuild a threshold saved with :meth:`to_dict`."""
        classes: dict[str, type[Threshold]] = {
            "QuantileThreshold": QuantileThreshold,
            "FPRThreshold": FPRThreshold,
            "EVTThreshold": EVTThreshold,
        }
        d = dict(d)
        cls = classes.get(str(d.pop("class", "")))
        if cls is None:
            raise InvalidParameterError(f"unknown threshold class in saved model: {d!r}")
        obj = cls.__new__(cls)
        obj.__dict__.update(d)
        return obj


class QuantileThreshold(Threshold):
    """The ``q``-quantile of the calibration scores.

    Examples
    --------
    >>> QuantileThreshold(0.9).fit(np.arange(101.0)).threshold_
    90.0
    """

    def __init__(self, q: float = 0.99) -> None:
        if not 0.0 < q < 1.0:
            raise InvalidParameterError(f"The 'q' parameter of QuantileThreshold must be in (0, 1). Got {q!r} instead.")
        self.q = q

    def _fit(self, sorted_scores: np.ndarray) -> float:
        return float(np.quantile(sorted_scores, self.q))


class FPRThreshold(Threshold):
    """The smallest threshold whose false-positive rate on the calibration scores is <= ``target_fpr``.

    Examples
    --------
    >>> t = FPRThreshold(0.1).fit(np.arange(100.0))
    >>> float(np.mean(t.is_alarm(np.arange(100.0))))
    0.1
    """

    def __init__(self, target_fpr: float = 0.01) -> None:
        if not 0.0 < target_fpr < 1.0:
            raise InvalidParameterError(
                f"The 'target_fpr' parameter of FPRThreshold must be in (0, 1). Got {target_fpr!r} instead."
            )
        self.target_fpr = target_fpr

    def _fit(self, sorted_scores: np.ndarray) -> float:
        n = sorted_scores.size
        allowed = int(np.floor(self.target_fpr * n))  # scores strictly above the threshold
        return float(sorted_scores[n - allowed - 1])


class EVTThreshold(Threshold):
    """Peaks-over-threshold: fit a generalized Pareto to the tail above ``init_quantile`` and place the
    threshold where the fitted tail probability equals ``target_fpr`` (Siffer et al., KDD 2017).
    Extrapolates beyond the largest calibration score when ``target_fpr`` is smaller than 1/n.
    """

    def __init__(self, target_fpr: float = 0.001, init_quantile: float = 0.9) -> None:
        if not 0.0 < target_fpr < 1.0 - init_quantile:
            raise InvalidParameterError(
                "The 'target_fpr' parameter of EVTThreshold must be in (0, 1 - init_quantile). "
                f"Got {target_fpr!r} instead."
            )
        self.target_fpr = target_fpr
        self.init_quantile = init_quantile

    def _fit(self, sorted_scores: np.ndarray) -> float:
        t = float(np.quantile(sorted_scores, self.init_quantile))
        peaks = sorted_scores[sorted_scores > t] - t
        if peaks.size < 10 or float(np.ptp(peaks)) == 0.0:
            return float(np.quantile(sorted_scores, 1.0 - self.target_fpr))
        shape, _, scale = stats.genpareto.fit(peaks, floc=0.0)
        ratio = self.target_fpr * sorted_scores.size / peaks.size
        return float(t + stats.genpareto.ppf(1.0 - ratio, shape, loc=0.0, scale=scale))
