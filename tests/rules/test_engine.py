"""The engine: batches and streams give the same correlation alerts; state stays bounded."""

from __future__ import annotations

import gc
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from misuse.errors import InvalidParameterError
from misuse.events import Event, events_to_frame
from misuse.rules.engine import RuleEngine
from misuse.rules.model import RuleError, load_rules, parse_rules

RULES = """
title: failed
id: f
name: failed
logsource: {product: linux, service: auth}
detection: {sel: {action: login.failed}, condition: sel}
---
title: success
id: s
name: success
logsource: {product: linux, service: auth}
detection: {sel: {action: login.success}, condition: sel}
---
title: brute
id: b
name: brute
misuse_type: brute_force
correlation: {type: event_count, rules: [failed], group-by: [peer], timespan: 60s, condition: {gte: 5}}
---
title: spray
id: v
misuse_type: brute_force
correlation: {type: value_count, rules: [failed], group-by: [peer], timespan: 120s,
              condition: {gte: 3, field: entity}}
---
title: owned
id: o
misuse_type: unauthorized_access
correlation: {type: temporal_ordered, rules: [brute, success], group-by: [peer], timespan: 10m}
"""


def _events(spec: list[tuple[int, int, int, bool]]) -> list[Event]:
    return [
        Event(
            ts=float(t),
            entity=f"u{user}",
            peer=f"10.0.0.{ip}",
            kind="auth",
            action="login.success" if ok else "login.failed",
            event_id=f"e{i}",
        )
        for i, (t, ip, user, ok) in enumerate(sorted(spec))
    ]


def _key(alerts: list[Any]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return sorted((a.detector, a.entity, a.window_end.isoformat(), tuple(a.evidence)) for a in alerts)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 600), st.integers(1, 3), st.integers(1, 4), st.just(False)),
        min_size=1,
        max_size=60,
    ),
    st.lists(st.tuples(st.integers(0, 600), st.integers(1, 3), st.integers(1, 4), st.just(True)), max_size=5),
    st.integers(1, 7),
)
def test_stream_equals_batch_for_correlations(
    fails: list[tuple[int, int, int, bool]], wins: list[tuple[int, int, int, bool]], chunk: int
) -> None:
    # prepare
    rules = parse_rules(RULES)
    events = _events(fails + wins)
    # execute: one batch; micro-batches of `chunk`; one event at a time
    batch = RuleEngine(rules).run(events_to_frame(events))
    stream = RuleEngine(rules)
    micro = [a for i in range(0, len(events), chunk) for a in stream.process(events_to_frame(events[i : i + chunk]))]
    single = RuleEngine(rules)
    one = [a for e in events for a in single.process_one(e)]
    # assert
    assert _key(batch) == _key(micro) == _key(one)


def test_temporal_ordered_needs_the_order() -> None:
    # prepare: success before the brute force, then another after it
    spec = [(0, 1, 1, True)] + [(10 + i, 1, 1, False) for i in range(5)] + [(100, 1, 1, True)]
    # execute
    alerts = RuleEngine(parse_rules(RULES)).run(events_to_frame(_events(spec)))
    # assert
    owned = [a for a in alerts if a.detector == "rule:o"]
    assert len(owned) == 1 and owned[0].window_end.timestamp() == 100.0


def test_state_is_bounded_by_groups_and_time() -> None:
    # prepare: 5,000 attackers with one failure each, then time moves on
    rules = parse_rules(RULES)
    engine = RuleEngine(rules, max_groups=1000)
    events = [
        Event(ts=float(i) * 0.01, entity="u", peer=f"a{i}", kind="auth", action="login.failed") for i in range(5000)
    ]
    # execute
    engine.process(events_to_frame(events))
    during = engine.state_size()
    engine.process_one(Event(ts=10_000.0, entity="u", peer="late", kind="auth", action="login.failed"))
    # assert: at most max_groups per correlation while busy, old groups swept once the window passed
    assert during <= 2 * 1000
    assert engine.state_size() == 2
    assert engine.stats.dropped > 0


def test_detection_alerts_are_deduplicated_per_entity_and_window() -> None:
    # prepare: a standalone rule and 50 hits of one entity in one 5-minute bucket
    rules = parse_rules("title: t\nid: t\ndetection: {s: {kind: packet}, condition: s}\n")
    events = [Event(ts=float(i), entity="cam", kind="packet", action="tcp", event_id=f"p{i}") for i in range(50)]
    engine = RuleEngine(rules)
    # execute
    alerts = engine.run(events_to_frame(events))
    # assert
    assert len(alerts) == 1 and alerts[0].score == 50.0 and len(alerts[0].evidence) == 50
    assert alerts[0].contributions[0] == {"feature": "kind", "typical": None, "actual": "packet", "weight": 1.0}


