"""A graph neural network over the communication graph: E-GraphSAGE-style edge scoring in plain torch.

Flows are cut into time windows (``window`` seconds, by flow start); in each window every host is a
node and every flow an edge carrying its feature vector. ``layers`` rounds of message passing give
every node an embedding: a node averages, separately over the flows it sent and the flows it
received, the concatenation of the other endpoint's embedding and the flow's features, and passes
``[own, mean sent, mean received]`` through a dense layer with ReLU (E-GraphSAGE, Lo et al. 2022,
aggregates edge features the same way; the neighbour embedding in the message carries two-hop
context). Nodes start from ``[1, log1p(out-degree), log1p(in-degree)]``. A flow's input features are
its own (standardised) columns plus its endpoints' log degrees in the window (``graph:*``), and the
flow is described by ``[sender embedding, receiver embedding, its input features]``:

``mode="reconstruct"`` (unsupervised, learn from benign flows with :meth:`FlowGraphSAGE.learn_many`)
    a narrow code reconstructs the flow's input features (its own and its endpoints' degrees);
    score = mean squared error (>= 0): a flow is anomalous when it, or the way its hosts talk in
    that window, is unlike the training windows.
``mode="classify"`` (supervised, :meth:`FlowGraphSAGE.fit` with labels)
    a dense layer gives class logits (class-balanced cross-entropy); score = 1 - P(benign).

Scores come back per flow (:meth:`score_many`, same row order as the input) and per host and
window (:meth:`score_entities`: the highest flow score touching the host). :meth:`explain_one` says
which of the flow's own features and which neighbouring flows (edges of the same window, with their
endpoints) drove a flow's score, by |gradient x input| of the score.

Models are saved as ``detector.json`` (parameters, features, scaling) and ``weights.safetensors``:
nothing loaded can execute code.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> flows = pd.DataFrame({"src": rng.choice(["a", "b", "c"], 300), "dst": rng.choice(["x", "y"], 300),
...                       "ts": np.sort(rng.uniform(0, 600, 300)), "bytes": rng.normal(size=300)})
>>> gnn = FlowGraphSAGE(epochs=5).learn_many(flows)
>>> gnn.score_many(flows).shape
(300,)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from torch import nn

from misuse.detectors.base import Contribution, _robust_center_scale
from misuse.detectors.registry import RESTORE_ERRORS, one_line, read_meta
from misuse.errors import InvalidParameterError, NotFittedError, SchemaError

MODES = ("reconstruct", "classify")
BENIGN_LABELS = ("benign", "0", "normal")
_NODE_INIT = 3
STRUCT = ("graph:src_out_degree", "graph:src_in_degree", "graph:dst_out_degree", "graph:dst_in_degree")


@dataclass
class Graph:
    """The flows of some time windows as one disjoint graph (one component per window)."""

    src: np.ndarray  # node index of each edge's sender
    dst: np.ndarray  # node index of each edge's receiver
    n_nodes: int
    node_window: np.ndarray  # window start (seconds) of each node
    node_host: np.ndarray  # host name of each node
    edge_window: np.ndarray  # window number of each edge


@dataclass
class GraphExplanation:
    """Why one flow scored as it did: its own features and the neighbouring flows that mattered."""

    score: float
    features: list[Contribution]
    neighbours: list[dict[str, Any]] = field(default_factory=list)  # row, src, dst, weight

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON."""
        return {"score": self.score, "features": [c.to_dict() for c in self.features], "neighbours": self.neighbours}


