"""The device-type classifier and the spoofing/takeover monitor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from misuse.alerts.types import MisuseType
from misuse.errors import InvalidParameterError, NotFittedError, SchemaError
from misuse.fingerprint.classifier import DeviceClassifier, identify
from misuse.fingerprint.features import window_features
from misuse.fingerprint.monitor import FingerprintMonitor
from misuse.fingerprint.observe import packet_observations
from misuse.ingest.pcap_stream import iter_packet_arrays

from .conftest import synthetic_windows


def test_classifier_separates_types_with_confidence() -> None:
    train, test = synthetic_windows(seed=1), synthetic_windows(seed=2)

    clf = DeviceClassifier(k=5).fit(train, train["type"])
    proba = clf.predict_proba(test)

    assert (clf.predict(test) == test["type"].to_numpy()).mean() >= 0.95
    assert np.allclose(proba.sum(axis=1), 1.0)
    ident = identify(test, clf)
    assert dict(zip(ident["device"], ident["type"], strict=True)) == {"cam-01": "cam", "lock-01": "lock"}
    assert (ident["confidence"] > 0.9).all()


def _plug_windows(seed: int, n: int = 40) -> pd.DataFrame:
    """Windows of a third type, a smart plug: HTTPS like the cameras, but bigger packets."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "device": "plug-01",
            "type": "plug",
            "window_start": np.arange(n) * 3600.0,
            "units": 100,
            "f.size.mean": rng.normal(7.5, 0.2, n),
            "f.port.mqtts": np.clip(rng.normal(0.0, 0.05, n), 0.0, 1.0),
            "f.port.https": np.clip(rng.normal(1.0, 0.05, n), 0.0, 1.0),
        }
    )


def test_a_type_left_out_of_training_is_unknown_not_its_nearest_type() -> None:
    train = synthetic_windows(seed=1)  # cameras and locks only
    test = pd.concat([synthetic_windows(seed=2), _plug_windows(seed=9)], ignore_index=True)
    clf = DeviceClassifier().fit(train, train["type"])

    ident = identify(test, clf).set_index("device")

    plug = ident.loc["plug-01"]
    assert plug["nearest"] == "cam" and clf.predict(test[test["device"] == "plug-01"]).tolist().count("cam") == 40
    assert plug["distance"] < 3.0  # within the old fixed cut-off of 3 radii, where it was called a camera
    assert plug["type"] == "unknown" and plug["confidence"] < 0.1 and plug["inside"] < 0.1
    assert ident.loc[["cam-01", "lock-01"], "type"].tolist() == ["cam", "lock"]
    assert (ident.loc[["cam-01", "lock-01"], "confidence"] > 0.9).all()


def test_open_cutoff_is_calibrated_on_held_out_time_blocks() -> None:
    train = synthetic_windows(seed=1)
    # the camera drifts: its later windows have bigger packets than its earlier ones
    train.loc[train["type"] == "cam", "f.size.mean"] += np.linspace(0.0, 1.0, 40)
    shuffled = train.sample(frac=1.0, random_state=0)

    clf = DeviceClassifier().fit(train, train["type"])
    again = DeviceClassifier().fit(shuffled, shuffled["type"])

    # a held-out block of time is farther from the rest than a window from its neighbours
    assert clf.open_cutoff("cam") > 1.0
    assert again.open_cutoff("cam") == pytest.approx(clf.open_cutoff("cam"))  # blocks follow window_start
    with pytest.raises(InvalidParameterError, match="open_quantile"):
        DeviceClassifier(open_quantile=0.0)


def test_a_model_saved_before_the_calibration_uses_its_radii_as_cutoffs(tmp_path: Path) -> None:
    train = synthetic_windows(seed=1)
    DeviceClassifier().fit(train, train["type"]).save(tmp_path / "m")
    arrays = dict(np.load(tmp_path / "m.npz"))
    del arrays["cutoff"]
    np.savez(tmp_path / "m.npz", **arrays)

    old = DeviceClassifier.load(tmp_path / "m")

    assert [old.open_cutoff(t) for t in old.classes_] == [1.0, 1.0]


