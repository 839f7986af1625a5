"""Integrity checks on a small self-made multi-sensor device, and on TON_IoT (realdata)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from misuse.alerts.types import MisuseType
from misuse.errors import InvalidParameterError, NotFittedError, SchemaError
from misuse.events import BENIGN
from misuse.integrity import IntegrityMonitor, inject_tampering, reading_scores, to_alerts


def device(n: int, seed: int = 0, entity: str = "room-1", start: str = "2024-01-01") -> pd.DataFrame:
    """A room sensor: smooth temperature, humidity tied to it, a heater state tied to temperature."""
    rng = np.random.default_rng(seed)
    temp = 21 + 3 * np.sin(np.arange(n) / 300) + rng.normal(0, 0.05, n)
    hum = 80 - 1.5 * temp + rng.normal(0, 0.2, n)
    return pd.DataFrame(
        {
            "ts": pd.date_range(start, periods=n, freq="30s", tz="UTC"),
            "entity": entity,
            "event_id": [f"{entity}:{i}" for i in range(n)],
            "num.temp": temp.round(2),
            "num.humidity": hum.round(2),
            "cat.heater": np.where(temp < 20.5, "on", "off"),
        }
    )


@pytest.fixture(scope="module")
def trained() -> tuple[IntegrityMonitor, pd.DataFrame, pd.DataFrame]:
    data = device(9000)
    train, test = data.iloc[:6000], data.iloc[6000:].reset_index(drop=True)
    return IntegrityMonitor().fit(train), train, test


def flagged(mon: IntegrityMonitor, frame: pd.DataFrame) -> pd.Series:
    top = reading_scores(mon.check(frame, update=False)).set_index("event_id")
    return top.reindex(frame["event_id"])["flagged"].fillna(False).astype(bool)


def test_clean_readings_are_rarely_flagged(trained: tuple[IntegrityMonitor, pd.DataFrame, pd.DataFrame]) -> None:
    mon, _, test = trained

    rate = flagged(mon, test).mean()

    assert rate < 0.01


@pytest.mark.parametrize("kind", ["spike", "frozen", "replay", "offset", "swap"])
def test_each_kind_of_tampering_is_found(
    trained: tuple[IntegrityMonitor, pd.DataFrame, pd.DataFrame], kind: str
) -> None:
    mon, train, test = trained
    tampered, truth = inject_tampering(test, history=train, kinds=(kind,), episodes=3, length=40, seed=1)

    hit = flagged(mon, tampered).to_numpy()
    is_kind = (truth == kind).to_numpy()

    assert is_kind.sum() > 0
    assert hit[is_kind].mean() >= (0.3 if kind == "swap" else 0.6)
    assert hit[~is_kind].mean() < 0.05


def test_physical_bounds_are_enforced_even_inside_the_training_range() -> None:
    data = device(3000)
    mon = IntegrityMonitor(bounds={"num.humidity": (0.0, 40.0)}).fit(data.iloc[:2000])

    flags = mon.check(data.iloc[2000:], update=False)

    rng = flags[(flags["check"] == "range") & (flags["score"] > 1)]
    over = data.iloc[2000:]["num.humidity"] > 40.0
    assert over.any() and len(rng) >= over.sum()


def test_streaming_in_two_parts_matches_one_call(
    trained: tuple[IntegrityMonitor, pd.DataFrame, pd.DataFrame],
) -> None:
    _, train, test = trained
    whole = IntegrityMonitor().fit(train).check(test)
    split = IntegrityMonitor().fit(train)
    parts = pd.concat([split.check(test.iloc[:1000]), split.check(test.iloc[1000:])], ignore_index=True)

    key = ["event_id", "check"]
    a = whole.sort_values(key).reset_index(drop=True)
    b = parts.sort_values(key).reset_index(drop=True)
    assert a[key].equals(b[key])
    assert np.allclose(a["score"], b["score"])


def test_repetitive_device_gets_a_longer_replay_sequence_or_none() -> None:
    n = 3000
    frame = pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=n, freq="s", tz="UTC"),
            "entity": "switch",
            "event_id": [str(i) for i in range(n)],
            "num.state": np.tile([0.0, 1.0, 1.0, 0.0, 1.0], n // 5),
        }
    )

    mon = IntegrityMonitor().fit(frame)

    assert mon.devices_["switch"].replay_k == 0


def test_alerts_group_runs_and_explain(trained: tuple[IntegrityMonitor, pd.DataFrame, pd.DataFrame]) -> None:
    mon, train, test = trained
    tampered, truth = inject_tampering(test, history=train, kinds=("frozen",), episodes=2, length=60, seed=3)

    alerts = to_alerts(mon.check(tampered, update=False))

    frozen = [a for a in alerts if a.detector == "integrity.frozen"]
    tampered_ids = set(tampered.loc[truth == "frozen", "event_id"])
    assert len(frozen) == 2
    assert all(a.misuse_type == MisuseType.DATA_TAMPERING for a in alerts)
    assert all(set(a.evidence) <= tampered_ids for a in frozen)
    assert all({"typical", "actual"} <= set(c) for a in frozen for c in a.contributions)


def test_bad_parameters_and_inputs_fail_loudly() -> None:
    with pytest.raises(InvalidParameterError, match="margin"):
        IntegrityMonitor(margin=0.5)
    with pytest.raises(InvalidParameterError, match="pair_min"):
        IntegrityMonitor(pair_min=0.5, pair_common=0.1)
    with pytest.raises(NotFittedError):
        IntegrityMonitor().check(device(10))
    with pytest.raises(SchemaError, match="entity"):
        IntegrityMonitor().fit(pd.DataFrame({"ts": [1]}))
    with pytest.raises(InvalidParameterError, match="kinds"):
        inject_tampering(device(100), kinds=("melt",))


def test_unknown_devices_are_left_out(trained: tuple[IntegrityMonitor, pd.DataFrame, pd.DataFrame]) -> None:
    mon, _, _ = trained

    flags = mon.check(device(50, entity="other"), update=False)

    assert flags.empty


@pytest.mark.realdata
def test_ton_iot_fridge_simulated_tampering(shared_data: Path) -> None:
    from misuse.ingest.tabular import TabularReader

    frame = TabularReader("ton_iot").read(shared_data / "ton-iot" / "Train_Test_IoT_Fridge.csv")
    normal = frame[frame["label"] == BENIGN].sort_values("ts", kind="stable").reset_index(drop=True)
    cut = int(len(normal) * 0.6)
    mon = IntegrityMonitor().fit(normal.iloc[:cut])
    held = normal.iloc[cut:].reset_index(drop=True)
    tampered, truth = inject_tampering(held, history=normal.iloc[:cut], seed=0)

    hit = flagged(mon, tampered).to_numpy()
    is_t = (truth != "").to_numpy()

    assert hit[is_t].mean() > 0.6
    assert hit[~is_t].mean() < 0.05
