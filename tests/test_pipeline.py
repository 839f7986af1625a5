"""The first detection path end to end on a small stream the test makes itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from misuse.errors import SchemaError
from misuse.events import Event, events_to_frame
from misuse.pipeline import WindowModel, detect, score_windows, train

DAY = 86400.0


def _normal(rng: np.random.Generator, days: int) -> list[Event]:
    ev = []
    for d in range(days):
        for dev in range(5):
            for t in np.sort(rng.uniform(0, DAY, 400)):
                ev.append(
                    Event(
                        ts=d * DAY + float(t),
                        entity=f"dev{dev}",
                        kind="flow",
                        action="mqtt",
                        peer="broker",
                        num={"orig_bytes": float(rng.lognormal(5, 0.3)), "dst_port": 1883.0},
                        cat={"conn_state": "SF"},
                        label="benign",
                    )
                )
    return ev


def _scan(start: float) -> list[Event]:
    return [
        Event(
            ts=start + i * 0.5,
            entity="dev2",
            kind="flow",
            action="telnet",
            peer=f"203.0.113.{i % 250}",
            num={"orig_bytes": 0.0, "dst_port": 23.0},
            cat={"conn_state": "S0"},
            label="botnet",
            event_id=f"scan{i}",
        )
        for i in range(100)
    ]


@pytest.fixture(scope="module")
def model_and_test() -> tuple[WindowModel, pd.DataFrame]:
    rng = np.random.default_rng(0)
    history = events_to_frame(_normal(rng, 3))
    test = events_to_frame(_normal(rng, 1) + _scan(0.5 * DAY))
    return train(history, window=300, target_fpr=0.01, seed=1), test


def test_scan_is_alerted_typed_and_explained(model_and_test: tuple[WindowModel, pd.DataFrame]) -> None:
    model, test = model_and_test
    alerts, scored = detect(model, test)
    scan = [a for a in alerts if a.entity == "dev2" and any(e.startswith("scan") for e in a.evidence)]
    assert scan, "the scanning window raised no alert"
    a = scan[0]
    assert a.misuse_type == "botnet"
    assert a.score > a.threshold
    feats = {c["feature"]: c for c in a.contributions}
    assert {"peers", "failed_frac", "dst_ports"} & set(feats)
    if "peers" in feats:
        assert feats["peers"]["actual"] > feats["peers"]["typical"]
    benign = scored[scored["label"] == "benign"]
    assert benign["alarm"].mean() <= 0.05


def test_threshold_holds_its_false_positive_rate_on_fresh_normal_data(
    model_and_test: tuple[WindowModel, pd.DataFrame],
) -> None:
    model, _ = model_and_test
    fresh = events_to_frame(_normal(np.random.default_rng(99), 2))
    fpr = score_windows(model, fresh)["alarm"].mean()
    assert fpr <= 0.05


def test_model_saves_and_loads_to_the_same_scores(
    model_and_test: tuple[WindowModel, pd.DataFrame], tmp_path: Path
) -> None:
    model, test = model_and_test
    model.save(tmp_path / "m")
    back = WindowModel.load(tmp_path / "m")
    np.testing.assert_allclose(score_windows(back, test)["score"], score_windows(model, test)["score"])
    assert back.threshold.threshold_ == model.threshold.threshold_


def test_too_little_history_is_a_clear_error() -> None:
    few = events_to_frame([Event(ts=float(i), entity="a", kind="k", action="x") for i in range(3)])
    with pytest.raises(SchemaError, match="at least 20 windows"):
        train(few)


def test_detect_reports_progress_as_increments(model_and_test: tuple[WindowModel, pd.DataFrame]) -> None:
    model, test = model_and_test
    steps: list[int] = []
    alerts, _ = detect(model, test, progress=steps.append)
    assert alerts
    assert steps == [1] * len(alerts)  # one unit per alert, so a bar's total is the alert count
