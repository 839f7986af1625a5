"""Supervised classifiers for known attack classes, beside the unsupervised detector protocol.

Protocol: ``fit(X, y)`` (a feature frame and class labels) returns self; ``predict(X)`` gives class
labels, ``predict_proba(X)`` a (rows, classes) matrix; ``classes_`` and ``features_`` are learned.
Missing feature columns are filled with the training median, extra ones ignored. Models are saved as
JSON + npz (tree node arrays, class statistics, linear weights): never pickle.

Models: random forest and decision tree (scikit-learn, trees exported to arrays and evaluated in
numpy), linear SVM (``LinearSVC`` on standardised features), Gaussian naive Bayes.
:func:`class_report` gives per-class precision/recall/F1, macro-F1 and the confusion matrix.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from misuse.errors import InvalidParameterError, NotFittedError, SchemaError


class Classifier:
    """Base of the supervised models: alignment, persistence and the fit/predict protocol."""

    kind: ClassVar[str] = ""
    _params: ClassVar[dict[str, Any]] = {"seed": 0}

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self._params)
        if unknown:
            raise InvalidParameterError(
                f"{type(self).__name__} got unknown parameter(s) {sorted(unknown)}; valid: {sorted(self._params)}"
            )
        for k, v in self._params.items():
            setattr(self, k, params.get(k, v))

    def get_params(self) -> dict[str, Any]:
        """The keyword arguments."""
        return {k: getattr(self, k) for k in self._params}

    def _align(self, X: pd.DataFrame) -> np.ndarray:
        if not hasattr(self, "features_"):
            raise NotFittedError(f"{type(self).__name__} has not been fitted; call fit first")
        out = np.empty((len(X), len(self.features_)))
        for j, f in enumerate(self.features_):
            col = pd.to_numeric(X[f], errors="coerce").to_numpy(dtype="float64") if f in X.columns else np.nan
            out[:, j] = col
        bad = ~np.isfinite(out)
        return np.where(bad, self.median_[None, :], out)

    def fit(self, X: pd.DataFrame, y: Sequence[Any] | np.ndarray) -> Classifier:
        """Learn from a feature frame and its class labels."""
        X = X.select_dtypes(include=[np.number, "bool"])
        y = np.asarray(y).astype(str)
        if len(X) == 0 or X.shape[1] == 0:
            raise SchemaError(f"{type(self).__name__}.fit got no rows or no numeric features")
        if len(y) != len(X):
            raise SchemaError(f"{type(self).__name__}.fit: {len(X)} rows but {len(y)} labels")
        self.features_ = [str(c) for c in X.columns]
        vals = X.to_numpy(dtype="float64", na_value=np.nan)
        med = np.nanmedian(np.where(np.isfinite(vals), vals, np.nan), axis=0)
        self.median_ = np.nan_to_num(med)
        self.classes_ = np.unique(y)
        self._fit(self._align(X), np.searchsorted(self.classes_, y))
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Class probabilities (or scores normalised to sum 1), columns in ``classes_`` order."""
        return self._proba(self._align(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The most likely class of each row."""
        proba = self.predict_proba(X)
        return np.asarray(self.classes_[proba.argmax(axis=1)])

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        raise NotFittedError(f"{type(self).__name__} does not define _fit")

    def _proba(self, X: np.ndarray) -> np.ndarray:
        raise NotFittedError(f"{type(self).__name__} does not define _proba")

    def _arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _load(self, arrays: dict[str, np.ndarray]) -> None:
        return None

    def save(self, path: str | Path) -> Path:
        """Save as ``classifier.json`` + ``state.npz`` in a folder."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"kind": self.kind, "params": self.get_params(), "features": self.features_,
                "classes": self.classes_.tolist()}  # fmt: skip
        (folder / "classifier.json").write_text(json.dumps(meta, indent=2))
        np.savez(folder / "state.npz", median=self.median_, **self._arrays())  # type: ignore[arg-type]
        return folder


def load_classifier(path: str | Path) -> Classifier:
    """Load what :meth:`Classifier.save` wrote (no code is executed)."""
    folder = Path(path)
    meta = json.loads((folder / "classifier.json").read_text())
    cls = CLASSIFIERS.get(str(meta.get("kind")))
    if cls is None:
        raise SchemaError(f"{folder}: unknown classifier kind {meta.get('kind')!r}; known: {sorted(CLASSIFIERS)}")
    obj = cls(**meta["params"])
    obj.features_ = list(meta["features"])
    obj.classes_ = np.asarray(meta["classes"])
    with np.load(folder / "state.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    obj.median_ = arrays.pop("median")
    obj._load(arrays)
    return obj


def _export_trees(estimators: Sequence[Any], n_classes: int, classes: np.ndarray) -> dict[str, np.ndarray]:
    feat, thr, left, right, values, roots = [], [], [], [], [], []
    offset = 0
    for est in estimators:
        t = est.tree_
        roots.append(offset)
        feat.append(t.feature)
        thr.append(t.threshold)
        left.append(np.where(t.children_left >= 0, t.children_left + offset, -1))
        right.append(np.where(t.children_right >= 0, t.children_right + offset, -1))
        v = np.zeros((t.node_count, n_classes))
        v[:, np.asarray(est.classes_, dtype=int)] = t.value[:, 0, :]
        values.append(v / np.maximum(v.sum(axis=1, keepdims=True), 1e-12))
        offset += t.node_count
    return {
        "feature": np.concatenate(feat).astype(np.int64),
        "threshold": np.concatenate(thr),
        "left": np.concatenate(left).astype(np.int64),
        "right": np.concatenate(right).astype(np.int64),
        "value": np.vstack(values),
        "roots": np.asarray(roots, dtype=np.int64),
    }


class _Trees(Classifier):
    def _proba(self, X: np.ndarray) -> np.ndarray:
        a = self.trees_
        n, k = X.shape[0], len(a["roots"])
        rows = np.repeat(np.arange(n), k)
        node = np.tile(a["roots"], n)
        while True:
            inner = a["left"][node] >= 0
            if not inner.any():
                break
            ni = node[inner]
            go_left = X[rows[inner], a["feature"][ni]] <= a["threshold"][ni]
            node[inner] = np.where(go_left, a["left"][ni], a["right"][ni])
        return np.asarray(a["value"][node].reshape(n, k, -1).mean(axis=1))

    def _arrays(self) -> dict[str, np.ndarray]:
        return dict(self.trees_)

    def _load(self, arrays: dict[str, np.ndarray]) -> None:
        self.trees_ = arrays


class RandomForest(_Trees):
    """scikit-learn random forest, evaluated from exported node arrays."""

    kind = "random_forest"
    _params: ClassVar[dict[str, Any]] = {"n_estimators": 100, "max_depth": None, "seed": 0}
    n_estimators: int
    max_depth: int | None
    seed: int

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        from sklearn.ensemble import RandomForestClassifier

        rf = RandomForestClassifier(
            n_estimators=self.n_estimators, max_depth=self.max_depth, random_state=self.seed, n_jobs=1
        ).fit(X, y)
        self.trees_ = _export_trees(rf.estimators_, len(self.classes_), self.classes_)


class DecisionTree(_Trees):
    """scikit-learn decision tree, evaluated from exported node arrays."""

    kind = "decision_tree"
    _params: ClassVar[dict[str, Any]] = {"max_depth": None, "seed": 0}
    max_depth: int | None
    seed: int

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        from sklearn.tree import DecisionTreeClassifier

        dt = DecisionTreeClassifier(max_depth=self.max_depth, random_state=self.seed).fit(X, y)
        self.trees_ = _export_trees([dt], len(self.classes_), self.classes_)


class LinearSVM(Classifier):
    """Linear SVM (``LinearSVC``) on standardised features; probabilities are a softmax of margins."""

    kind = "linear_svm"
    _params: ClassVar[dict[str, Any]] = {"C": 1.0, "seed": 0}
    C: float
    seed: int

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        from sklearn.svm import LinearSVC

        self.mu_, sd = X.mean(axis=0), X.std(axis=0)
        self.sd_ = np.where(sd > 0, sd, 1.0)
        Z = (X - self.mu_) / self.sd_
        if len(self.classes_) == 1:
            self.coef_, self.intercept_ = np.zeros((1, X.shape[1])), np.zeros(1)
            return
        svm = LinearSVC(C=float(self.C), random_state=self.seed, max_iter=5000).fit(Z, y)
        coef, icpt = np.asarray(svm.coef_), np.asarray(svm.intercept_)
        if len(self.classes_) == 2:  # one margin: class 1 vs class 0
            coef, icpt = np.vstack([-coef, coef]) / 2, np.r_[-icpt, icpt] / 2
        self.coef_, self.intercept_ = coef, icpt

    def _proba(self, X: np.ndarray) -> np.ndarray:
        m = ((X - self.mu_) / self.sd_) @ self.coef_.T + self.intercept_
        e = np.exp(m - m.max(axis=1, keepdims=True))
        return np.asarray(e / e.sum(axis=1, keepdims=True))

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"mu": self.mu_, "sd": self.sd_, "coef": self.coef_, "intercept": self.intercept_}

    def _load(self, arrays: dict[str, np.ndarray]) -> None:
        self.mu_, self.sd_ = arrays["mu"], arrays["sd"]
        self.coef_, self.intercept_ = arrays["coef"], arrays["intercept"]


class NaiveBayes(Classifier):
    """Gaussian naive Bayes on standardised features with variance smoothing (scikit-learn's estimates,
    numpy scoring). Standardising first makes the smoothing (a share of the *largest* feature variance)
    act evenly: on raw N-BaIoT columns, whose variances span 20 orders of magnitude, it drowned every
    small-variance feature (macro-F1 0.10 raw, 1.00 standardised)."""

    kind = "naive_bayes"
    _params: ClassVar[dict[str, Any]] = {"var_smoothing": 1e-9, "seed": 0}
    var_smoothing: float

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        from sklearn.naive_bayes import GaussianNB

        self.mu_, sd = X.mean(axis=0), X.std(axis=0)
        self.sd_ = np.where(sd > 0, sd, 1.0)
        nb = GaussianNB(var_smoothing=float(self.var_smoothing)).fit((X - self.mu_) / self.sd_, y)
        self.theta_, self.var_ = np.asarray(nb.theta_), np.asarray(nb.var_)
        self.prior_ = np.asarray(nb.class_prior_)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        X = (X - self.mu_) / self.sd_
        ll = -0.5 * (np.log(2 * np.pi * self.var_)[None] + (X[:, None, :] - self.theta_[None]) ** 2 / self.var_[None])
        jl = ll.sum(axis=2) + np.log(self.prior_)[None]
        e = np.exp(jl - jl.max(axis=1, keepdims=True))
        return np.asarray(e / e.sum(axis=1, keepdims=True))

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"mu": self.mu_, "sd": self.sd_, "theta": self.theta_, "var": self.var_, "prior": self.prior_}

    def _load(self, arrays: dict[str, np.ndarray]) -> None:
        self.mu_, self.sd_ = arrays["mu"], arrays["sd"]
        self.theta_, self.var_, self.prior_ = arrays["theta"], arrays["var"], arrays["prior"]


