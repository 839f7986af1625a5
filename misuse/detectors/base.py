"""The detector protocol: river's streaming API with scikit-learn's discipline.

Every detector

- stores only its keyword arguments in ``__init__`` (validated in :meth:`Detector._validate_params`);
- learns with ``learn_one(x)`` / ``learn_many(X)`` and scores with ``score_one(x)`` / ``score_many(X)``,
  where higher means more anomalous and scoring never changes state;
- explains a score with ``explain_one(x)``: the contributing features with typical vs actual values;
- keeps learned state in attributes ending in ``_``, takes randomness only from ``seed``;
- copes with missing features (filled with the typical training value) and new ones (ignored and
  reported by ``explain_one``);
- can be cloned (:meth:`Detector.clone`) and saved/loaded as JSON + npz, never pickle.

``x`` is a mapping of feature name to number; ``X`` is a DataFrame whose columns are features.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from misuse.errors import InvalidParameterError, NotFittedError, SchemaError


@dataclass(frozen=True)
class Contribution:
    """One feature's part in a score: what is typical for the baseline and what was seen."""

    feature: str
    typical: float
    actual: float
    weight: float  # share of the explanation, >= 0; larger means it drove the score more

    def to_dict(self) -> dict[str, float | str]:
        """Plain-dict form for JSON."""
        return {
            "feature": self.feature,
            "typical": self.typical,
            "actual": self.actual,
            "weight": self.weight,
        }


