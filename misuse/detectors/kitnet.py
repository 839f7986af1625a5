"""KitNET: an ensemble of small autoencoders over correlated feature groups (Kitsune, NDSS 2018), in numpy.

1. *Feature mapping*: features are clustered by correlation distance ``1 - |corr|`` (hierarchical,
   single linkage) into groups of at most ``max_group`` features.
2. *Ensemble*: one tied-weight sigmoid autoencoder per group (hidden size ``hidden_ratio`` times the
   group size) learns to reconstruct its min-max normalised features.
3. *Output*: one more autoencoder learns the vector of the ensemble's reconstruction RMSEs; its own
   RMSE is the anomaly score (>= 0, higher = more anomalous; about 0.05-0.3 for training-like rows).

All autoencoders are held padded in one array each (weights ``(k, m, h)``), so a batch of rows goes
through the whole ensemble in a few ``einsum`` calls, without a Python loop per row or per group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from numba import njit
from scipy.cluster.hierarchy import linkage, to_tree

from misuse.detectors.base import Contribution, Detector

_CLIP = 100.0  # normalised values beyond the training range are clipped here (keeps scores finite)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)))


def feature_groups(X: np.ndarray, max_group: int) -> list[list[int]]:
    """Cluster columns by correlation distance into groups of at most ``max_group`` columns."""
    d = X.shape[1]
    if d <= max_group:
        return [list(range(d))]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(X, rowvar=False)
    corr = np.nan_to_num(np.atleast_2d(corr), nan=0.0)
    dist = np.clip(1.0 - np.abs(corr), 0.0, None)
    iu = np.triu_indices(d, k=1)
    root = to_tree(linkage(dist[iu], method="single"))
    groups: list[list[int]] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.get_count() <= max_group:
            groups.append(sorted(node.pre_order()))
        else:
            stack += [node.get_right(), node.get_left()]
    return sorted(groups)


# fast-math without the no-NaN/no-Inf assumptions: exp(-x) may overflow to inf, and 1/(1+inf) = 0 is right
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(cache=True, fastmath=_FAST)
def _ae_rmse(x: np.ndarray, a: int, nv: int, nh: int, W: np.ndarray, hb: np.ndarray, vb: np.ndarray,
             hid: np.ndarray) -> float:  # fmt: skip
    for q in range(nh):
        hid[q] = hb[a, q]
    for j in range(nv):  # row-major walk over W[a] (visible-major), so the inner loop is contiguous
        xj = x[j]
        for q in range(nh):
            hid[q] += xj * W[a, j, q]
    for q in range(nh):
        hid[q] = 1.0 / (1.0 + math.exp(-hid[q]))  # the sigmoid; exp is cheaper than tanh
    err = 0.0
    for j in range(nv):
        acc = vb[a, j]
        for q in range(nh):
            acc += hid[q] * W[a, j, q]
        d = x[j] - 1.0 / (1.0 + math.exp(-acc))
        err += d * d
    return math.sqrt(err / nv)


@njit(cache=True, fastmath=_FAST)
def _score_kernel(X: np.ndarray, mn: np.ndarray, span: np.ndarray, gidx: np.ndarray, ens: tuple,  # type: ignore[type-arg]
                  omin: np.ndarray, ospan: np.ndarray, out: tuple, clip: float) -> np.ndarray:  # type: ignore[type-arg]  # fmt: skip
    """KitNET scores of raw rows: one pass per row through every small autoencoder, then the output one."""
    W, hb, vb, nvis, nhid = ens
    oW, ohb, ovb, onvis, onhid = out
    k, m = gidx.shape
    b = X.shape[0]
    res = np.empty(b)
    x = np.empty(max(m, k))
    hid = np.empty(max(W.shape[2], oW.shape[2]))
    rm = np.empty(k)
    for r in range(b):
        for a in range(k):
            nv = nvis[a]
            for j in range(nv):
                f = gidx[a, j]
                x[j] = min(max((X[r, f] - mn[f]) / span[f], -clip), clip)
            rm[a] = _ae_rmse(x, a, nv, nhid[a], W, hb, vb, hid)
        for a in range(k):
            x[a] = min(max((rm[a] - omin[a]) / ospan[a], -clip), clip)
        res[r] = _ae_rmse(x, 0, onvis[0], onhid[0], oW, ohb, ovb, hid)
    return res


class _AEStack:
    """k tied-weight autoencoders of different sizes, padded to one array each."""

    def __init__(self, sizes: list[int], hidden_ratio: float, rng: np.random.Generator) -> None:
        k, m = len(sizes), max(sizes)
        hidden = [max(1, math.ceil(hidden_ratio * s)) for s in sizes]
        h = max(hidden)
        self.vmask = np.zeros((k, m))
        self.hmask = np.zeros((k, h))
        for i, (s, hs) in enumerate(zip(sizes, hidden, strict=True)):
            self.vmask[i, :s] = 1.0
            self.hmask[i, :hs] = 1.0
        bound = 1.0 / np.maximum(np.asarray(sizes, dtype=float), 1.0)[:, None, None]
        self.W = rng.uniform(-bound, bound, size=(k, m, h)) * self.vmask[:, :, None] * self.hmask[:, None, :]
        self.hb = np.zeros((k, h))
        self.vb = np.zeros((k, m))
        self.sizes = np.asarray(sizes, dtype=float)

    def forward(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """X (k, b, m) -> hidden (k, b, h), reconstruction (k, b, m), both masked."""
        hid = _sigmoid(np.matmul(X, self.W) + self.hb[:, None, :]) * self.hmask[:, None, :]
        rec = _sigmoid(np.matmul(hid, self.W.transpose(0, 2, 1)) + self.vb[:, None, :]) * self.vmask[:, None, :]
        return hid, rec

    def train(self, X: np.ndarray, lr: float) -> None:
        """One gradient step on a mini-batch (Kitsune's dA update, averaged over the batch)."""
        hid, rec = self.forward(X)
        dz = X - rec
        dh = np.matmul(dz, self.W) * hid * (1.0 - hid)
        b = X.shape[1]
        gW = (np.matmul(X.transpose(0, 2, 1), dh) + np.matmul(dz.transpose(0, 2, 1), hid)) / b
        self.W += lr * gW * self.vmask[:, :, None] * self.hmask[:, None, :]
        self.hb += lr * dh.mean(axis=1) * self.hmask
        self.vb += lr * dz.mean(axis=1) * self.vmask

    def rmse(self, X: np.ndarray) -> np.ndarray:
        """(b, k) reconstruction RMSE of each autoencoder."""
        _, rec = self.forward(X)
        return np.asarray(np.sqrt(((X - rec) ** 2).sum(axis=2) / self.sizes[:, None]).T)

    def packed(self) -> tuple[np.ndarray, ...]:
        """Arrays for the compiled scorer: weights, biases, visible and hidden sizes."""
        return (
            self.W,
            self.hb,
            self.vb,
            self.vmask.sum(axis=1).astype(np.int64),
            self.hmask.sum(axis=1).astype(np.int64),
        )

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}W": self.W, f"{prefix}hb": self.hb, f"{prefix}vb": self.vb, f"{prefix}vmask": self.vmask,
                f"{prefix}hmask": self.hmask, f"{prefix}sizes": self.sizes}  # fmt: skip

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], prefix: str) -> _AEStack:
        obj = cls.__new__(cls)
        for name in ("W", "hb", "vb", "vmask", "hmask", "sizes"):
            setattr(obj, name, np.array(arrays[prefix + name], dtype="float64"))
        return obj


