"""Replays: scored windows to per-entity risk rows; the benchmark's real streams (realdata)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from misuse.alerts.model import Alert
from misuse.errors import InvalidParameterError, SchemaError
from misuse.response.replay import MQTT_ATTACKS, WINDOW_FEATURES, replay_from_scored, streams

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _scored() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entity": ["cam", "plug", "cam"],
            "window_start": [T0 + timedelta(minutes=2), T0, T0],
            "score": [2.0, 1.0, 0.5],
            "label": ["botnet", None, "benign"],
            "peers": [5.0, 1.0, None],
        }
    )


def test_scored_windows_become_time_ordered_risk_rows() -> None:
    replay = replay_from_scored("s", _scored(), threshold=1.0, window=60.0)

    f = replay.frame
    assert f["t"].is_monotonic_increasing
    at_threshold = f[(f["entity"] == "plug")].iloc[0]
    assert at_threshold["risk"] == pytest.approx(0.5)  # the fusion module's probability at the threshold
    cam = f[f["entity"] == "cam"].set_index("t")["risk"]
    assert cam.iloc[1] > 0.5 > cam.iloc[0]
    assert f["malicious"].tolist() == [False, False, True]
    assert replay.attack_windows == 1
    assert f["events"].eq(0.0).all()  # a feature the stream lacks is 0
    assert f["peers"].tolist() == [0.0, 1.0, 5.0]  # a missing value is 0 too


def test_rule_alerts_add_to_the_window_risk() -> None:
    rule = Alert("plug", T0, T0, 1.0, 1.0, "high", "botnet", "rule:r1", "rule hit")

    plain = replay_from_scored("s", _scored(), 1.0, 60.0).frame
    fused = replay_from_scored("s", _scored(), 1.0, 60.0, extra_alerts=[rule]).frame

    plug = fused["entity"] == "plug"
    assert fused.loc[plug, "risk"].iloc[0] == pytest.approx(1 - 0.5 * 0.5)  # noisy-OR of 0.5 and 0.5
    assert fused.loc[plug, "signals"].iloc[0] == 2
    assert (fused.loc[~plug, "risk"] == plain.loc[~plug, "risk"]).all()


def test_bad_input_is_refused() -> None:
    with pytest.raises(SchemaError, match="no scored windows"):
        replay_from_scored("empty", _scored().iloc[:0], 1.0, 60.0)
    with pytest.raises(InvalidParameterError, match="split"):
        streams("sim", "test")
    with pytest.raises(InvalidParameterError, match="unknown source 'x'"):
        streams("x", "train", Path("."))
    with pytest.raises(InvalidParameterError, match="needs the data folder"):
        streams("mqttset", "train")


@pytest.mark.realdata
def test_real_streams_hold_labelled_attacks_and_keep_train_and_held_out_apart(shared_data: Path) -> None:
    mq_train, mq_test = streams("mqttset", "train", shared_data)[0], streams("mqttset", "held-out", shared_data)[0]
    iot_train, iot_test = streams("iot23", "train", shared_data)[0], streams("iot23", "held-out", shared_data)[0]

    for r in (mq_train, mq_test, iot_train, iot_test):
        assert 0 < r.attack_windows < len(r.frame)
        assert set(WINDOW_FEATURES) <= set(r.frame.columns)
        assert r.frame["risk"].between(0, 1).all()
    assert set(mq_test.frame.loc[mq_test.frame["malicious"], "label"]) <= set(MQTT_ATTACKS)
    assert mq_test.frame["entity"].nunique() > 1
    assert iot_train.frame["t"].max() <= iot_test.frame["t"].min()
