"""The engine: batches and streams give the same correlation alerts; state stays bounded."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from misuse.events import Event, events_to_frame
from misuse.rules.engine import RuleEngine
from misuse.rules.model import RuleError, parse_rules

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