def test_old_sigma_aggregation_counts_distinct_values() -> None:
    # prepare
    rules = parse_rules(
        "title: t\nid: t\nlogsource: {product: linux, service: auth}\n"
        "detection:\n  s: {pam_message: authentication failure}\n  timeframe: 1h\n"
        "  condition: s | count(pam_user) by pam_rhost > 2\n"
    )
    events = [
        Event(ts=float(i), entity=u, peer="9.9.9.9", kind="auth", action="pam.auth_failure")
        for i, u in enumerate(["a", "a", "b", "c"])
    ]
    # execute
    alerts = RuleEngine(rules).run(events_to_frame(events))
    # assert
    assert [(a.entity, a.score) for a in alerts] == [("9.9.9.9", 3.0)]


def test_unknown_reference_and_cycles_fail_at_build() -> None:
    # prepare
    missing = "title: c\nid: c\ncorrelation: {type: event_count, rules: [nope], timespan: 1m, condition: {gte: 1}}\n"
    cycle = (
        "title: a\nid: a\ncorrelation: {type: temporal, rules: [b, a], timespan: 1m}\n---\n"
        "title: b\nid: b\ncorrelation: {type: temporal, rules: [a, b], timespan: 1m}\n"
    )
    # execute / assert
    with pytest.raises(RuleError, match="not loaded"):
        RuleEngine(parse_rules(missing))
    with pytest.raises(RuleError, match="cycle"):
        RuleEngine(parse_rules(cycle))


def test_unsorted_batches_are_put_in_time_order() -> None:
    # prepare
    rules = parse_rules(RULES)
    events = _events([(t, 1, 1, False) for t in range(5)])
    frame = events_to_frame(events).iloc[np.array([4, 2, 0, 3, 1])]
    # execute
    alerts = RuleEngine(rules).run(frame)
    # assert
    assert [a.detector for a in alerts] == ["rule:b"]


DETECTIONS = """
title: telnet
id: t
misuse_type: botnet
detection: {sel: {kind: packet, dst_port: [23, 2323]}, condition: sel}
---
title: mqtt
id: m
level: high
detection: {sel: {action: mqtt}, condition: sel}
"""


def _packets(spec: list[tuple[int, int, int, bool]]) -> list[Event]:
    return [
        Event(
            ts=float(t),
            entity=f"cam{host}",
            kind="packet",
            action="mqtt" if mqtt else "tcp",
            num={"dst_port": float(port)},
            event_id=f"p{i}",
        )
        for i, (t, host, port, mqtt) in enumerate(sorted(spec))
    ]


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1200), st.integers(1, 3), st.sampled_from([23, 80, 2323]), st.booleans()),
        min_size=1,
        max_size=80,
    ),
    st.integers(1, 9),
)
def test_stream_equals_batch_for_detections(spec: list[tuple[int, int, int, bool]], chunk: int) -> None:
    # prepare
    rules = parse_rules(DETECTIONS)
    events = _packets(spec)
    # execute: one batch; micro-batches of `chunk`; one event at a time
    batch_engine, micro_engine, single_engine = RuleEngine(rules), RuleEngine(rules), RuleEngine(rules)
    batch = batch_engine.run(events_to_frame(events))
    micro = [
        a for i in range(0, len(events), chunk) for a in micro_engine.process(events_to_frame(events[i : i + chunk]))
    ]
    one = [a for e in events for a in single_engine.process_one(e)]
    # assert: the same alerts (id = rule, entity, first hit); every hit is either counted or suppressed
    assert sorted(a.alert_id for a in batch) == sorted(a.alert_id for a in micro) == sorted(a.alert_id for a in one)
    for engine, alerts in ((batch_engine, batch), (micro_engine, micro), (single_engine, one)):
        assert sum(a.score for a in alerts) + engine.stats.suppressed == sum(engine.stats.hits.values())
        assert engine.stats.alerts == {k: v for k, v in Counter(a.detector[5:] for a in alerts).items()}
    assert batch_engine.stats.suppressed == 0