class Detector(ABC):
    """Base class of every anomaly detector.

    Subclasses declare ``_params`` (name -> default) and implement ``_fit``, ``_score`` and the
    ``_state``/``_set_state`` pair used for saving. Feature alignment, robust baselines for explanations,
    cloning and persistence live here, once.
    """

    _params: ClassVar[dict[str, Any]] = {}
    #: learn_one keeps at most this many past rows (batch models refit on them)
    _reservoir_size: ClassVar[int] = 20_000
    #: learn_one hands rows to _learn_rows in batches of this size
    _update_every: ClassVar[int] = 64

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self._params)
        if unknown:
            raise InvalidParameterError(
                f"{type(self).__name__} got unknown parameter(s) {sorted(unknown)}; valid: {sorted(self._params)}"
            )
        for name, default in self._params.items():
            setattr(self, name, params.get(name, default))
        self._validate_params()

    # ----- parameters -------------------------------------------------------------------------
    def _validate_params(self) -> None:  # noqa: B027 - optional hook, most detectors override it
        """Raise InvalidParameterError for a parameter outside its constraints."""

    def _check(self, name: str, ok: bool, expected: str) -> None:
        if not ok:
            raise InvalidParameterError(
                f"The '{name}' parameter of {type(self).__name__} must be {expected}. "
                f"Got {getattr(self, name)!r} instead."
            )

    def get_params(self) -> dict[str, Any]:
        """The keyword arguments this detector was built with."""
        return {name: getattr(self, name) for name in self._params}

    def clone(self) -> Detector:
        """A new, unfitted detector with the same parameters."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ----- learning -------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        """True once the detector has learned from data."""
        return hasattr(self, "features_")

    def learn_many(self, X: pd.DataFrame) -> Detector:
        """Learn from a batch; returns self. Replaces what was learned before."""
        if len(X) == 0:
            raise SchemaError(f"{type(self).__name__}.learn_many got an empty batch")
        X = X.select_dtypes(include=[np.number, "bool"])
        if X.shape[1] == 0:
            raise SchemaError(f"{type(self).__name__}.learn_many got no numeric feature columns")
        self.features_ = [str(c) for c in X.columns]
        values = X.to_numpy(dtype="float64", na_value=np.nan)
        self.median_, self.scale_ = _robust_center_scale(values)
        self.n_seen_ = len(X)
        filled = self._fill(values)
        keep = np.random.default_rng(int(getattr(self, "seed", 0) or 0)).permutation(len(filled))
        self._reservoir: list[np.ndarray] = list(filled[np.sort(keep[: self._reservoir_size])])
        self._batch: list[np.ndarray] = []
        self._next_refit = 2 * len(filled)
        self._fit(filled)
        return self

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Learn from one observation.

        Before the first fit, observations are buffered until there are ``_min_rows()``. After it,
        every observation joins a bounded uniform reservoir (reservoir sampling, seeded) and a
        small batch; each full batch goes to :meth:`_learn_rows`, which online models override to
        train incrementally and batch models leave as is: refit on the reservoir each time the
        number of observations has doubled.
        """
        if not self.is_fitted:
            pending: list[dict[str, float]] = self.__dict__.setdefault("_pending", [])
            pending.append(dict(x))
            if len(pending) >= self._min_rows():
                rows = pd.DataFrame(pending)
                del self.__dict__["_pending"]
                self.learn_many(rows)
            return
        self.n_seen_ += 1
        row = self._row(x)
        if len(self._reservoir) < self._reservoir_size:
            self._reservoir.append(row)
        else:
            rng = np.random.default_rng([int(getattr(self, "seed", 0) or 0), self.n_seen_])
            j = int(rng.integers(self.n_seen_))
            if j < self._reservoir_size:
                self._reservoir[j] = row
        self._batch.append(row)
        if len(self._batch) >= self._update_every:
            self._learn_rows(np.vstack(self._batch))
            self._batch = []

    def _min_rows(self) -> int:
        return 32

    def _learn_rows(self, rows: np.ndarray) -> None:
        """Fold a batch of new (aligned) rows into a fitted model. Default: refit on the reservoir
        whenever the number of observations has doubled since the last fit."""
        if self.n_seen_ >= self._next_refit:
            self._fit(np.vstack(self._reservoir))
            self._next_refit = 2 * self.n_seen_

    # ----- scoring -------------------------------------------------------------------------
    def score_many(self, X: pd.DataFrame) -> np.ndarray:
        """Anomaly scores of a batch (higher = more anomalous); never changes state."""
        self._require_fitted()
        return self._score(self._align(X))

    def score_one(self, x: Mapping[str, float]) -> float:
        """Anomaly score of one observation (higher = more anomalous); never changes state."""
        self._require_fitted()
        return float(self._score(self._row(x)[None, :])[0])

    def explain_one(self, x: Mapping[str, float], top: int = 5) -> list[Contribution]:
        """The features that drove ``x``'s score, largest first, with typical vs actual values.

        The default ranks features by their robust deviation from the training median
        (|actual - median| / scale); detectors with a better attribution override it.
        Features never seen in training are reported with a NaN typical value.
        """
        self._require_fitted()
        row = self._row(x)
        dev = np.abs(row - self.median_) / self.scale_
        order = np.argsort(-dev)[:top]
        total = float(dev.sum()) or 1.0
        out = [
            Contribution(self.features_[i], float(self.median_[i]), float(row[i]), float(dev[i] / total))
            for i in order
            if dev[i] > 0
        ]
        known = set(self.features_)
        out += [Contribution(k, math.nan, float(v), 0.0) for k, v in x.items() if k not in known][:top]
        return out

    # ----- alignment -------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} has not learned anything yet; call learn_many first")

    def _fill(self, values: np.ndarray) -> np.ndarray:
        bad = ~np.isfinite(values)
        if bad.any():
            values = np.where(bad, self.median_[None, :], values)
        return values

    def _align(self, X: pd.DataFrame) -> np.ndarray:
        cols = {str(c): c for c in X.columns}
        out = np.empty((len(X), len(self.features_)), dtype="float64")
        for j, f in enumerate(self.features_):
            if f in cols:
                out[:, j] = pd.to_numeric(X[cols[f]], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            else:
                out[:, j] = np.nan
        return self._fill(out)

    def _row(self, x: Mapping[str, float]) -> np.ndarray:
        row = np.array([_to_float(x.get(f)) for f in self.features_], dtype="float64")
        return self._fill(row[None, :])[0]

    # ----- model-specific -------------------------------------------------------------------------
    @abstractmethod
    def _fit(self, X: np.ndarray) -> None:
        """Learn from an aligned, finite matrix."""

    @abstractmethod
    def _score(self, X: np.ndarray) -> np.ndarray:
        """Scores of an aligned, finite matrix."""

    @abstractmethod
    def _state(self) -> dict[str, np.ndarray]:
        """The learned arrays to save (besides features/median/scale)."""

    @abstractmethod
    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore what :meth:`_state` returned."""

    # ----- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Save to a folder as ``detector.json`` (class, parameters, features) and ``state.npz``.

        Nothing in either file can execute code when loaded.
        """
        self._require_fitted()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "class": type(self).__name__,
            "params": self.get_params(),
            "features": self.features_,
            "n_seen": self.n_seen_,
        }
        (folder / "detector.json").write_text(json.dumps(meta, indent=2, default=_json_default))
        arrays = {"_median": self.median_, "_scale": self.scale_, **self._state()}
        np.savez(folder / "state.npz", **arrays)  # type: ignore[arg-type]
        return folder

    @classmethod
    def _restore(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Detector:
        det = cls(**meta["params"])
        det.features_ = list(meta["features"])
        det.n_seen_ = int(meta.get("n_seen", 0))
        det.median_ = np.asarray(arrays["_median"])
        det.scale_ = np.asarray(arrays["_scale"])
        det._reservoir = []
        det._batch = []
        det._next_refit = 2 * max(det.n_seen_, 1)
        det._set_state(arrays)
        return det


def _robust_center_scale(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column median and robust scale (IQR / 1.349, else the standard deviation, else 1) over the
    finite values; a column with no finite value gets 0 and 1."""
    center = np.zeros(values.shape[1])
    scale = np.ones(values.shape[1])
    for j in range(values.shape[1]):
        col = values[:, j]
        col = col[np.isfinite(col)]
        if col.size == 0:
            continue
        q25, q50, q75 = np.percentile(col, [25, 50, 75])
        center[j] = q50
        spread = (q75 - q25) / 1.349
        std = float(col.std())
        scale[j] = spread if spread > 0 else (std if std > 0 else 1.0)
    return center, scale


def _to_float(v: object) -> float:
    if v is None:
        return math.nan
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _json_default(o: object) -> object:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    raise TypeError(f"cannot save parameter value {o!r}")
