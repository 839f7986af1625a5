"""Risk fusion per entity and incident grouping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from misuse.alerts.model import Alert
from misuse.errors import InvalidParameterError
from misuse.rules.fusion import detector_probability, display_names, fuse, group_incidents

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _alert(
    entity: str, detector: str, minute: float, mtype: str = "botnet", score: float = 1.0, thr: float = 1.0
) -> Alert:
    t = T0 + timedelta(minutes=minute)
    return Alert(entity, t, t, score, thr, "low", mtype, detector, "x", alert_id=f"{entity}-{detector}-{minute}")


def test_weak_signals_on_one_entity_make_a_strong_risk() -> None:
    # prepare: three weak rules on the camera, one weak rule on the lamp, repeated hits of one rule
    alerts = [_alert("cam", f"rule:r{i}", i) for i in range(3)]
    alerts += [_alert("lamp", "rule:r0", m) for m in (1, 2, 3, 4, 5)]
    conf = {"r0": 0.4, "r1": 0.5, "r2": 0.6}
    # execute
    risks = {r.entity: r for r in fuse(alerts, confidences=conf)}
    # assert: noisy-OR of distinct signals; repetition of one signal does not add up
    assert risks["cam"].risk == pytest.approx(1 - 0.6 * 0.5 * 0.4)
    assert risks["lamp"].risk == pytest.approx(0.4)
    assert [c["feature"] for c in risks["cam"].contributions] == ["rule:r2", "rule:r1", "rule:r0"]
    assert risks["cam"].to_alert(0.8).severity == "high"


def test_detector_scores_join_rule_hits() -> None:
    # prepare: an isolation-forest alert at twice its threshold plus one rule hit
    alerts = [_alert("cam", "iforest", 0, "anomaly", score=0.8, thr=0.4), _alert("cam", "rule:r1", 10)]
    # execute
    (risk,) = fuse(alerts, confidences={"r1": 0.5})
    # assert
    p = detector_probability(alerts[0])
    assert 0.5 < p < 1.0
    assert risk.risk == pytest.approx(1 - (1 - p) * 0.5)
    assert {c["feature"] for c in risk.contributions} == {"iforest", "rule:r1"}


def test_windows_separate_risks() -> None:
    # prepare: two hits three hours apart
    alerts = [_alert("cam", "rule:r1", 0), _alert("cam", "rule:r2", 180)]
    # execute
    risks = fuse(alerts, window=3600.0)
    # assert
    assert len(risks) == 2


def test_incidents_group_same_entity_and_cause() -> None:
    # prepare: a scan burst, a later unrelated brute force on the same entity, a scan elsewhere
    alerts = [_alert("cam", "rule:scan", m, "scanning") for m in (0, 10, 20)]
    alerts += [_alert("cam", "rule:brute", 15, "brute_force"), _alert("lamp", "rule:scan", 5, "scanning")]
    alerts.append(_alert("cam", "rule:scan", 600, "scanning"))
    # execute
    incidents = group_incidents(alerts, gap=1800)
    # assert
    sizes = sorted((i.entity, i.misuse_type, len(i.alerts)) for i in incidents)
    assert sizes == [("cam", "brute_force", 1), ("cam", "scanning", 1), ("cam", "scanning", 3), ("lamp", "scanning", 1)]
    assert "3 alert(s)" in max(incidents, key=lambda i: len(i.alerts)).summary()


def test_bad_parameters_fail_loudly() -> None:
    # prepare / execute / assert
    with pytest.raises(InvalidParameterError, match="'window'"):
        fuse([], window=0)
    with pytest.raises(InvalidParameterError, match="'gap'"):
        group_incidents([], gap=-1)


def test_contributions_are_shown_by_rule_title_and_detector_name() -> None:
    # prepare: a rule alert of a loaded rule, one of a rule not loaded, and a detector alert
    from misuse.rules.model import parse_rules

    (rule,) = parse_rules("title: Telnet scan\nid: r1\nconfidence: 0.7\ndetection: {s: {a: 1}, condition: s}\n")
    alerts = [
        _alert("cam", "rule:r1", 0),
        Alert("cam", T0, T0, 1.0, 1.0, "low", "botnet", "rule:gone", "Old rule: 3 matching event(s)"),
        _alert("cam", "iforest", 5, "anomaly", score=0.8, thr=0.4),
    ]
    names = display_names(alerts, [rule])
    # execute
    (risk,) = fuse(alerts, confidences={"r1": rule.confidence}, names=names)
    # assert: names in 'feature', the detector kept beside it
    assert names == {"rule:r1": "Telnet scan", "rule:gone": "Old rule", "iforest": "iforest"}
    by_detector = {c["detector"]: c for c in risk.contributions}
    assert (by_detector["rule:r1"]["feature"], by_detector["rule:r1"]["actual"]) == ("Telnet scan", 0.7)
    assert {c["feature"] for c in risk.contributions} == {"Telnet scan", "Old rule", "iforest"}
    assert "Telnet scan 0.70" in risk.summary() and "rule:" not in risk.summary()
    assert risk.to_dict()["contributions"] == risk.contributions


def test_an_incident_line_has_count_time_span_and_top_contributions() -> None:
    # prepare: a scan burst of one rule (3 alerts) plus a detector alert on the same camera and cause
    alerts = [_alert("cam", "rule:scan", m, "scanning") for m in (0, 10, 20)]
    alerts.append(_alert("cam", "iforest", 25, "scanning", score=3.0))
    (incident,) = group_incidents(alerts)
    # execute
    line = incident.summary({"rule:scan": "Horizontal port scan"})
    data = incident.to_dict({"rule:scan": "Horizontal port scan"})
    # assert
    assert line.startswith("scanning on cam: 4 alert(s) between 2024-05-01T12:00:00+00:00 and 2024-05-01T12:25")
    assert line.endswith("(25m 00s); top: Horizontal port scan x3, iforest x1")
    assert data["alerts"] == 4 and data["seconds"] == 1500.0
    assert data["contributions"][0] == {
        "detector": "rule:scan",
        "name": "Horizontal port scan",
        "alerts": 3,
        "max_score": 1.0,
        "severity": "low",
    }
