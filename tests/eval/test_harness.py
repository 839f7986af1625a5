"""The evaluation harness: thresholds from calibration only, per-class figures, dedup, delay; reduced real runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from misuse.cli import app
from misuse.eval import datasets as ds
from misuse.eval.harness import dedup_mask, evaluate, evaluate_detector


def _split() -> ds.Split:
    """Benign N(0,1) rows; test: benign, a far 'flood' (all identical rows) and a near 'scan' class."""
    rng = np.random.default_rng(0)
    cols = ["a", "b", "c"]
    train = pd.DataFrame(rng.normal(size=(400, 3)), columns=cols)
    calib = pd.DataFrame(rng.normal(size=(200, 3)), columns=cols)
    benign = rng.normal(size=(100, 3))
    flood = np.full((50, 3), 9.0)
    scan = rng.normal(loc=4.0, size=(20, 3))
    test = pd.DataFrame(np.vstack([benign, flood, scan]), columns=cols)
    cls = np.array(["benign"] * 100 + ["flood"] * 50 + ["scan"] * 20)
    ts = np.r_[np.arange(100.0), 200.0 + np.arange(50.0), 300.0 + np.arange(20.0)]
    return ds.Split(
        "toy", train, calib, test, (cls != "benign").astype(int), cls, "toy split", ts_test=ts,
        entity_test=np.array(["dev"] * 170),
    )  # fmt: skip


def test_one_run_reports_the_training_threshold_operating_point() -> None:
    split = _split()
    res = evaluate_detector(split, "iforest", seed=0, target_fpr=0.01, dedup=True)
    assert res["calibration_fpr"] <= 0.01
    assert res["roc_auc"] > 0.95
    assert set(res["recall_by_class"]) == {"flood", "scan"}
    assert res["recall_by_class"]["flood"] == 1.0
    (tn, fp), (fn, tp) = res["confusion"]
    assert tn + fp == 100 and fn + tp == 70
    assert res["delay_s"]["flood"] == 0.0
    assert res["delay_s"]["entity:dev"] == 0.0
    assert res["dedup"]["positives"] == 21  # the 50 identical flood rows count once


def test_dedup_keeps_first_of_identical_rows_per_label() -> None:
    X = pd.DataFrame({"a": [1.0, 1.0, 1.0, 2.0]})
    keep = dedup_mask(X, np.array([1, 1, 0, 1]))
    assert keep.tolist() == [True, False, True, True]


def test_seeds_are_averaged_and_kept() -> None:
    res = evaluate(_split(), ["iforest", "kitnet"], seeds=[0, 1], dedup=False)
    for name in ("iforest", "kitnet"):
        r = res["unsupervised"][name]
        assert len(r["per_seed"]) == 2
        mean = np.mean([s["roc_auc"] for s in r["per_seed"]])
        assert r["mean"]["roc_auc"] == pytest.approx(mean)
    assert res["test_classes"] == {"benign": 100, "flood": 50, "scan": 20}


@pytest.mark.realdata
def test_nbaiot_reduced_eval_through_the_cli(shared_data: Path) -> None:
    out = CliRunner().invoke(app, ["eval", "nbaiot", "--quick", "--json", "--data", str(shared_data)])
    assert out.exit_code == 0, out.output
    res = json.loads(out.output)
    assert res["dataset"] == "nbaiot"
    assert res["rows"]["test"] == 60 + 3 * 299
    assert res["unsupervised"]["kitnet"]["mean"]["roc_auc"] > 0.9
    assert res["supervised"]["random_forest"]["mean"]["macro_f1"] > 0.9


@pytest.mark.realdata
def test_iot23_split_keeps_training_and_test_apart(shared_data: Path) -> None:
    split = ds.iot23(shared_data)
    assert split.notes["pre_infection_flows"] > 0
    assert len(split.test) == len(split.y_test) == 23_145 - int(split.notes["pre_infection_flows"])  # type: ignore[call-overload]
    assert split.ts_test is not None and split.ts_test.min() >= split.notes["infection_start"]  # type: ignore[operator]
    res = evaluate_detector(split, "iforest", seed=0, dedup=True)
    assert res["roc_auc"] > 0.9
    assert res["dedup"]["n"] < res["n"]


@pytest.mark.realdata
def test_mqttset_without_addresses_has_no_address_columns(shared_data: Path) -> None:
    split = ds.mqttset(shared_data, with_addresses=False, limit=3000)
    assert not set(ds.ADDRESS_COLUMNS) & set(split.test.columns)
    assert split.test.shape[1] == 115
    assert set(np.unique(split.cls_test)) == {"benign", *ds.MQTT_CLASSES}


@pytest.mark.realdata
def test_toniot_uses_sensor_readings_only(shared_data: Path) -> None:
    # TON_IoT's attack rows were recorded at other hours than its normal rows: the time of day
    # alone separates them, so it must not be a feature
    split = ds.toniot(shared_data, "thermostat", limit=600)
    assert list(split.train.columns) == ["current_temperature", "thermostat_status"]
    assert list(split.test.columns) == list(split.sup_test.columns)  # type: ignore[union-attr]


@pytest.mark.realdata
def test_toniot_booleans_have_one_spelling(shared_data: Path) -> None:
    # the garage door writes its phone signal 0/1 in attack rows and false/true in normal rows
    split = ds.toniot(shared_data, "garage_door", limit=2000)
    assert "sphone_signal" in split.test.columns
    assert set(np.unique(split.test["sphone_signal"])) <= {0.0, 1.0}
