"""Device-type classifier over window fingerprints: k nearest neighbours with a confidence.

A plain, inspectable model: features are standardised with the training mean and spread, a window
is compared with the stored training windows (at most ``max_per_class`` per type, drawn with
``seed``), and the distance-weighted vote of its ``k`` nearest neighbours gives a probability per
device type. Its distance to the nearest training window *of a type*, divided by that type's own
radius (the ``radius_quantile`` of leave-one-out nearest-neighbour distances within the type),
says how far it is from anything seen for that type (> 1: farther than nearly all of its own
windows). The service ports (below 49152) each type used in training are kept too, for the
takeover check. Saved as JSON + npz, never as pickles.

The vote alone is closed-set: a device of a type never taught still gets a confident vote for its
nearest type. So each type also has an *open-set cut-off*, calibrated on held-out windows: the
type's training windows are cut into ``5`` blocks in time order (by ``window_start``, else row
order), each block is measured against the type's other blocks, and the ``open_quantile`` of those
distances is the cut-off (by default 99 % of genuine windows of a later period stayed within it).
:func:`identify` counts a window's vote for a type only when the window lies within that type's
cut-off, so the confidence falls as a device's windows move away from everything seen for the type.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from misuse.errors import InvalidParameterError, NotFittedError, SchemaError
from misuse.fingerprint.features import feature_columns

_EPS = 1e-9
_FORMAT = "misuse.fingerprint.knn/1"
_DYNAMIC = 49152  # service ports below this are remembered per type
_MAX_PORTS = 256
_FOLDS = 5  # time blocks per type for the open-set calibration


class DeviceClassifier:
    """Identify the device type of fingerprint windows.

    Parameters
    ----------
    k:
        Neighbours that vote.
    max_per_class:
        Training windows kept per type (a seeded random subset when there are more).
    radius_quantile:
        Quantile of within-type nearest-neighbour distances that makes the type's radius.
    open_quantile:
        Quantile of held-out genuine windows' distances that makes the type's open-set cut-off.
    seed:
        Seed of the subset draw.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"f.a": np.r_[rng.normal(0, 1, 20), rng.normal(5, 1, 20)]})
    >>> clf = DeviceClassifier(k=3).fit(X, ["cam"] * 20 + ["lock"] * 20)
    >>> clf.predict(pd.DataFrame({"f.a": [5.2]}))[0]
    'lock'
    """

    def __init__(
        self,
        k: int = 5,
        max_per_class: int = 2000,
        radius_quantile: float = 0.99,
        open_quantile: float = 0.99,
        seed: int = 0,
    ) -> None:
        self.k = k
        self.max_per_class = max_per_class
        self.radius_quantile = radius_quantile
        self.open_quantile = open_quantile
        self.seed = seed
        if k < 1:
            raise InvalidParameterError(f"The 'k' parameter of DeviceClassifier must be >= 1. Got {k}.")
        if max_per_class < 2:
            raise InvalidParameterError(
                f"The 'max_per_class' parameter of DeviceClassifier must be >= 2. Got {max_per_class}."
            )
        if not 0.0 < radius_quantile <= 1.0:
            raise InvalidParameterError(
                f"The 'radius_quantile' parameter of DeviceClassifier must be in (0, 1]. Got {radius_quantile}."
            )
        if not 0.0 < open_quantile <= 1.0:
            raise InvalidParameterError(
                f"The 'open_quantile' parameter of DeviceClassifier must be in (0, 1]. Got {open_quantile}."
            )

    # ------------------------------------------------------------------ fitting
    def fit(self, X: pd.DataFrame, y: Any) -> DeviceClassifier:
        """Learn from window features ``X`` (``f.*`` columns) and their device types ``y``.

        With a ``window_start`` column the open-set calibration holds out blocks of time;
        without one, blocks of rows in the given order.
        """
        labels = np.asarray(list(y), dtype=object).astype(str)
        cols = feature_columns(X)
        if not cols:
            raise SchemaError("DeviceClassifier.fit: no 'f.*' feature columns in the training frame")
        if len(labels) != len(X):
            raise SchemaError(f"DeviceClassifier.fit: {len(X)} windows but {len(labels)} labels")
        classes = sorted(set(labels))
        if len(classes) < 1 or len(X) < 2:
            raise SchemaError(f"DeviceClassifier.fit: need at least 2 windows, got {len(X)}")
        rng = np.random.default_rng(self.seed)
        keep: list[int] = []
        for c in classes:
            idx = np.flatnonzero(labels == c)
            if idx.size > self.max_per_class:
                idx = np.sort(rng.choice(idx, size=self.max_per_class, replace=False))
            keep.extend(idx.tolist())
        raw = X[cols].to_numpy(dtype=np.float64)[keep]
        raw = np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
        self.features_ = cols
        self.mean_ = raw.mean(axis=0)
        self.scale_ = np.maximum(raw.std(axis=0), 1e-3)
        self.train_ = (raw - self.mean_) / self.scale_
        self.classes_ = classes
        self.codes_ = np.array([classes.index(v) for v in labels[keep]], dtype=np.int64)
        self.radius_ = np.ones(len(classes))
        for i in range(len(classes)):
            own = self.train_[self.codes_ == i]
            if own.shape[0] >= 2:
                d = _dist(own, own)
                np.fill_diagonal(d, np.inf)
                self.radius_[i] = max(float(np.quantile(d.min(axis=1), self.radius_quantile)), _EPS)
        starts = X["window_start"].to_numpy(dtype=np.float64)[keep] if "window_start" in X.columns else None
        self.cutoff_ = self._calibrate(np.arange(len(keep), dtype=np.float64) if starts is None else starts)
        self.typical_ = np.array([np.median(raw[self.codes_ == i], axis=0) for i in range(len(classes))])
        self.ports_: dict[str, list[int]] = {c: [] for c in classes}
        if "ports" in X.columns:
            for c in classes:
                seen: set[int] = set()
                for p in X["ports"].to_numpy()[labels == c]:
                    seen.update(int(x) for x in p if int(x) < _DYNAMIC)
                self.ports_[c] = sorted(seen)[:_MAX_PORTS]
        return self

    def _calibrate(self, order: np.ndarray) -> np.ndarray:
        """Per type, the ``open_quantile`` of held-out distances: each of ``_FOLDS`` blocks (in
        ``order``) of the type's training windows against the type's other blocks."""
        cutoff = self.radius_.copy()  # a type with a single window: its radius
        for i in range(len(self.classes_)):
            own = np.flatnonzero(self.codes_ == i)
            if own.size < 2:
                continue
            blocks = np.array_split(own[np.argsort(order[own], kind="stable")], min(_FOLDS, own.size))
            held_out = [_dist(self.train_[b], self.train_[np.setdiff1d(own, b)]).min(axis=1) for b in blocks if b.size]
            cutoff[i] = max(float(np.quantile(np.concatenate(held_out), self.open_quantile)), _EPS)
        return cutoff

    def _check(self) -> None:
        if not hasattr(self, "train_"):
            raise NotFittedError("DeviceClassifier has not been fitted; call fit() or load() first")

    def _z(self, X: pd.DataFrame) -> np.ndarray:
        raw = X.reindex(columns=self.features_, fill_value=0.0).to_numpy(dtype=np.float64)
        raw = np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
        return (raw - self.mean_) / self.scale_  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ scoring
    def predict_proba(self, X: pd.DataFrame) -> pd.DataFrame:
        """Probability per device type (columns :attr:`classes_`), one row per window."""
        self._check()
        z = self._z(X)
        out = np.zeros((len(z), len(self.classes_)))
        k = min(self.k, self.train_.shape[0])
        for lo in range(0, len(z), 2048):
            d = _dist(z[lo : lo + 2048], self.train_)
            nn = np.argpartition(d, k - 1, axis=1)[:, :k]
            dn = np.take_along_axis(d, nn, axis=1)
            w = 1.0 / (dn + 1e-3)
            for j in range(k):
                np.add.at(out, (np.arange(lo, lo + len(nn)), self.codes_[nn[:, j]]), w[:, j])
        out /= np.maximum(out.sum(axis=1, keepdims=True), _EPS)
        return pd.DataFrame(out, columns=self.classes_, index=X.index)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The most likely device type of each window."""
        p = self.predict_proba(X)
        return np.asarray(p.columns.to_numpy()[p.to_numpy().argmax(axis=1)], dtype=object)

    def distance_to(self, X: pd.DataFrame, device_type: str) -> np.ndarray:
        """Distance of each window to the nearest training window of ``device_type``, in that type's radii."""
        self._check()
        if device_type not in self.classes_:
            raise InvalidParameterError(f"unknown device type {device_type!r}; known: {self.classes_}")
        i = self.classes_.index(device_type)
        own = self.train_[self.codes_ == i]
        return _dist(self._z(X), own).min(axis=1) / self.radius_[i]  # type: ignore[no-any-return]

    def open_cutoff(self, device_type: str) -> float:
        """The type's open-set cut-off in its radii (see the module docstring): a window farther
        than this from every training window of the type is not counted as one of its kind."""
        self._check()
        if device_type not in self.classes_:
            raise InvalidParameterError(f"unknown device type {device_type!r}; known: {self.classes_}")
        i = self.classes_.index(device_type)
        return float(self.cutoff_[i] / self.radius_[i])

    def deviations(self, row: pd.DataFrame, device_type: str, top: int = 4) -> list[dict[str, Any]]:
        """The features of one window farthest from the type's typical values (typical vs actual)."""
        self._check()
        i = self.classes_.index(device_type)
        actual = row.reindex(columns=self.features_, fill_value=0.0).to_numpy(dtype=np.float64)[0]
        z = np.abs(actual - self.typical_[i]) / self.scale_
        order = np.argsort(-z)[:top]
        return [
            {
                "feature": self.features_[j],
                "typical": round(float(self.typical_[i][j]), 4),
                "actual": round(float(actual[j]), 4),
                "weight": round(float(z[j]), 3),
            }
            for j in order
        ]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write ``<path>.json`` (parameters, types, features) and ``<path>.npz`` (arrays)."""
        self._check()
        p = Path(path).with_suffix("")
        meta = {
            "format": _FORMAT,
            "params": {
                "k": self.k,
                "max_per_class": self.max_per_class,
                "radius_quantile": self.radius_quantile,
                "open_quantile": self.open_quantile,
                "seed": self.seed,
            },
            "classes": self.classes_,
            "features": self.features_,
            "ports": self.ports_,
        }
        p.parent.mkdir(parents=True, exist_ok=True)
        p.with_suffix(".json").write_text(json.dumps(meta, indent=1))
        np.savez(
            p.with_suffix(".npz"),
            mean=self.mean_,
            scale=self.scale_,
            train=self.train_,
            codes=self.codes_,
            radius=self.radius_,
            typical=self.typical_,
            cutoff=self.cutoff_,
        )
        return p.with_suffix(".json")

    @classmethod
    def load(cls, path: str | Path) -> DeviceClassifier:
        """Read a model written by :meth:`save` (no code is executed: JSON and plain arrays).

        A model saved before the open-set calibration existed has no ``cutoff`` array; its
        types' radii (leave-one-out, not held-out blocks) stand in for the cut-offs.

        Raises
        ------
        SchemaError
            Naming the file and the problem: missing, empty, not JSON / not an npz archive,
            another kind of model, a missing key or array, arrays of the wrong shape.
        """
        p = Path(path).with_suffix("")
        meta_file, arrays_file = p.with_suffix(".json"), p.with_suffix(".npz")
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise SchemaError(f"{meta_file}: cannot read device classifier: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise SchemaError(f"{meta_file}: not a device classifier (format {found!r})")
        try:
            clf = cls(**meta["params"])
            clf.classes_ = [str(c) for c in meta["classes"]]
            clf.features_ = [str(f) for f in meta["features"]]
            clf.ports_ = {str(k): [int(x) for x in v] for k, v in meta.get("ports", {}).items()}
        except KeyError as exc:
            raise SchemaError(f"{meta_file}: device classifier lacks the key {exc}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise SchemaError(f"{meta_file}: bad device classifier metadata: {exc}") from None
        arrays = _read_arrays(arrays_file)
        clf.mean_, clf.scale_, clf.train_ = arrays["mean"], arrays["scale"], arrays["train"]
        clf.codes_, clf.radius_, clf.typical_ = arrays["codes"], arrays["radius"], arrays["typical"]
        clf.cutoff_ = arrays.get("cutoff", clf.radius_)
        _check_shapes(clf, arrays_file)
        return clf


_ARRAYS = ("mean", "scale", "train", "codes", "radius", "typical")
_OPTIONAL = ("cutoff",)  # absent from models saved before the open-set calibration


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The model's arrays from its npz file; SchemaErrors naming the file when it is unreadable."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read device classifier: {exc}") from None
    if not head:
        raise SchemaError(f"{path}: cannot read device classifier: the file is empty")
    if head != b"PK\x03\x04":
        raise SchemaError(f"{path}: cannot read device classifier: not an npz archive (starts with {head!r})")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [n for n in _ARRAYS if n not in npz.files]
            if missing:
                raise SchemaError(f"{path}: device classifier lacks the array(s) {missing}")
            return {name: np.asarray(npz[name]) for name in (*_ARRAYS, *_OPTIONAL) if name in npz.files}
    except (EOFError, OSError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise SchemaError(f"{path}: cannot read device classifier: corrupt npz archive ({exc})") from None


def _check_shapes(clf: DeviceClassifier, path: Path) -> None:
    n_classes, n_features = len(clf.classes_), len(clf.features_)
    n_train = clf.train_.shape[0] if clf.train_.ndim else 0
    expected = {
        "mean": (n_features,),
        "scale": (n_features,),
        "train": (n_train, n_features),
        "codes": (n_train,),
        "radius": (n_classes,),
        "typical": (n_classes, n_features),
        "cutoff": (n_classes,),
    }
    for name, shape in expected.items():
        got = getattr(clf, f"{name}_").shape
        if got != shape:
            raise SchemaError(f"{path}: array '{name}' has shape {got}, expected {shape}")
    codes = clf.codes_
    if not np.issubdtype(codes.dtype, np.integer) or (codes.size and (codes.min() < 0 or codes.max() >= n_classes)):
        raise SchemaError(f"{path}: array 'codes' must hold type numbers 0..{n_classes - 1}")


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))  # type: ignore[no-any-return]


def identify(
    windows: pd.DataFrame, clf: DeviceClassifier, *, min_confidence: float = 0.5, max_distance: float = 3.0
) -> pd.DataFrame:
    """One identification per device: the type with the highest mean window probability, and how
    sure that is when the device may be of a type the classifier was never taught.

    Returns
    -------
    pandas.DataFrame
        ``device``, ``windows``, ``type`` (the nearest type, or "unknown" when the confidence is
        under ``min_confidence`` or the device's median distance to the type is over
        ``max_distance`` radii), ``confidence`` (the mean over the device's windows of the
        nearest type's probability, counted only for windows within the type's open-set cut-off,
        :meth:`DeviceClassifier.open_cutoff`), ``inside`` (the share of the device's windows
        within that cut-off), ``nearest`` (the type with the highest mean probability),
        ``runner_up`` and ``distance`` (median distance to the nearest type, in its radii).

    Examples
    --------
    A type left out of training is not given to its nearest known type:

    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"f.a": np.r_[rng.normal(0, 1, 40), rng.normal(8, 1, 40)]})
    >>> clf = DeviceClassifier().fit(X, ["cam"] * 40 + ["lock"] * 40)
    >>> w = pd.DataFrame({"device": ["a"] * 5 + ["b"] * 5, "f.a": [0.1, 0.5, -0.2, 0.3, 0.0] + [13.0] * 5})
    >>> ident = identify(w, clf)
    >>> ident[["device", "type", "nearest"]].values.tolist()
    [['a', 'cam', 'cam'], ['b', 'unknown', 'lock']]
    >>> ident["confidence"].tolist()
    [1.0, 0.0]
    """
    cols = ["device", "windows", "type", "confidence", "inside", "nearest", "runner_up", "distance"]
    if windows.empty:
        return pd.DataFrame(columns=cols)
    proba = clf.predict_proba(windows)
    devices = windows["device"].to_numpy()
    mean = proba.groupby(devices).mean()
    rows = []
    for device, p in mean.iterrows():
        ranked = p.sort_values(ascending=False)
        best = str(ranked.index[0])
        sel = devices == device
        dist = clf.distance_to(windows[sel], best)
        inside = dist <= clf.open_cutoff(best)
        conf = float(np.mean(proba.loc[sel, best].to_numpy() * inside))
        median = float(np.median(dist))
        rows.append(
            {
                "device": str(device),
                "windows": int(sel.sum()),
                "type": best if conf >= min_confidence and median <= max_distance else "unknown",
                "confidence": round(conf, 3),
                "inside": round(float(inside.mean()), 3),
                "nearest": best,
                "runner_up": str(ranked.index[1]) if len(ranked) > 1 else "",
                "distance": round(median, 3),
            }
        )
    return pd.DataFrame(rows, columns=cols)
