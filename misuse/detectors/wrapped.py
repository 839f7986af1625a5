"""Classic unsupervised detectors behind the common protocol, flipped so that higher = more anomalous.

Each is saved as plain arrays (JSON + npz), never pickle:

- :class:`KMeansDistance`: scikit-learn k-means on robustly scaled features (clipped at ±100); score = distance to
  the nearest centroid. Saved: the centroids.
- :class:`OneClassSVM`: scikit-learn's RBF one-class SVM; score = minus its decision function
  (plus 1e-9 times the distance to the nearest support vector, which only orders rows so far
  from all of them that the kernel is 0).
  Saved: support vectors, dual coefficients, intercept and gamma; scored in numpy.
- :class:`ECOD`: pyod's ECOD (Li et al., TKDE 2022), empirical-CDF tail probabilities per feature,
  computed from the *training* distribution only (pyod ranks a test batch together with the
  training data, which makes one row's score depend on its batch). Saved: per-feature sorted
  training values (a seeded sample of at most ``max_rows``) and skewness.
- :class:`HalfSpaceTrees`: river's streaming half-space trees on min-max scaled features. River's
  model is a tree of Python objects; its state depends only on the tree layout (drawn from
  ``seed``) and on the rows of the last complete and the current window, so those rows are saved
  and replayed on load, which restores it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from misuse.detectors.base import Contribution, Detector

_TIE = 1e-9  # weight of the distance tie-breaker of OneClassSVM


_ZCLIP = 100.0  # robust z-scores are clipped here: a near-constant training column (scale 1e-75 on
# N-BaIoT) would otherwise put every new row at 1e58 and make distances and RBF kernels degenerate


def _scaled(det: Detector, X: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip((X - det.median_) / det.scale_, -_ZCLIP, _ZCLIP))


class KMeansDistance(Detector):
    """Distance to the nearest k-means centroid in robustly scaled space (>= 0).

    Parameters
    ----------
    n_clusters:
        Number of centroids, >= 1 (fewer when there are fewer distinct rows).
    seed:
        Seed of the k-means initialisation.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> X = pd.DataFrame(np.random.default_rng(0).normal(size=(300, 2)), columns=["a", "b"])
    >>> det = KMeansDistance(n_clusters=4).learn_many(X)
    >>> det.score_one({"a": 9, "b": 9}) > det.score_one({"a": 0, "b": 0})
    True
    """

    _params: ClassVar[dict[str, Any]] = {"n_clusters": 8, "seed": 0}
    n_clusters: int
    seed: int

    def _validate_params(self) -> None:
        self._check("n_clusters", isinstance(self.n_clusters, int) and self.n_clusters >= 1, "an int >= 1")
        self._check("seed", isinstance(self.seed, int), "an int")

    def _fit(self, X: np.ndarray) -> None:
        from sklearn.cluster import KMeans

        Z = _scaled(self, X)
        k = int(min(self.n_clusters, len(np.unique(Z, axis=0))))
        km = KMeans(n_clusters=max(k, 1), n_init=3, random_state=self.seed).fit(Z)
        self.centers_ = np.asarray(km.cluster_centers_)

    def _score(self, X: np.ndarray) -> np.ndarray:
        Z = _scaled(self, X)
        d2 = ((Z[:, None, :] - self.centers_[None, :, :]) ** 2).sum(axis=2)
        return np.asarray(np.sqrt(d2.min(axis=1)))

    def _state(self) -> dict[str, np.ndarray]:
        return {"centers": self.centers_}

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.centers_ = np.asarray(arrays["centers"])


class OneClassSVM(Detector):
    """RBF one-class SVM (Schölkopf et al. 2001); score = minus the decision function.

    Parameters
    ----------
    nu:
        Upper bound on the share of training outliers, in (0, 1].
    max_rows:
        Training rows used (a seeded sample beyond that), >= 10; the SVM is quadratic in rows.
    seed:
        Seed of the sample.
    """

    _params: ClassVar[dict[str, Any]] = {"nu": 0.05, "max_rows": 5000, "seed": 0}
    nu: float
    max_rows: int
    seed: int

    def _validate_params(self) -> None:
        self._check("nu", 0 < float(self.nu) <= 1, "in (0, 1]")
        self._check("max_rows", isinstance(self.max_rows, int) and self.max_rows >= 10, "an int >= 10")
        self._check("seed", isinstance(self.seed, int), "an int")

    def _fit(self, X: np.ndarray) -> None:
        from sklearn.svm import OneClassSVM as SkOneClassSVM

        Z = _scaled(self, X)
        if len(Z) > self.max_rows:
            Z = Z[np.random.default_rng(self.seed).choice(len(Z), self.max_rows, replace=False)]
        var = float(Z.var())
        self.gamma_ = 1.0 / (Z.shape[1] * var) if var > 0 else 1.0
        svm = SkOneClassSVM(nu=float(self.nu), gamma=self.gamma_).fit(Z)
        self.support_ = np.asarray(svm.support_vectors_)
        self.dual_ = np.asarray(svm.dual_coef_).ravel()
        self.intercept_ = float(np.asarray(svm.intercept_).ravel()[0])

    def _score(self, X: np.ndarray) -> np.ndarray:
        Z = _scaled(self, X)
        d2 = (Z**2).sum(axis=1)[:, None] + (self.support_**2).sum(axis=1)[None, :] - 2.0 * Z @ self.support_.T
        d2 = np.maximum(d2, 0.0)
        K = np.exp(-self.gamma_ * d2)
        # far from every support vector the kernel vanishes and all such rows would tie at
        # -intercept: a vanishing multiple of the distance to the nearest one orders them
        return np.asarray(-(K @ self.dual_ + self.intercept_) + _TIE * np.sqrt(d2.min(axis=1)))

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "support": self.support_,
            "dual": self.dual_,
            "scalars": np.asarray([self.intercept_, self.gamma_]),
        }

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.support_ = np.asarray(arrays["support"])
        self.dual_ = np.asarray(arrays["dual"])
        self.intercept_, self.gamma_ = (float(v) for v in np.asarray(arrays["scalars"]))


class ECOD(Detector):
    """Empirical-cumulative-distribution outlier detection (pyod's ECOD), scored against training data.

    Score = sum over features of the largest of the left-tail, right-tail and skewness-chosen
    ``-log`` tail probabilities (>= 0). Tail probabilities count the row itself, as pyod does, so
    they are never 0: ``(count + 1) / (n + 1)``.

    Parameters
    ----------
    max_rows:
        Training rows kept per feature (a seeded sample beyond that), >= 10.
    seed:
        Seed of the sample.
    """

    _params: ClassVar[dict[str, Any]] = {"max_rows": 20_000, "seed": 0}
    max_rows: int
    seed: int

    def _validate_params(self) -> None:
        self._check("max_rows", isinstance(self.max_rows, int) and self.max_rows >= 10, "an int >= 10")
        self._check("seed", isinstance(self.seed, int), "an int")

    def _fit(self, X: np.ndarray) -> None:
        from scipy.stats import skew

        if len(X) > self.max_rows:
            X = X[np.random.default_rng(self.seed).choice(len(X), self.max_rows, replace=False)]
        self.sorted_ = np.sort(X, axis=0)
        self.skew_ = np.nan_to_num(np.asarray(skew(X, axis=0), dtype="float64"))

    def _tails(self, X: np.ndarray) -> np.ndarray:
        n = self.sorted_.shape[0]
        left = np.empty_like(X)
        right = np.empty_like(X)
        for j in range(X.shape[1]):
            col = self.sorted_[:, j]
            left[:, j] = np.searchsorted(col, X[:, j], side="right")
            right[:, j] = n - np.searchsorted(col, X[:, j], side="left")
        u_l = -np.log((left + 1.0) / (n + 1.0))
        u_r = -np.log((right + 1.0) / (n + 1.0))
        u_skew = u_l * -np.sign(self.skew_ - 1.0) + u_r * np.sign(self.skew_ + 1.0)
        return np.asarray(np.maximum(np.maximum(u_l, u_r), u_skew))

    def _score(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self._tails(X).sum(axis=1))

    def explain_one(self, x: Mapping[str, float], top: int = 5) -> list[Contribution]:
        """Features ranked by their tail-probability term (ECOD's own attribution)."""
        self._require_fitted()
        row = self._row(x)
        per = self._tails(row[None, :])[0]
        per = per - per.min()
        order = np.argsort(-per)[:top]
        total = float(per.sum()) or 1.0
        out = [
            Contribution(self.features_[i], float(self.median_[i]), float(row[i]), float(per[i] / total))
            for i in order
            if per[i] > 0
        ]
        known = set(self.features_)
        out += [Contribution(k, math.nan, float(v), 0.0) for k, v in x.items() if k not in known][:top]
        return out

    def _state(self) -> dict[str, np.ndarray]:
        return {"sorted": self.sorted_, "skew": self.skew_}

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.sorted_ = np.asarray(arrays["sorted"])
        self.skew_ = np.asarray(arrays["skew"])


class HalfSpaceTrees(Detector):
    """river's half-space trees (Tan, Ting & Liu 2011), a streaming detector; score in [0, 1].

    Features are min-max scaled with the first batch's range (clipped to [0, 1]). ``learn_one``
    after fitting is truly online (river's own update), no refit.

    Parameters
    ----------
    n_trees, height, window_size:
        As in ``river.anomaly.HalfSpaceTrees`` (>= 1, >= 1, >= 2).
    seed:
        Seed of the tree layout.
    """

    _params: ClassVar[dict[str, Any]] = {"n_trees": 25, "height": 10, "window_size": 250, "seed": 0}
    n_trees: int
    height: int
    window_size: int
    seed: int

    def _validate_params(self) -> None:
        self._check("n_trees", isinstance(self.n_trees, int) and self.n_trees >= 1, "an int >= 1")
        self._check("height", isinstance(self.height, int) and self.height >= 1, "an int >= 1")
        self._check("window_size", isinstance(self.window_size, int) and self.window_size >= 2, "an int >= 2")
        self._check("seed", isinstance(self.seed, int), "an int")

    def _model(self) -> Any:
        from river.anomaly import HalfSpaceTrees as RiverHST

        return RiverHST(n_trees=self.n_trees, height=self.height, window_size=self.window_size, seed=self.seed)

    def _unit(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(np.clip((X - self.lo_) / self.span_, 0.0, 1.0))

    def _fit(self, X: np.ndarray) -> None:
        self.lo_ = X.min(axis=0)
        span = X.max(axis=0) - self.lo_
        self.span_ = np.where(span > 0, span, 1.0)
        self.model_ = self._model()
        self.history_ = np.empty((0, X.shape[1]))
        self._feed(X)

    def _feed(self, X: np.ndarray) -> None:
        keys = [f"f{j}" for j in range(X.shape[1])]
        for row in self._unit(X):
            self.model_.learn_one(dict(zip(keys, row.tolist(), strict=True)))
        # river's state depends only on the current window and the one before: keep those rows
        hist = np.vstack([self.history_, X])
        n_total = int(self.n_seen_)
        keep = n_total % self.window_size + (self.window_size if n_total >= self.window_size else 0)
        self.history_ = hist[-keep:] if keep else hist[:0]

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Learn one observation: river's own online update once the scaling is known."""
        if not self.is_fitted:
            super().learn_one(x)
            return
        self.n_seen_ += 1
        self._feed(self._row(x)[None, :])

    def _score(self, X: np.ndarray) -> np.ndarray:
        keys = [f"f{j}" for j in range(X.shape[1])]
        return np.asarray(
            [self.model_.score_one(dict(zip(keys, row.tolist(), strict=True))) for row in self._unit(X)],
            dtype="float64",
        )

    def _state(self) -> dict[str, np.ndarray]:
        return {"lo": self.lo_, "span": self.span_, "history": self.history_}

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.lo_ = np.asarray(arrays["lo"])
        self.span_ = np.asarray(arrays["span"])
        self.model_ = self._model()
        self.history_ = np.empty((0, len(self.lo_)))
        hist = np.asarray(arrays["history"])
        seen = self.n_seen_
        self.n_seen_ = len(hist)
        self._feed(hist)
        self.n_seen_ = seen
