"""Alerts from the communication-graph model: host-windows whose flows score above a threshold.

:class:`~misuse.detectors.gnn.FlowGraphSAGE` scores every flow in the context of its window's host
graph. :func:`graph_alerts` maps those scores back to entities: one alert per host and window whose
highest-scoring flow crosses the threshold, explained by that flow's own features (typical vs
actual) and by the neighbouring flows of the same window that drove its score, with the ids of those
flows as evidence.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from misuse.alerts.model import Alert
from misuse.alerts.types import MisuseType
from misuse.detectors.gnn import FlowGraphSAGE
from misuse.detectors.threshold import Threshold
from misuse.errors import InvalidParameterError

DETECTOR = "gnn"
#: IoT-23 detailed labels a supervised graph model may predict, and the misuse type each stands for
CLASS_TYPES: dict[str, MisuseType] = {
    "ddos": MisuseType.BOTNET,
    "c&c": MisuseType.BOTNET,
    "partofahorizontalportscan": MisuseType.SCANNING,
    "dos": MisuseType.DOS,
    "flood": MisuseType.DOS,
    "bruteforce": MisuseType.BRUTE_FORCE,
    "brute_force": MisuseType.BRUTE_FORCE,
}


def _type_of(label: str) -> MisuseType:
    key = label.strip().lower().replace("-", "")
    return next((t for name, t in CLASS_TYPES.items() if name in key), MisuseType.ANOMALY)


def graph_alerts(
    model: FlowGraphSAGE,
    flows: pd.DataFrame,
    threshold: Threshold,
    *,
    ids: Sequence[Any] | None = None,
    entities: Collection[str] | None = None,
    top: int = 5,
    max_alerts: int | None = None,
) -> list[Alert]:
    """One explained alert per host and window whose top flow scores above ``threshold``.

    Parameters
    ----------
    model:
        A fitted :class:`FlowGraphSAGE` (either mode).
    flows:
        The flows to score, with the model's sender, receiver and time columns.
    threshold:
        A :class:`~misuse.detectors.threshold.Threshold` fitted on scores of benign training flows.
    ids:
        Evidence id of each flow (row order); default the row numbers.
    entities:
        Raise alerts only on these hosts (e.g. the site's own devices, not the outside peers they
        talk to); default every host.
    top:
        How many features and neighbouring host pairs explain each alert.
    max_alerts:
        Explain only the highest-scoring ``max_alerts`` host-windows (explaining costs one backward
        pass over the window's graph per alert); None for all.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from misuse.detectors.threshold import FPRThreshold
    >>> rng = np.random.default_rng(0)
    >>> flows = pd.DataFrame({"src": rng.choice(["a", "b"], 200), "dst": rng.choice(["x", "y"], 200),
    ...                       "ts": np.sort(rng.uniform(0, 600, 200)), "bytes": rng.normal(size=200)})
    >>> gnn = FlowGraphSAGE(epochs=5).learn_many(flows)
    >>> thr = FPRThreshold(0.01).fit(gnn.score_many(flows))
    >>> odd = pd.DataFrame({"src": ["a"] * 40, "dst": [f"h{i}" for i in range(40)],
    ...                     "ts": np.linspace(700, 710, 40), "bytes": [25.0] * 40})
    >>> alerts = graph_alerts(gnn, odd, thr, entities={"a", "b"})
    >>> [(a.entity, a.detector) for a in alerts]
    [('a', 'gnn')]
    """
    if len(flows) == 0:
        return []
    if ids is not None and len(ids) != len(flows):
        raise InvalidParameterError(f"graph_alerts: {len(ids)} ids for {len(flows)} flows")
    flows = flows.reset_index(drop=True)
    evidence_ids = np.asarray([str(i) for i in (ids if ids is not None else range(len(flows)))], dtype=object)
    scores = model.score_many(flows)
    hosts = model.score_entities(flows, scores)
    hot = hosts[np.asarray(threshold.is_alarm(hosts["score"].to_numpy()))]
    if entities is not None:
        hot = hot[hot["host"].isin(set(entities))]
    if max_alerts is not None:
        hot = hot.head(max_alerts)
    if hot.empty:
        return []
    g = model.graph(flows)
    src, dst = flows[model.src].astype(str).to_numpy(), flows[model.dst].astype(str).to_numpy()
    predicted = None
    if model.mode == "classify":
        predicted = model.classes_[model.predict_proba(flows).argmax(axis=1)]
    alerts = []
    hot = hot.assign(win=g.edge_window[hot["top_flow"].to_numpy(dtype=np.int64)])
    for _, group in hot.groupby("win", sort=False):
        rows = np.flatnonzero(g.edge_window == group["win"].iloc[0])  # the window's flows, explained together
        sub = flows.iloc[rows]
        for host, start, score, row in group[["host", "window_start", "score", "top_flow"]].itertuples(index=False):
            alerts.append(
                _alert(model, threshold, sub, rows, int(row), str(host), float(start), float(score), top,
                       src, dst, evidence_ids, str(predicted[int(row)]) if predicted is not None else "")
            )  # fmt: skip
    return sorted(alerts, key=lambda a: -a.score)


def _alert(
    model: FlowGraphSAGE, threshold: Threshold, sub: pd.DataFrame, rows: np.ndarray, row: int, host: str,
    start: float, score: float, top: int, src: np.ndarray, dst: np.ndarray, evidence_ids: np.ndarray, label: str,
) -> Alert:  # fmt: skip
    """The alert of one host-window: ``sub`` holds the window's flows (rows ``rows`` of the input)."""
    why = model.explain_one(sub, int(np.flatnonzero(rows == row)[0]), top=top, neighbours=len(sub))
    pairs: dict[tuple[str, str], list[float]] = {}
    for n in why.neighbours:
        pairs.setdefault((n["src"], n["dst"]), []).append(n["weight"])
    ranked = sorted(pairs.items(), key=lambda kv: -sum(kv[1]))[:top]
    neighbours = ", ".join(f"{s}->{d} ({len(w)} flows, {sum(w):.0%})" for (s, d), w in ranked[:3])
    feats = ", ".join(
        f"{c.feature} {c.actual:.3g} vs typical {c.typical:.3g}" for c in why.features[:3] if np.isfinite(c.typical)
    )
    summary = (
        f"{host}: flow {src[row]}->{dst[row]} scores {score:.3g} (threshold {threshold.threshold_:.3g}) "
        f"among {len(sub)} flows of its window"
        + (f", predicted {label}" if label else "")
        + (f"; drivers: {feats}" if feats else "")
        + (f"; neighbouring flows that drove it: {neighbours}" if neighbours else "")
    )
    touching = rows[(src[rows] == host) | (dst[rows] == host)]
    order = [row, *[int(n["row"]) for n in why.neighbours[:top]], *touching.tolist()]
    t0 = datetime.fromtimestamp(start, UTC)
    return Alert(
        entity=host,
        window_start=t0,
        window_end=datetime.fromtimestamp(start + float(model.window), UTC),
        score=score,
        threshold=float(threshold.threshold_),
        severity=threshold.severity(score),
        misuse_type=(_type_of(label) if label else MisuseType.ANOMALY).value,
        detector=DETECTOR,
        summary=summary,
        contributions=[c.to_dict() for c in why.features],
        evidence=list(dict.fromkeys(evidence_ids[order].tolist()))[:50],
    )