def test_detection_alerts_match_a_per_bucket_reference() -> None:
    # prepare: dense hits over many entities and buckets, evidence capped at 3
    rng = np.random.default_rng(7)
    n = 3000
    events = [
        Event(
            ts=float(t),
            entity=f"h{rng.integers(0, 40)}",
            kind="packet",
            action=str(rng.choice(["mqtt", "tcp"])),
            num={"dst_port": float(rng.choice([23, 80, 2323]))},
            event_id=f"p{i}",
        )
        for i, t in enumerate(np.round(np.sort(rng.uniform(0, 7200, n)), 3))
    ]
    rules = parse_rules(DETECTIONS)
    # execute
    alerts = RuleEngine(rules, evidence=3).run(events_to_frame(events))
    # assert: one alert per (rule, entity, 300 s bucket) with its count, first 3 ids, first and last time
    expected: dict[tuple[str, str, int], list[Event]] = {}
    for e in events:
        port = e.num["dst_port"]
        for rid, hit in (("t", port in (23.0, 2323.0)), ("m", e.action == "mqtt")):
            if hit:
                expected.setdefault((rid, e.entity, int(e.ts // 300)), []).append(e)
    got = {(a.detector[5:], a.entity, int(a.window_start.timestamp() // 300)): a for a in alerts}
    assert got.keys() == expected.keys()
    for key, hits in expected.items():
        a = got[key]
        assert a.score == len(hits) and a.contributions[-1]["actual"] == len(hits)
        assert a.evidence == [e.event_id for e in hits[:3]]
        assert (a.window_start.timestamp(), a.window_end.timestamp()) == (hits[0].ts, hits[-1].ts)
        first = {c["feature"]: c["actual"] for c in a.contributions}
        if key[0] == "t":
            assert first == {"kind": "packet", "dst_port": hits[0].num["dst_port"], "hits": len(hits)}
            assert a.severity == "medium" and a.misuse_type == "botnet"
        else:
            assert first == {"action": "mqtt", "hits": len(hits)} and a.severity == "high"


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_left_as_it_was(enabled: bool) -> None:
    # prepare
    rules = parse_rules(DETECTIONS)
    events = _packets([(t, 1, 23, False) for t in range(20)])
    was = gc.isenabled()
    if not enabled:
        gc.disable()
    try:
        # execute
        RuleEngine(rules).run(events_to_frame(events))
        # assert
        assert gc.isenabled() is enabled
    finally:
        if was:
            gc.enable()


def test_a_missing_rule_reference_points_at_the_rules_line(tmp_path: Path) -> None:
    # prepare: the reference is on line 6, the rule starts on line 1
    path = tmp_path / "c.yml"
    path.write_text(
        "title: c\nid: c\ncorrelation:\n  type: event_count\n  group-by: [peer]\n  rules: [nope]\n"
        "  timespan: 1m\n  condition: {gte: 1}\n"
    )
    # execute
    with pytest.raises(RuleError, match="'nope', which is not loaded") as info:
        RuleEngine(load_rules(path))
    # assert
    assert (info.value.line, info.value.field_name) == (6, "correlation.rules")
    assert str(info.value).startswith(f"{path} line 6: field 'correlation.rules'")


ALIASES = """
title: answered
id: a
name: answered
detection: {sel: {kind: flow, conn_state: SF}, condition: sel}
---
title: login
id: l
name: login
logsource: {product: linux, service: auth}
detection: {sel: {action: login.success}, condition: sel}
---
title: scanned then logged in
id: t
misuse_type: unauthorized_access
correlation:
  type: temporal_ordered
  rules: [answered, login]
  group-by: [remote]
  timespan: 10m
  aliases:
    remote:
      answered: entity
      login: peer
"""


def test_aliases_group_different_fields_of_different_rules() -> None:
    # prepare: 10.0.0.9 connects (flow entity), then logs in (auth peer); 10.0.0.8 logs in without a flow
    events = [
        Event(
            ts=0.0,
            entity="10.0.0.9",
            peer="10.0.0.1",
            kind="flow",
            action="tcp",
            cat={"conn_state": "SF"},
            event_id="f1",
        ),
        Event(ts=5.0, entity="root", peer="10.0.0.9", kind="auth", action="login.success", event_id="l1"),
        Event(ts=6.0, entity="root", peer="10.0.0.8", kind="auth", action="login.success", event_id="l2"),
    ]
    # execute
    alerts = RuleEngine(parse_rules(ALIASES)).run(events_to_frame(events))
    # assert: one alert, on the address found in the flow's entity and the login's peer
    assert [(a.detector, a.entity, a.evidence) for a in alerts] == [("rule:t", "10.0.0.9", ["f1", "l1"])]
    assert {"feature": "remote", "typical": None, "actual": "10.0.0.9", "weight": 0.0} in alerts[0].contributions


@pytest.mark.parametrize(
    ("change", "message", "line", "field"),
    [
        (("      login: peer", "      nope: peer"), "'nope', which is not loaded", 24, "correlation.aliases.remote"),
        (
            ("      login: peer", "      login: peer\n      t: src"),
            "not list in .rules.",
            25,
            "correlation.aliases.remote",
        ),
        (("      login: peer\n", ""), "no field for rule 'login'", 22, "correlation.aliases.remote"),
    ],
)
def test_aliases_must_name_the_correlated_rules(
    change: tuple[str, str], message: str, line: int, field: str, tmp_path: Path
) -> None:
    # prepare
    path = tmp_path / "aliases.yml"
    path.write_text(ALIASES.replace(*change))
    # execute
    with pytest.raises(RuleError, match=message) as info:
        RuleEngine(load_rules(path))
    # assert
    assert (info.value.line, info.value.field_name) == (line, field)


def test_a_correlation_over_a_correlation_groups_by_its_fields() -> None:
    # prepare: "owned" groups by entity, but the brute-force correlation it counts groups by peer
    rules = parse_rules(
        RULES.replace("rules: [brute, success], group-by: [peer]", "rules: [brute, success], group-by: [entity]")
    )
    # execute
    with pytest.raises(RuleError, match="'entity' is not a group-by field of the correlation 'brute'") as info:
        RuleEngine(rules)
    # assert
    assert info.value.field_name == "correlation.group-by"


GROUP_BY_HOST = """
title: failed
id: f
name: failed
logsource: {product: linux, service: auth}
detection: {sel: {action: login.failed}, condition: sel}
---
title: many failures on one host
id: h
misuse_type: brute_force
correlation:
  type: event_count
  rules: [failed]
  group-by: [sensor]
  timespan: 10m
  condition: {gte: 10}
"""


def _failures(n: int, sensor: dict[str, str] | None = None) -> list[Event]:
    return [
        Event(ts=float(i), entity=f"u{i}", peer=f"10.0.0.{i}", kind="auth", action="login.failed",
              cat=dict(sensor or {}), event_id=f"e{i}")
        for i in range(n)
    ]  # fmt: skip


def test_a_group_by_field_without_a_column_is_an_error_not_one_big_group(tmp_path: Path) -> None:
    # prepare: 12 failures on 12 unrelated hosts; no event has a 'sensor' field
    path = tmp_path / "h.yml"
    path.write_text(GROUP_BY_HOST)
    frame = events_to_frame(_failures(12))
    # execute
    with pytest.raises(RuleError, match="group-by field 'sensor' of rule 'many failures on one host'") as info:
        RuleEngine(load_rules(path), missing_fields="error").run(frame)
    skipping = RuleEngine(load_rules(path))
    alerts = skipping.run(frame)
    # assert: the error names the group-by line; skipping counts the hits and raises no alert
    assert (info.value.line, info.value.field_name) == (14, "correlation.group-by")
    assert alerts == []
    assert skipping.stats.ungrouped == {"h": 12} and "names no column" in skipping.stats.ungrouped_reason["h"]


def test_hits_without_a_group_value_are_counted_not_grouped_together() -> None:
    # prepare: 12 failures without a sensor value, 3 with one
    events = _failures(12) + [
        Event(ts=20.0 + i, entity="x", peer="10.9.9.9", kind="auth", action="login.failed",
              cat={"sensor": "gw1"}, event_id=f"s{i}")
        for i in range(3)
    ]  # fmt: skip
    engine = RuleEngine(parse_rules(GROUP_BY_HOST), missing_fields="error")
    # execute
    alerts = engine.run(events_to_frame(events))
    # assert
    assert alerts == []
    assert engine.stats.ungrouped == {"h": 12}
    assert engine.stats.ungrouped_reason["h"] == "no value for group-by field 'sensor'"


def test_missing_fields_must_be_error_or_skip() -> None:
    with pytest.raises(InvalidParameterError, match="'missing_fields' parameter of RuleEngine must be one of"):
        RuleEngine([], missing_fields="ignore")


def test_a_name_used_by_two_rules_is_an_error() -> None:
    # prepare: two detection rules both called "failed"
    text = RULES.replace("title: success\nid: s\nname: success", "title: success\nid: s\nname: failed")
    # execute / assert
    with pytest.raises(RuleError, match="'failed' already names rule 'failed'") as info:
        RuleEngine(parse_rules(text))
    assert info.value.field_name == "name"