CLASSIFIERS: dict[str, type[Classifier]] = {
    c.kind: c for c in (RandomForest, DecisionTree, LinearSVM, NaiveBayes)
}  # fmt: skip


def make_classifier(kind: str, **params: Any) -> Classifier:
    """Build a classifier by kind: random_forest, decision_tree, linear_svm, naive_bayes."""
    cls = CLASSIFIERS.get(kind)
    if cls is None:
        raise InvalidParameterError(f"unknown classifier {kind!r}; known: {sorted(CLASSIFIERS)}")
    return cls(**params)


def class_report(y_true: Sequence[Any] | np.ndarray, y_pred: Sequence[Any] | np.ndarray) -> dict[str, Any]:
    """Per-class precision/recall/F1/support, accuracy, macro-F1 and the confusion matrix.

    Examples
    --------
    >>> r = class_report(["a", "a", "b"], ["a", "b", "b"])
    >>> round(r["macro_f1"], 3), r["per_class"]["a"]["recall"]
    (0.667, 0.5)
    """
    t, p = np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)
    labels = sorted(set(t) | set(p))
    idx = {c: i for i, c in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=int)
    np.add.at(cm, ([idx[c] for c in t], [idx[c] for c in p]), 1)
    per: dict[str, dict[str, float | int]] = {}
    for c, i in idx.items():
        tp, sup, pred = cm[i, i], cm[i].sum(), cm[:, i].sum()
        prec = tp / pred if pred else 0.0
        rec = tp / sup if sup else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[c] = {"precision": float(prec), "recall": float(rec), "f1": float(f1), "support": int(sup)}
    present = [c for c in labels if per[c]["support"] > 0]
    return {
        "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
        "macro_f1": float(np.mean([per[c]["f1"] for c in present])) if present else 0.0,
        "per_class": per,
        "labels": labels,
        "confusion": cm.tolist(),
    }
