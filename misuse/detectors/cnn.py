"""A 1-D convolutional network over per-flow packet sequences (torch, CPU), in the spirit of Lucid.

Input rows are flows; feature columns named ``p{i}_{channel}`` (see
:mod:`misuse.features.packetseq`) form a ``(channels, packets)`` grid that two 1-D convolutions
slide over along the packet axis; any other numeric columns enter beside the convolution output
as flow-level ("static") features, so the same model takes a pure packet sequence, a sequence
plus flow statistics, or plain tabular rows (then it is a small MLP).

Two modes behind one detector protocol:

``mode="reconstruct"`` (unsupervised, the default)
    An autoencoder: convolutions -> dense -> a narrow code -> dense -> the standardised input.
    Learns from benign flows only (``learn_many`` / ``learn_one``); score = mean squared
    reconstruction error (>= 0).
``mode="classify"`` (supervised)
    Convolutions -> dense -> one logit per class, trained with class-balanced cross-entropy on
    labelled flows with :meth:`PacketCNN.fit`; score = 1 - P(benign) in [0, 1].
    ``predict_proba`` / ``predict`` give the classes.

Sequence channels are standardised per channel (mean / std over all training cells), static
columns robustly per column (median / IQR), both clipped to +-``clip``. Weights are trained in
float32 and scored in float64 (so one row and a batch give the same score); they are saved with
the detector's JSON + npz (``allow_pickle=False``), never with ``torch.save``.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from misuse.features.packetseq import to_frame
>>> rng = np.random.default_rng(0)
>>> seq = rng.normal(size=(200, 9, 8)).astype("float32")
>>> det = PacketCNN(epochs=2).learn_many(to_frame(seq))
>>> det.layout_
{'channels': ['size', 'direction', 'iat', 'syn', 'ack', 'fin', 'rst', 'psh', 'present'], 'packets': 8, 'static': []}
>>> bool(np.isfinite(det.score_many(to_frame(seq[:5]))).all())
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from misuse.detectors.base import Contribution, Detector
from misuse.errors import InvalidParameterError, SchemaError
from misuse.features.packetseq import CHANNELS, COLUMN_RE

MODES = ("reconstruct", "classify")
BENIGN_LABELS = ("benign", "0", "normal")


class _Net(nn.Module):
    def __init__(self, n_ch: int, n_pk: int, n_static: int, filters: int, kernel: int, hidden: int, out: int) -> None:
        super().__init__()
        self.n_ch, self.n_pk = n_ch, n_pk
        self.conv: nn.Module | None = None
        width = n_static
        if n_ch:
            pad = kernel // 2
            self.conv = nn.Sequential(
                nn.Conv1d(n_ch, filters, kernel, padding=pad),
                nn.ReLU(),
                nn.Conv1d(filters, filters, kernel, padding=pad),
                nn.ReLU(),
            )
            width += filters * n_pk
        self.trunk = nn.Sequential(nn.Linear(width, hidden), nn.ReLU())
        self.head = nn.Sequential(*self._head(hidden, out))

    def _head(self, hidden: int, out: int) -> list[nn.Module]:
        return [nn.Linear(hidden, out)]

    def forward(self, seq: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        parts = [static]
        if self.conv is not None:
            parts.insert(0, self.conv(seq).flatten(1))
        return self.head(self.trunk(torch.cat(parts, dim=1)))  # type: ignore[no-any-return]


class _AutoNet(_Net):
    def __init__(self, n_ch: int, n_pk: int, n_static: int, filters: int, kernel: int, hidden: int, code: int) -> None:
        self._code = code
        super().__init__(n_ch, n_pk, n_static, filters, kernel, hidden, n_ch * n_pk + n_static)

    def _head(self, hidden: int, out: int) -> list[nn.Module]:
        return [
            nn.Linear(hidden, self._code),
            nn.ReLU(),
            nn.Linear(self._code, hidden),
            nn.ReLU(),
            nn.Linear(hidden, out),
        ]


class PacketCNN(Detector):
    """1-D CNN over the leading packets of each flow; unsupervised (reconstruction) or supervised.

    Parameters
    ----------
    mode:
        ``"reconstruct"`` (score = reconstruction error, >= 0) or ``"classify"`` (score =
        1 - P(benign), in [0, 1]; train with :meth:`fit`).
    filters:
        Convolution channels, >= 1.
    kernel:
        Convolution width in packets, an odd int >= 1.
    hidden:
        Width of the dense layer, >= 2.
    code:
        Width of the autoencoder's code (reconstruct mode), >= 1; capped at half the input width.
    epochs, batch_size, lr:
        Training passes (>= 1), rows per step (>= 1) and Adam learning rate (> 0).
    clip:
        Standardised inputs are clipped to +-clip, > 0.
    seed:
        Seed of initialisation and shuffling.
    """

    _params: ClassVar[dict[str, Any]] = {
        "mode": "reconstruct",
        "filters": 16,
        "kernel": 3,
        "hidden": 32,
        "code": 8,
        "epochs": 15,
        "batch_size": 128,
        "lr": 2e-3,
        "clip": 10.0,
        "seed": 0,
    }
    mode: str
    filters: int
    kernel: int
    hidden: int
    code: int
    epochs: int
    batch_size: int
    lr: float
    clip: float
    seed: int

    def _validate_params(self) -> None:
        self._check("mode", self.mode in MODES, f"one of {MODES}")
        for name, low in (("filters", 1), ("hidden", 2), ("code", 1), ("epochs", 1), ("batch_size", 1)):
            v = getattr(self, name)
            self._check(name, isinstance(v, int) and not isinstance(v, bool) and v >= low, f"an int >= {low}")
        self._check(
            "kernel", isinstance(self.kernel, int) and self.kernel >= 1 and self.kernel % 2 == 1, "an odd int >= 1"
        )
        self._check("lr", isinstance(self.lr, int | float) and float(self.lr) > 0, "> 0")
        self._check("clip", isinstance(self.clip, int | float) and float(self.clip) > 0, "> 0")
        self._check("seed", isinstance(self.seed, int), "an int")

    # ----- layout -------------------------------------------------------------------------
    def _make_layout(self) -> None:
        cells: dict[tuple[int, int], int] = {}
        static: list[int] = []
        for j, f in enumerate(self.features_):
            m = COLUMN_RE.match(f)
            if m and m.group(2) in CHANNELS:
                cells[(int(m.group(1)), CHANNELS.index(m.group(2)))] = j
            else:
                static.append(j)
        chans = sorted({c for _, c in cells})
        n_pk = max((i for i, _ in cells), default=-1) + 1
        self.layout_: dict[str, Any] = {
            "channels": [CHANNELS[c] for c in chans],
            "packets": n_pk,
            "static": [self.features_[j] for j in static],
        }
        # flat index into (channels x packets) for every sequence column, and which columns
        self._cell_cols = np.array([j for j in cells.values()], dtype=np.int64)
        self._cell_pos = np.array([chans.index(c) * n_pk + i for (i, c) in cells], dtype=np.int64)
        self._static_cols = np.array(static, dtype=np.int64)

    def _inputs(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_ch, n_pk = len(self.layout_["channels"]), int(self.layout_["packets"])
        c = float(self.clip)
        flat = np.zeros((len(X), n_ch * n_pk), dtype=np.float64)
        flat[:, self._cell_pos] = X[:, self._cell_cols]
        grid: np.ndarray = flat.reshape(len(X), n_ch, n_pk)
        if self._cell_cols.size:
            grid = np.clip((grid - self.chan_mean_[None, :, None]) / self.chan_std_[None, :, None], -c, c)
        cols = self._static_cols
        static = np.clip((X[:, cols] - self.median_[cols]) / self.scale_[cols], -c, c)
        return grid, static

    def _net(self, n_out: int) -> _Net:
        n_ch, n_pk = len(self.layout_["channels"]), int(self.layout_["packets"])
        n_static = len(self._static_cols)
        if self.mode == "reconstruct":
            code = max(1, min(int(self.code), (n_ch * n_pk + n_static) // 2))
            return _AutoNet(n_ch, n_pk, n_static, self.filters, self.kernel, self.hidden, code)
        return _Net(n_ch, n_pk, n_static, self.filters, self.kernel, self.hidden, n_out)

    # ----- training -------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: Sequence[Any] | np.ndarray) -> PacketCNN:
        """Supervised training (``mode="classify"``) on flows ``X`` and their class labels ``y``.

        One label must name benign traffic (``"benign"``, ``"normal"`` or ``0``)."""
        if self.mode != "classify":
            raise InvalidParameterError(f"PacketCNN.fit needs mode='classify'; got mode={self.mode!r} (use learn_many)")
        labels = np.asarray(y).astype(str)
        if len(labels) != len(X):
            raise SchemaError(f"PacketCNN.fit: {len(X)} rows but {len(labels)} labels")
        classes = np.unique(labels)
        if not any(c.lower() in BENIGN_LABELS for c in classes):
            raise SchemaError(
                f"PacketCNN.fit: no benign class among labels {classes.tolist()} (expected one of {BENIGN_LABELS})"
            )
        self._y_fit = (classes, np.searchsorted(classes, labels))
        try:
            self.learn_many(X)
        finally:
            del self._y_fit
        return self

    def _learn_rows(self, rows: np.ndarray) -> None:
        if self.mode == "classify":
            raise InvalidParameterError("PacketCNN(mode='classify') learns only from labelled batches: use fit(X, y)")
        super()._learn_rows(rows)

    def _fit(self, X: np.ndarray) -> None:
        labelled = getattr(self, "_y_fit", None)
        if self.mode == "classify" and labelled is None:
            raise InvalidParameterError(
                "PacketCNN(mode='classify') needs labels: call fit(X, y), not learn_many/learn_one"
            )
        self._make_layout()
        n_ch = len(self.layout_["channels"])
        if self._cell_cols.size:
            grid = np.zeros((len(X), n_ch * int(self.layout_["packets"])))
            grid[:, self._cell_pos] = X[:, self._cell_cols]
            per_ch = grid.reshape(len(X), n_ch, -1).transpose(1, 0, 2).reshape(n_ch, -1)
            self.chan_mean_ = per_ch.mean(axis=1)
            std = per_ch.std(axis=1)
            self.chan_std_ = np.where(std > 0, std, 1.0)
        else:
            self.chan_mean_ = np.zeros(n_ch)
            self.chan_std_ = np.ones(n_ch)
        if labelled is not None:
            self.classes_ = np.asarray(labelled[0])
            codes = labelled[1]
        else:
            self.classes_ = np.array([], dtype=str)
            codes = None
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small layers: threads add contention, and one thread is reproducible
        try:
            self._train(X, codes)
        finally:
            torch.set_num_threads(threads)

    def _train(self, X: np.ndarray, codes: np.ndarray | None) -> None:
        torch.manual_seed(int(self.seed))
        gen = torch.Generator().manual_seed(int(self.seed))
        grid, static = self._inputs(X)
        seq_t = torch.from_numpy(grid.astype(np.float32))
        sta_t = torch.from_numpy(static.astype(np.float32))
        n_out = len(self.classes_) if codes is not None else 0
        net = self._net(n_out)
        opt = torch.optim.Adam(net.parameters(), lr=float(self.lr))
        if codes is not None:
            counts = np.bincount(codes, minlength=n_out).astype(np.float64)
            weight = torch.tensor(len(codes) / (n_out * np.maximum(counts, 1)), dtype=torch.float32)
            loss_fn = nn.CrossEntropyLoss(weight=weight)
            target: torch.Tensor = torch.from_numpy(codes.astype(np.int64))
        else:
            target = torch.cat([seq_t.flatten(1), sta_t], dim=1)
        bs = int(self.batch_size)
        with torch.enable_grad():
            for _ in range(int(self.epochs)):
                order = torch.randperm(len(seq_t), generator=gen)
                for start in range(0, len(seq_t), bs):
                    idx = order[start : start + bs]
                    opt.zero_grad()
                    out = net(seq_t[idx], sta_t[idx])
                    loss = loss_fn(out, target[idx]) if codes is not None else ((out - target[idx]) ** 2).mean()
                    loss.backward()
                    opt.step()
        self._set_net({k: v.detach().numpy().copy() for k, v in net.state_dict().items()}, n_out)

    def _set_net(self, weights: Mapping[str, np.ndarray], n_out: int) -> None:
        net = self._net(n_out).double()
        net.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in weights.items()})
        net.eval()
        self.weights_ = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        self._model = net

    # ----- scoring -------------------------------------------------------------------------
    def _forward(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Network outputs and the standardised target, in float64."""
        grid, static = self._inputs(X)
        outs = []
        with torch.no_grad():
            for start in range(0, len(X), 8192):
                g = torch.from_numpy(grid[start : start + 8192])
                s = torch.from_numpy(static[start : start + 8192])
                outs.append(self._model(g, s).numpy())
        out = np.concatenate(outs) if outs else np.zeros((0, 0))
        return out, np.concatenate([grid.reshape(len(X), -1), static], axis=1)

    def _score(self, X: np.ndarray) -> np.ndarray:
        out, target = self._forward(X)
        if self.mode == "reconstruct":
            return np.asarray(((out - target) ** 2).mean(axis=1))
        return 1.0 - self._softmax(out)[:, self._benign_index()]

    def _benign_index(self) -> int:
        for i, c in enumerate(self.classes_):
            if str(c).lower() in BENIGN_LABELS:
                return i
        raise SchemaError(f"PacketCNN: no benign class among {self.classes_.tolist()}")

    @staticmethod
    def _softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return np.asarray(e / e.sum(axis=1, keepdims=True))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Class probabilities in ``classes_`` order (classify mode)."""
        self._require_fitted()
        if self.mode != "classify":
            raise InvalidParameterError("PacketCNN.predict_proba needs mode='classify'")
        out, _ = self._forward(self._align(X))
        return self._softmax(out)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The most likely class of each flow (classify mode)."""
        return np.asarray(self.classes_[self.predict_proba(X).argmax(axis=1)])

    # ----- explanation -------------------------------------------------------------------------
    def explain_one(self, x: Mapping[str, float], top: int = 5) -> list[Contribution]:
        """The input cells that drove the score, largest first.

        Reconstruct mode: each column's share of the squared reconstruction error. Classify mode:
        |gradient x standardised input| of P(not benign). Names are the feature columns
        (``p03_size`` = the 4th packet's size), with the training median as the typical value.
        """
        self._require_fitted()
        row = self._row(x)[None, :]
        grid, static = self._inputs(row)
        if self.mode == "reconstruct":
            out, target = self._forward(row)
            per = ((out - target) ** 2)[0]
        else:
            g = torch.from_numpy(grid).requires_grad_(True)
            s = torch.from_numpy(static).requires_grad_(True)
            with torch.enable_grad():
                prob = torch.softmax(self._model(g, s), dim=1)[0]
                (1.0 - prob[self._benign_index()]).backward()
            assert g.grad is not None and s.grad is not None
            per = np.abs(np.concatenate([(g.grad * g).detach().numpy().ravel(), (s.grad * s).detach().numpy().ravel()]))
        n_grid = grid.size
        by_col = np.zeros(len(self.features_))
        by_col[self._cell_cols] = per[:n_grid][self._cell_pos]
        by_col[self._static_cols] = per[n_grid:]
        total = float(by_col.sum()) or 1.0
        order = np.argsort(-by_col)[:top]
        outl = [
            Contribution(self.features_[j], float(self.median_[j]), float(row[0, j]), float(by_col[j] / total))
            for j in order
            if by_col[j] > 0
        ]
        known = set(self.features_)
        outl += [Contribution(k, math.nan, float(v), 0.0) for k, v in x.items() if k not in known][:top]
        return outl

    # ----- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        out = {f"net.{k}": v for k, v in self.weights_.items()}
        out["chan_mean"] = self.chan_mean_
        out["chan_std"] = self.chan_std_
        out["classes"] = np.asarray(self.classes_, dtype=str)
        return out

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._make_layout()
        self.chan_mean_ = np.asarray(arrays["chan_mean"])
        self.chan_std_ = np.asarray(arrays["chan_std"])
        self.classes_ = np.asarray(arrays["classes"])
        weights = {k[4:]: np.asarray(v) for k, v in arrays.items() if k.startswith("net.")}
        self._set_net(weights, len(self.classes_))