def test_save_load_same_seed_and_feature_robustness(tmp_path: Path) -> None:
    train, test = synthetic_windows(seed=1), synthetic_windows(seed=3)
    clf = DeviceClassifier(max_per_class=20, seed=4).fit(train, train["type"])
    again = DeviceClassifier(max_per_class=20, seed=4).fit(train, train["type"])

    loaded = DeviceClassifier.load(clf.save(tmp_path / "model"))
    shuffled = test[list(reversed(test.columns))].drop(columns=["f.port.https"]).assign(**{"f.new": 1.0})

    pd.testing.assert_frame_equal(clf.predict_proba(test), loaded.predict_proba(test))
    pd.testing.assert_frame_equal(identify(test, clf), identify(test, loaded))
    pd.testing.assert_frame_equal(clf.predict_proba(test), again.predict_proba(test))
    assert np.isfinite(loaded.predict_proba(shuffled).to_numpy()).all()


def test_classifier_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(NotFittedError):
        DeviceClassifier().predict(synthetic_windows(1))
    with pytest.raises(SchemaError, match="feature columns"):
        DeviceClassifier().fit(pd.DataFrame({"x": [1, 2]}), ["a", "b"])
    with pytest.raises(InvalidParameterError, match="'k'"):
        DeviceClassifier(k=0)
    (tmp_path / "junk.json").write_text('{"format": "other"}')
    np.savez(tmp_path / "junk.npz", a=np.zeros(1))
    with pytest.raises(SchemaError, match="not a device classifier"):
        DeviceClassifier.load(tmp_path / "junk")


def _monitor() -> tuple[FingerprintMonitor, pd.DataFrame]:
    train = synthetic_windows(seed=1)
    clf = DeviceClassifier().fit(train, train["type"])
    mon = FingerprintMonitor(clf)
    mon.enroll_many(train, train["type"])
    return mon, synthetic_windows(seed=5)


def test_genuine_traffic_raises_nothing_and_another_type_is_spoofing() -> None:
    mon, test = _monitor()
    cam = test[test["device"] == "cam-01"]
    lock_as_cam = test[test["device"] == "lock-01"].assign(device="cam-01")

    genuine = mon.check(cam)
    spoofed = mon.window_alerts(lock_as_cam)

    assert genuine == []
    assert len(spoofed) == len(lock_as_cam)
    a = spoofed[0]
    assert a.misuse_type == MisuseType.IMPERSONATION and a.detector == "fingerprint.spoofing"
    assert a.contributions[0]["feature"] == "p_enrolled_type" and a.evidence == ["lock:0"]


def test_consecutive_windows_with_the_same_finding_are_one_alert() -> None:
    mon, test = _monitor()
    cam = test[test["device"] == "cam-01"].reset_index(drop=True)  # hourly windows 0..39
    lock = test[test["device"] == "lock-01"].reset_index(drop=True).assign(device="cam-01")
    # lock traffic under the camera's address in hours 0-9 and 12-19 (hours 10-11 genuine),
    # then again in hours 30-34 after a silence of 10 hours
    mixed = pd.concat([lock.iloc[0:10], cam.iloc[10:12], lock.iloc[12:20], lock.iloc[30:35]], ignore_index=True)

    alerts = mon.check(mixed.sample(frac=1.0, random_state=0))  # any order in

    assert [a.contributions[-1]["actual"] for a in alerts] == [10, 8, 5]
    first = alerts[0]
    assert first.detector == "fingerprint.spoofing" and first.entity == "cam-01"
    assert (first.window_start.timestamp(), first.window_end.timestamp()) == (0.0, 10 * 3600.0)
    assert first.summary.startswith("10 consecutive windows from 1970-01-01 00:00 to 1970-01-01 10:00 UTC; ")
    assert first.score == max(a.score for a in mon.window_alerts(mixed.iloc[0:10]))
    assert {f"lock:{i}" for i in range(10)} <= set(first.evidence)
    assert alerts[2].window_start.timestamp() == 30 * 3600.0


def test_runs_of_different_findings_or_devices_are_separate_alerts() -> None:
    mon, test = _monitor()
    cam = test[test["device"] == "cam-01"].head(4).copy()
    cam["f.size.mean"] = 20.0  # far from every camera window: drift, or takeover with a new port
    cam["ports"] = [frozenset({443}), frozenset({443}), frozenset({6667}), frozenset({6667})]
    other = cam.assign(device="cam-02")
    mon.enroll("cam-02", "cam")

    alerts = mon.check(pd.concat([cam, other], ignore_index=True))

    assert [(a.entity, a.detector.split(".")[1], a.contributions[-1]["actual"]) for a in alerts] == [
        ("cam-01", "drift", 2),
        ("cam-02", "drift", 2),
        ("cam-01", "takeover", 2),
        ("cam-02", "takeover", 2),
    ]