class KitNET(Detector):
    """Kitsune's autoencoder ensemble with correlation-based feature mapping.

    Parameters
    ----------
    max_group:
        Largest number of features one ensemble autoencoder sees (Kitsune's ``m``), >= 1.
    hidden_ratio:
        Hidden units per visible unit, in (0, 1].
    lr:
        Learning rate of the gradient steps, > 0.
    epochs:
        Passes over a batch given to ``learn_many``, >= 1.
    batch_size:
        Rows per gradient step, >= 1.
    map_rows:
        Rows used to learn the feature map (Kitsune's grace period), >= 2.
    seed:
        Seed of weight initialisation and row shuffling.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame(rng.normal(size=(400, 6)), columns=list("abcdef"))
    >>> det = KitNET(max_group=3, seed=0).learn_many(X)
    >>> det.score_one(dict(zip("abcdef", [9.0] * 6))) > det.score_one(dict(zip("abcdef", [0.0] * 6)))
    True
    """

    _params: ClassVar[dict[str, Any]] = {
        "max_group": 10,
        "hidden_ratio": 0.75,
        "lr": 0.1,
        "epochs": 5,
        "batch_size": 16,
        "map_rows": 5000,
        "seed": 0,
    }
    max_group: int
    hidden_ratio: float
    lr: float
    epochs: int
    batch_size: int
    map_rows: int
    seed: int

    def _validate_params(self) -> None:
        self._check("max_group", isinstance(self.max_group, int) and self.max_group >= 1, "an int >= 1")
        self._check("hidden_ratio", 0 < float(self.hidden_ratio) <= 1, "in (0, 1]")
        self._check("lr", float(self.lr) > 0, "> 0")
        self._check("epochs", isinstance(self.epochs, int) and self.epochs >= 1, "an int >= 1")
        self._check("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, "an int >= 1")
        self._check("map_rows", isinstance(self.map_rows, int) and self.map_rows >= 2, "an int >= 2")
        self._check("seed", isinstance(self.seed, int), "an int")

    # ----- model -------------------------------------------------------------------------------
    def _gather(self, X: np.ndarray) -> np.ndarray:
        Z = np.clip((X - self.min_) / self.range_, -_CLIP, _CLIP)
        Z = np.concatenate([Z, np.zeros((Z.shape[0], 1))], axis=1)  # column -1: padding, always 0
        return np.ascontiguousarray(Z.T[self.group_idx_].transpose(0, 2, 1))  # (k, b, m)

    def _out_input(self, rm: np.ndarray) -> np.ndarray:
        Z = np.clip((rm - self.out_min_) / self.out_range_, -_CLIP, _CLIP)
        return Z[None, :, :]

    def _fit(self, X: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed)
        self.min_ = X.min(axis=0)
        span = X.max(axis=0) - self.min_
        self.range_ = np.where(span > 0, span, 1.0)
        head = X[: self.map_rows]
        groups = feature_groups(head, self.max_group) if len(head) >= 2 else [list(range(X.shape[1]))]
        m = max(len(g) for g in groups)
        self.group_idx_ = np.full((len(groups), m), -1, dtype=np.int64)
        for i, g in enumerate(groups):
            self.group_idx_[i, : len(g)] = g
        self.ens_ = _AEStack([len(g) for g in groups], float(self.hidden_ratio), rng)
        self.out_ = _AEStack([len(groups)], float(self.hidden_ratio), rng)
        G = self._gather(X)
        self._train(self.ens_, G, rng)
        rm = self.ens_.rmse(G)
        self.out_min_ = rm.min(axis=0)
        ospan = rm.max(axis=0) - self.out_min_
        self.out_range_ = np.where(ospan > 0, ospan, 1.0)
        self._train(self.out_, self._out_input(rm), rng)

    def _train(self, stack: _AEStack, G: np.ndarray, rng: np.random.Generator) -> None:
        n = G.shape[1]
        for _ in range(int(self.epochs)):
            order = rng.permutation(n)
            for start in range(0, n, int(self.batch_size)):
                stack.train(G[:, order[start : start + int(self.batch_size)]], float(self.lr))

    def _learn_rows(self, rows: np.ndarray) -> None:
        """Keep training on new rows (the feature map and normalisation stay as learned)."""
        rng = np.random.default_rng(self.seed + int(self.n_seen_))
        G = self._gather(rows)
        self._train(self.ens_, G, rng)
        self._train(self.out_, self._out_input(self.ens_.rmse(G)), rng)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(
            _score_kernel(
                np.ascontiguousarray(X, dtype=np.float64),
                self.min_,
                self.range_,
                self.group_idx_,
                self.ens_.packed(),
                self.out_min_,
                self.out_range_,
                self.out_.packed(),
                _CLIP,
            )
        )

    def explain_one(self, x: Mapping[str, float], top: int = 5) -> list[Contribution]:
        """Features ranked by their squared reconstruction error in their group's autoencoder."""
        self._require_fitted()
        row = self._row(x)
        G = self._gather(row[None, :])
        _, rec = self.ens_.forward(G)
        err = ((G - rec) ** 2)[:, 0, :]
        per = np.zeros(len(self.features_))
        valid = self.group_idx_ >= 0
        per[self.group_idx_[valid]] = err[valid]
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

    # ----- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {
            "min": self.min_,
            "range": self.range_,
            "group_idx": self.group_idx_,
            "out_min": self.out_min_,
            "out_range": self.out_range_,
            **self.ens_.state("ens_"),
            **self.out_.state("out_"),
        }

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.min_ = np.asarray(arrays["min"])
        self.range_ = np.asarray(arrays["range"])
        self.group_idx_ = np.asarray(arrays["group_idx"])
        self.out_min_ = np.asarray(arrays["out_min"])
        self.out_range_ = np.asarray(arrays["out_range"])
        self.ens_ = _AEStack.from_state(arrays, "ens_")
        self.out_ = _AEStack.from_state(arrays, "out_")
