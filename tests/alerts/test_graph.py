"""GNN scores become explained alerts on the hosts whose flows crossed a training-set threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from misuse.alerts.graph import graph_alerts
from misuse.detectors.gnn import FlowGraphSAGE
from misuse.detectors.threshold import FPRThreshold
from misuse.errors import InvalidParameterError


def _benign(rng: np.random.Generator, n: int, t0: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "src": rng.choice(["cam", "plug", "hub"], n),
            "dst": rng.choice(["ntp", "cloud"], n),
            "ts": np.sort(rng.uniform(t0, t0 + 1800, n)),
            "bytes": rng.normal(5.0, 0.3, n),
        }
    )


@pytest.fixture(scope="module")
def fitted() -> tuple[FlowGraphSAGE, FPRThreshold, pd.DataFrame]:
    rng = np.random.default_rng(1)
    train, calib = _benign(rng, 900, 0.0), _benign(rng, 300, 1800.0)
    gnn = FlowGraphSAGE(epochs=40, seed=0).learn_many(train)
    thr = FPRThreshold(0.01).fit(gnn.score_many(calib))
    scan = pd.DataFrame(
        {"src": "plug", "dst": [f"10.0.0.{i}" for i in range(80)], "ts": np.linspace(4000, 4030, 80), "bytes": 1.0}
    )
    test = pd.concat([_benign(rng, 300, 3600.0), scan], ignore_index=True).sort_values("ts", ignore_index=True)
    return gnn, thr, test


def test_the_scanning_host_is_alerted_with_its_flows_as_evidence(fitted) -> None:  # type: ignore[no-untyped-def]
    gnn, thr, test = fitted
    ids = [f"flow-{i}" for i in range(len(test))]
    alerts = graph_alerts(gnn, test, thr, ids=ids, entities={"cam", "plug", "hub"})
    scan_rows = set(np.flatnonzero(test["dst"].str.startswith("10.0.0.")))
    top = alerts[0]
    assert top.entity == "plug" and top.detector == "gnn" and top.misuse_type == "anomaly"
    assert top.score > top.threshold == pytest.approx(thr.threshold_)
    assert int(top.evidence[0].split("-")[1]) in scan_rows  # the flow that scored highest is a scan flow
    assert top.contributions and {"feature", "typical", "actual", "weight"} <= set(top.contributions[0])
    assert "neighbouring flows" in top.summary and "plug->10.0.0." in top.summary
    # outside peers are never alerted when the site's own hosts are named
    assert {a.entity for a in alerts} <= {"cam", "plug", "hub"}
    assert (top.window_end - top.window_start).total_seconds() == gnn.window


def test_without_entities_every_endpoint_may_be_alerted_and_max_alerts_caps(fitted) -> None:  # type: ignore[no-untyped-def]
    gnn, thr, test = fitted
    every = graph_alerts(gnn, test, thr)
    assert any(a.entity.startswith("10.0.0.") for a in every)
    assert len(graph_alerts(gnn, test, thr, max_alerts=2)) == 2
    assert graph_alerts(gnn, test.iloc[:0], thr) == []


def test_a_classifier_names_the_predicted_class_and_its_type() -> None:
    rng = np.random.default_rng(2)
    benign = _benign(rng, 600, 0.0)
    flood = pd.DataFrame({"src": "cam", "dst": "victim", "ts": np.linspace(100, 160, 300), "bytes": 9.0})
    train = pd.concat([benign, flood], ignore_index=True)
    labels = np.r_[["benign"] * len(benign), ["DDoS"] * len(flood)]
    gnn = FlowGraphSAGE(mode="classify", epochs=60, seed=0).fit(train, labels)
    thr = FPRThreshold(0.01).fit(gnn.score_many(benign))
    test = pd.DataFrame({"src": "cam", "dst": "victim", "ts": np.linspace(5000, 5050, 200), "bytes": 9.0})
    alerts = graph_alerts(gnn, test, thr, entities={"cam"})
    assert alerts and alerts[0].misuse_type == "botnet" and "predicted DDoS" in alerts[0].summary


def test_ids_must_match_the_flows(fitted) -> None:  # type: ignore[no-untyped-def]
    gnn, thr, test = fitted
    with pytest.raises(InvalidParameterError, match="ids for"):
        graph_alerts(gnn, test, thr, ids=["only-one"])