def test_far_traffic_on_new_ports_is_takeover_and_without_them_drift() -> None:
    mon, test = _monitor()
    cam = test[test["device"] == "cam-01"].head(2).copy()
    cam["f.size.mean"] = 20.0  # far from every camera window, closer to cameras than to locks
    cam["ports"] = [frozenset({443, 6667}), frozenset({443})]

    alerts = mon.check(cam)

    assert [a.detector for a in alerts] == ["fingerprint.takeover", "fingerprint.drift"]
    assert alerts[0].misuse_type == MisuseType.UNAUTHORIZED_ACCESS and "6667" in alerts[0].summary
    assert alerts[1].misuse_type == MisuseType.ANOMALY


def test_monitor_bounds_and_enrolment_checks() -> None:
    train = synthetic_windows(seed=1)
    clf = DeviceClassifier().fit(train, train["type"])
    mon = FingerprintMonitor(clf, max_devices=3)

    for i in range(10):
        mon.enroll(f"dev{i}", "cam")

    assert list(mon.enrolled) == ["dev7", "dev8", "dev9"]
    with pytest.raises(InvalidParameterError, match="not one the classifier knows"):
        mon.enroll("x", "fridge")
    with pytest.raises(InvalidParameterError, match="min_probability"):
        FingerprintMonitor(clf, min_probability=1.5)


@pytest.mark.realdata
def test_on_demand_hubs_are_told_apart_on_later_days(shared_data: Path) -> None:
    devices = pd.read_csv(shared_data / "iot-on-demand/devices/devices.csv").dropna(subset=["address"])
    keys = {str(r.address): str(r.device) for r in devices.itertuples()}
    parts = []
    for name in ("lockly-hub-01", "sifely-hub-01"):
        obs = packet_observations(iter_packet_arrays(shared_data / f"iot-on-demand/pcaps/{name}.pcap"), keys)
        parts.append(obs[obs["device"] == name])
    f = window_features(pd.concat(parts, ignore_index=True), 3600.0)
    day = pd.to_datetime(f["window_start"], unit="s").dt.strftime("%m-%d")
    train, test = f[day <= "03-11"], f[day >= "03-12"]

    clf = DeviceClassifier().fit(train, train["device"])
    accuracy = float((clf.predict(test) == test["device"].to_numpy()).mean())

    assert len(test) > 50
    assert accuracy > 0.9  # two hubs with different clouds and protocols; chance is 0.5


def _broken_npz(kind: str, good: Path, bad: Path) -> None:
    """Write ``bad`` as a broken copy of the saved model arrays ``good``."""
    data = good.read_bytes()
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "garbled":
        bad.write_bytes(b"\x93NUMPY garbage, not a zip of arrays")
    elif kind == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "bad zip":
        bad.write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    else:
        arrays = dict(np.load(good))
        if kind == "missing key":
            del arrays["radius"]
        else:  # wrong shape
            arrays["train"] = arrays["train"][:, :1]
        np.savez(bad, **arrays)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("empty", "the file is empty"),
        ("garbled", "not an npz archive"),
        ("truncated", "corrupt npz archive"),
        ("bad zip", "corrupt npz archive"),
        ("missing key", r"lacks the array\(s\) \['radius'\]"),
        ("wrong shape", "array 'train' has shape"),
    ],
)
def test_load_names_the_file_and_problem_of_a_broken_model(tmp_path: Path, kind: str, message: str) -> None:
    train = synthetic_windows(seed=1)
    DeviceClassifier().fit(train, train["type"]).save(tmp_path / "good")
    (tmp_path / "bad.json").write_text((tmp_path / "good.json").read_text())
    _broken_npz(kind, tmp_path / "good.npz", tmp_path / "bad.npz")

    with pytest.raises(SchemaError, match=message) as err:
        DeviceClassifier.load(tmp_path / "bad")

    assert str(tmp_path / "bad.npz") in str(err.value)


def test_load_names_a_missing_or_broken_metadata_file(tmp_path: Path) -> None:
    train = synthetic_windows(seed=1)
    DeviceClassifier().fit(train, train["type"]).save(tmp_path / "m")
    meta = (tmp_path / "m.json").read_text()

    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(SchemaError, match=r"m\.json: cannot read"):
        DeviceClassifier.load(tmp_path / "m")
    (tmp_path / "m.json").write_text(meta.replace('"classes"', '"kinds"'))
    with pytest.raises(SchemaError, match=r"m\.json: device classifier lacks the key 'classes'"):
        DeviceClassifier.load(tmp_path / "m")
    (tmp_path / "m.json").unlink()
    with pytest.raises(SchemaError, match=r"m\.json"):
        DeviceClassifier.load(tmp_path / "m")