class _SAGE(nn.Module):
    def __init__(self, d_edge: int, hidden: int, layers: int, out: int, code: int | None) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        d = _NODE_INIT
        for _ in range(layers):
            self.layers.append(nn.Linear(d + 2 * (d + d_edge), hidden))
            d = hidden
        z = 2 * d + d_edge
        if code is None:
            self.head: nn.Module = nn.Sequential(nn.Linear(z, hidden), nn.ReLU(), nn.Linear(hidden, out))
        else:
            self.head = nn.Sequential(
                nn.Linear(z, code), nn.ReLU(), nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, out)
            )

    @staticmethod
    def _mean(index: torch.Tensor, values: torch.Tensor, n: int, count: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((n, values.shape[1]), dtype=values.dtype).index_add_(0, index, values)
        return out / count[:, None]

    def forward(self, e: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, n: int) -> torch.Tensor:
        ones = torch.ones(len(src), dtype=e.dtype)
        out_deg = torch.zeros(n, dtype=e.dtype).index_add_(0, src, ones)
        in_deg = torch.zeros(n, dtype=e.dtype).index_add_(0, dst, ones)
        h = torch.stack([torch.ones(n, dtype=e.dtype), torch.log1p(out_deg), torch.log1p(in_deg)], dim=1)
        out_c, in_c = out_deg.clamp(min=1), in_deg.clamp(min=1)
        for lin in self.layers:
            sent = self._mean(src, torch.cat([h[dst], e], dim=1), n, out_c)
            recv = self._mean(dst, torch.cat([h[src], e], dim=1), n, in_c)
            h = torch.relu(lin(torch.cat([h, sent, recv], dim=1)))
        return self.head(torch.cat([h[src], h[dst], e], dim=1))  # type: ignore[no-any-return]


class FlowGraphSAGE:
    """Edge-level GNN over per-window host graphs; scores flows and hosts.

    Parameters
    ----------
    mode:
        ``"reconstruct"`` (unsupervised; score >= 0) or ``"classify"`` (supervised; score in [0, 1]).
    window:
        Window length in seconds (> 0): flows starting in the same window share a graph.
    hidden, layers, code:
        Embedding width (>= 2), message-passing rounds (>= 1), code width of the reconstruct
        head (>= 1, capped at half the number of edge features).
    epochs, lr:
        Full-graph training passes (>= 1) and Adam learning rate (> 0).
    clip:
        Standardised edge features are clipped to +-clip (> 0).
    src, dst, time:
        Names of the sender, receiver and start-time (seconds) columns; every other numeric column
        is an edge feature.
    seed:
        Seed of initialisation.
    """

    _params: ClassVar[dict[str, Any]] = {
        "mode": "reconstruct",
        "window": 60.0,
        "hidden": 32,
        "layers": 2,
        "code": 4,
        "epochs": 150,
        "lr": 5e-3,
        "clip": 10.0,
        "src": "src",
        "dst": "dst",
        "time": "ts",
        "seed": 0,
    }
    mode: str
    window: float
    hidden: int
    layers: int
    code: int
    epochs: int
    lr: float
    clip: float
    src: str
    dst: str
    time: str
    seed: int

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self._params)
        if unknown:
            raise InvalidParameterError(
                f"FlowGraphSAGE got unknown parameter(s) {sorted(unknown)}; valid: {sorted(self._params)}"
            )
        for name, default in self._params.items():
            setattr(self, name, params.get(name, default))
        self._validate_params()

    def _check(self, name: str, ok: bool, expected: str) -> None:
        if not ok:
            raise InvalidParameterError(
                f"The '{name}' parameter of FlowGraphSAGE must be {expected}. Got {getattr(self, name)!r} instead."
            )

    def _validate_params(self) -> None:
        self._check("mode", self.mode in MODES, f"one of {MODES}")
        self._check("window", isinstance(self.window, int | float) and float(self.window) > 0, "> 0 seconds")
        for name, low in (("hidden", 2), ("layers", 1), ("code", 1), ("epochs", 1)):
            v = getattr(self, name)
            self._check(name, isinstance(v, int) and not isinstance(v, bool) and v >= low, f"an int >= {low}")
        self._check("lr", isinstance(self.lr, int | float) and float(self.lr) > 0, "> 0")
        self._check("clip", isinstance(self.clip, int | float) and float(self.clip) > 0, "> 0")
        for name in ("src", "dst", "time"):
            self._check(name, isinstance(getattr(self, name), str), "a column name")
        self._check("seed", isinstance(self.seed, int), "an int")

    def get_params(self) -> dict[str, Any]:
        """The keyword arguments this model was built with."""
        return {name: getattr(self, name) for name in self._params}

    def clone(self) -> FlowGraphSAGE:
        """A new, unfitted model with the same parameters."""
        return FlowGraphSAGE(**self.get_params())

    def __repr__(self) -> str:
        return "FlowGraphSAGE(" + ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()) + ")"

    @property
    def is_fitted(self) -> bool:
        """True once the model has learned from flows."""
        return hasattr(self, "features_")

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("FlowGraphSAGE has not learned anything yet; call learn_many or fit first")

    # ----- graph and features -------------------------------------------------------------------------
    def graph(self, flows: pd.DataFrame) -> Graph:
        """The per-window host graph of ``flows`` (edges in row order)."""
        missing = [c for c in (self.src, self.dst, self.time) if c not in flows.columns]
        if missing:
            raise SchemaError(f"FlowGraphSAGE: flow frame lacks column(s) {missing}; has {list(flows.columns)[:12]}")
        ts = pd.to_numeric(flows[self.time], errors="coerce").to_numpy(dtype="float64")
        if not np.isfinite(ts).all():
            bad = int(np.flatnonzero(~np.isfinite(ts))[0])
            raise SchemaError(f"FlowGraphSAGE: row {bad} has no valid start time in column {self.time!r}")
        win = np.floor(ts / float(self.window)).astype(np.int64)
        hosts = pd.concat(
            [
                pd.DataFrame({"w": win, "h": flows[self.src].astype(str).to_numpy()}),
                pd.DataFrame({"w": win, "h": flows[self.dst].astype(str).to_numpy()}),
            ],
            ignore_index=True,
        )
        codes, uniq = pd.MultiIndex.from_frame(hosts).factorize()
        n = len(flows)
        return Graph(
            src=codes[:n].astype(np.int64),
            dst=codes[n:].astype(np.int64),
            n_nodes=len(uniq),
            node_window=np.asarray(uniq.get_level_values(0), dtype=np.float64) * float(self.window),
            node_host=np.asarray(uniq.get_level_values(1), dtype=object),
            edge_window=win,
        )

    @staticmethod
    def _structure(g: Graph) -> np.ndarray:
        out_deg = np.bincount(g.src, minlength=g.n_nodes).astype(np.float64)
        in_deg = np.bincount(g.dst, minlength=g.n_nodes).astype(np.float64)
        return np.log1p(np.stack([out_deg[g.src], in_deg[g.src], out_deg[g.dst], in_deg[g.dst]], axis=1))

    def _edges(self, flows: pd.DataFrame, g: Graph) -> np.ndarray:
        """Standardised edge inputs: the flow's features, then its endpoints' degrees in the window."""
        c = float(self.clip)
        st = np.clip((self._structure(g) - self.struct_mean_) / self.struct_std_, -c, c)
        return np.concatenate([self._edge_matrix(flows), st], axis=1)

    def _edge_matrix(self, flows: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(flows), len(self.features_)))
        for j, f in enumerate(self.features_):
            if f in flows.columns:
                out[:, j] = pd.to_numeric(flows[f], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            else:
                out[:, j] = np.nan
        out = np.where(np.isfinite(out), out, self.median_[None, :])
        c = float(self.clip)
        return np.asarray(np.clip((out - self.median_) / self.scale_, -c, c))

    # ----- training -------------------------------------------------------------------------
    def learn_many(self, flows: pd.DataFrame) -> FlowGraphSAGE:
        """Unsupervised training on (benign) flows; replaces what was learned before."""
        if self.mode != "reconstruct":
            raise InvalidParameterError("FlowGraphSAGE(mode='classify') needs labels: call fit(flows, y)")
        return self._learn(flows, None)

    def fit(self, flows: pd.DataFrame, y: Sequence[Any] | np.ndarray) -> FlowGraphSAGE:
        """Supervised training on labelled flows (``mode="classify"``); one label must be benign."""
        if self.mode != "classify":
            raise InvalidParameterError(f"FlowGraphSAGE.fit needs mode='classify'; got {self.mode!r} (use learn_many)")
        labels = np.asarray(y).astype(str)
        if len(labels) != len(flows):
            raise SchemaError(f"FlowGraphSAGE.fit: {len(flows)} flows but {len(labels)} labels")
        return self._learn(flows, labels)

    def _learn(self, flows: pd.DataFrame, labels: np.ndarray | None) -> FlowGraphSAGE:
        if len(flows) == 0:
            raise SchemaError("FlowGraphSAGE got no flows")
        skip = {self.src, self.dst, self.time}
        num = flows.drop(columns=[c for c in skip if c in flows.columns]).select_dtypes(include=[np.number, "bool"])
        if num.shape[1] == 0:
            raise SchemaError("FlowGraphSAGE: no numeric edge feature columns besides src/dst/time")
        self.features_ = [str(c) for c in num.columns]
        self.median_, self.scale_ = _robust_center_scale(num.to_numpy(dtype="float64", na_value=np.nan))
        if labels is not None:
            self.classes_ = np.unique(labels)
            if not any(c.lower() in BENIGN_LABELS for c in self.classes_):
                raise SchemaError(f"FlowGraphSAGE.fit: no benign class among {self.classes_.tolist()}")
        else:
            self.classes_ = np.array([], dtype=str)
        g = self.graph(flows)
        st = self._structure(g)
        self.struct_mean_ = st.mean(axis=0)
        self.struct_std_ = np.where(st.std(axis=0) > 0, st.std(axis=0), 1.0)
        E = torch.from_numpy(self._edges(flows, g).astype(np.float32))
        src, dst = torch.from_numpy(g.src), torch.from_numpy(g.dst)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            torch.manual_seed(int(self.seed))
            net = self._net()
            opt = torch.optim.Adam(net.parameters(), lr=float(self.lr))
            if labels is not None:
                codes = np.searchsorted(self.classes_, labels)
                counts = np.bincount(codes, minlength=len(self.classes_)).astype(np.float64)
                weight = torch.tensor(len(codes) / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
                loss_fn = nn.CrossEntropyLoss(weight=weight)
                target = torch.from_numpy(codes.astype(np.int64))
            with torch.enable_grad():
                for _ in range(int(self.epochs)):
                    opt.zero_grad()
                    out = net(E, src, dst, g.n_nodes)
                    loss = loss_fn(out, target) if labels is not None else ((out - E) ** 2).mean()
                    loss.backward()
                    opt.step()
        finally:
            torch.set_num_threads(threads)
        self._set_weights({k: v.detach().numpy().copy() for k, v in net.state_dict().items()})
        self.n_seen_ = len(flows)
        return self

    def _net(self) -> _SAGE:
        d = len(self.features_) + len(STRUCT)
        if self.mode == "reconstruct":
            return _SAGE(d, int(self.hidden), int(self.layers), d, max(1, min(int(self.code), d // 2)))
        return _SAGE(d, int(self.hidden), int(self.layers), len(self.classes_), None)

    def _set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        net = self._net().double()
        net.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in weights.items()})
        net.eval()
        self.weights_ = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        self._model = net

    # ----- scoring -------------------------------------------------------------------------
    def _benign_index(self) -> int:
        for i, c in enumerate(self.classes_):
            if str(c).lower() in BENIGN_LABELS:
                return i
        raise SchemaError(f"FlowGraphSAGE: no benign class among {self.classes_.tolist()}")

    def _edge_scores(self, E: torch.Tensor, g: Graph) -> torch.Tensor:
        out = self._model(E, torch.from_numpy(g.src), torch.from_numpy(g.dst), g.n_nodes)
        if self.mode == "reconstruct":
            return ((out - E) ** 2).mean(dim=1)
        return 1.0 - torch.softmax(out, dim=1)[:, self._benign_index()]

    def score_many(self, flows: pd.DataFrame) -> np.ndarray:
        """One score per flow (row order kept; higher = more anomalous); never changes state."""
        self._require_fitted()
        if len(flows) == 0:
            return np.zeros(0)
        g = self.graph(flows)
        E = torch.from_numpy(self._edges(flows, g))
        with torch.no_grad():
            return np.asarray(self._edge_scores(E, g).numpy())

    def predict_proba(self, flows: pd.DataFrame) -> np.ndarray:
        """Class probabilities per flow in ``classes_`` order (classify mode)."""
        self._require_fitted()
        if self.mode != "classify":
            raise InvalidParameterError("FlowGraphSAGE.predict_proba needs mode='classify'")
        g = self.graph(flows)
        E = torch.from_numpy(self._edges(flows, g))
        with torch.no_grad():
            out = self._model(E, torch.from_numpy(g.src), torch.from_numpy(g.dst), g.n_nodes)
            return np.asarray(torch.softmax(out, dim=1).numpy())

    def score_entities(self, flows: pd.DataFrame, scores: np.ndarray | None = None) -> pd.DataFrame:
        """Per host and window: the highest score of a flow it sent or received, that flow's row and
        the number of flows touching the host. ``scores`` defaults to :meth:`score_many`."""
        s = self.score_many(flows) if scores is None else np.asarray(scores, dtype="float64")
        g = self.graph(flows)
        rows = np.arange(len(flows))
        both = pd.DataFrame({"node": np.r_[g.src, g.dst], "score": np.r_[s, s], "row": np.r_[rows, rows]})
        both = both.sort_values(["node", "score"], ascending=[True, False], kind="stable")
        top = both.groupby("node", sort=True).head(1).set_index("node")
        n_edges = both.groupby("node").size()
        return (
            pd.DataFrame(
                {
                    "window_start": g.node_window[top.index.to_numpy()],
                    "host": g.node_host[top.index.to_numpy()],
                    "score": top["score"].to_numpy(),
                    "top_flow": top["row"].to_numpy(),
                    "flows": n_edges.loc[top.index].to_numpy(),
                }
            )
            .sort_values("score", ascending=False, kind="stable")
            .reset_index(drop=True)
        )

    def explain_one(
        self, flows: pd.DataFrame, row: int, top: int = 5, neighbours: int | None = None
    ) -> GraphExplanation:
        """Which of flow ``row``'s own features and which neighbouring flows drove its score.

        Attribution is |gradient x standardised input| of the flow's score with respect to every
        edge feature of its window; a neighbour's weight is its share of the total. ``top`` features
        and ``neighbours`` (default ``top``) neighbouring flows are returned.
        """
        self._require_fitted()
        if not 0 <= row < len(flows):
            raise InvalidParameterError(f"explain_one: row {row} outside 0..{len(flows) - 1}")
        g_all = self.graph(flows)
        rows = np.flatnonzero(g_all.edge_window == g_all.edge_window[row])
        sub = flows.iloc[rows]
        g = self.graph(sub)
        me = int(np.flatnonzero(rows == row)[0])
        E = torch.from_numpy(self._edges(sub, g)).requires_grad_(True)
        with torch.enable_grad():
            s = self._edge_scores(E, g)[me]
            s.backward()
        assert E.grad is not None
        attr = np.abs((E.grad * E).detach().numpy())
        total = float(attr.sum()) or 1.0
        names = [*self.features_, *STRUCT]
        typical = np.r_[self.median_, np.expm1(self.struct_mean_)]
        raw = sub[[f for f in self.features_ if f in sub.columns]].iloc[me]
        actual = [float(raw.get(f, math.nan)) for f in self.features_]
        actual += [float(v) for v in np.expm1(self._structure(g)[me])]
        own = attr[me]
        order = np.argsort(-own)[:top]
        feats = [
            Contribution(names[j], float(typical[j]), actual[j], float(own[j] / total)) for j in order if own[j] > 0
        ]
        per_edge = attr.sum(axis=1)
        per_edge[me] = 0.0
        near = [
            {
                "row": int(rows[k]),
                "src": str(sub[self.src].iloc[k]),
                "dst": str(sub[self.dst].iloc[k]),
                "weight": float(per_edge[k] / total),
            }
            for k in np.argsort(-per_edge)[: top if neighbours is None else neighbours]
            if per_edge[k] > 0
        ]
        return GraphExplanation(float(s.detach()), feats, near)

    # ----- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Save to a folder: ``detector.json`` and ``weights.safetensors`` (no pickle, no code)."""
        self._require_fitted()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "class": "FlowGraphSAGE",
            "params": self.get_params(),
            "features": self.features_,
            "classes": [str(c) for c in self.classes_],
            "n_seen": self.n_seen_,
        }
        (folder / "detector.json").write_text(json.dumps(meta, indent=2))
        arrays = {f"net.{k}": np.ascontiguousarray(v) for k, v in self.weights_.items()}
        arrays["median"] = np.ascontiguousarray(self.median_)
        arrays["scale"] = np.ascontiguousarray(self.scale_)
        arrays["struct_mean"] = np.ascontiguousarray(self.struct_mean_)
        arrays["struct_std"] = np.ascontiguousarray(self.struct_std_)
        save_file(arrays, str(folder / "weights.safetensors"))
        return folder

    @classmethod
    def load(cls, path: str | Path) -> FlowGraphSAGE:
        """Load a model written by :meth:`save`.

        Raises
        ------
        SchemaError
            Naming the file and the problem when a file is missing, empty, garbled, lacks a field
            or a tensor, or does not fit the network its parameters describe.
        """
        folder = Path(path)
        meta_path = folder / "detector.json"
        if not meta_path.exists():
            raise SchemaError(f"{folder}: not a saved FlowGraphSAGE (detector.json missing)")
        meta = read_meta(meta_path, ("class", "params", "features", "classes"))
        if meta["class"] != "FlowGraphSAGE":
            raise SchemaError(f"{meta_path}: class is {meta['class']!r}, not 'FlowGraphSAGE'")
        try:
            model = cls(**meta["params"])
        except RESTORE_ERRORS as exc:
            raise SchemaError(f"{meta_path}: 'params' do not fit FlowGraphSAGE ({one_line(exc)})") from None
        weights = folder / "weights.safetensors"
        if not weights.is_file():
            raise SchemaError(f"{weights}: missing")
        try:
            arrays = load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as exc:
            raise SchemaError(f"{weights}: not a safetensors file ({one_line(exc)})") from None
        try:
            model.features_ = list(meta["features"])
            model.classes_ = np.asarray(meta["classes"], dtype=str)
            model.n_seen_ = int(meta.get("n_seen", 0))
            model.median_ = np.asarray(arrays["median"])
            model.scale_ = np.asarray(arrays["scale"])
            model.struct_mean_ = np.asarray(arrays["struct_mean"])
            model.struct_std_ = np.asarray(arrays["struct_std"])
            model._set_weights({k[4:]: v for k, v in arrays.items() if k.startswith("net.")})
        except KeyError as exc:
            raise SchemaError(f"{weights}: no tensor {exc.args[0]!r} (a saved FlowGraphSAGE has one)") from None
        except RESTORE_ERRORS as exc:
            raise SchemaError(f"{folder}: the saved files do not load as FlowGraphSAGE ({one_line(exc)})") from None
        return model
