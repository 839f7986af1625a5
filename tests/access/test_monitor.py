"""The stateful login monitor: each finding, its explanation, bounded state, real logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from misuse.access.attempts import login_attempts
from misuse.access.monitor import LoginAttempt, LoginMonitor, network_of
from misuse.alerts.model import Alert
from misuse.alerts.types import MisuseType
from misuse.errors import InvalidParameterError
from misuse.ingest.authlog import AuthLogReader

DAY = 86400.0
T0 = 1_700_000_000.0 - (1_700_000_000.0 % DAY)  # a midnight UTC


def fail(t: float, account: str = "root", source: str = "203.0.113.9", password: str = "", i: int = 0) -> LoginAttempt:
    return LoginAttempt(ts=t, account=account, source=source, success=False, password=password, event_id=f"f{i}-{t}")


def ok(t: float, account: str = "alice", source: str = "192.168.1.20", client: str = "App/1") -> LoginAttempt:
    return LoginAttempt(
        ts=t, account=account, source=source, success=True, failures=0.0, client=client, event_id=f"s{t}"
    )


def detectors(alerts: list[Alert]) -> list[str]:
    return [a.detector.rsplit(".", 1)[-1] for a in alerts]


def test_brute_force_fires_once_per_window_with_evidence_and_counts() -> None:
    mon = LoginMonitor(brute_force_failures=5)

    alerts = mon.process_many(fail(T0 + i, i=i) for i in range(12))

    assert detectors(alerts) == ["brute_force"]
    a = alerts[0]
    assert a.misuse_type == MisuseType.BRUTE_FORCE
    assert a.entity == "203.0.113.9" and a.score == 5.0 and a.threshold == 5.0
    assert len(a.evidence) == 5 and a.contributions[0]["actual"] == 5.0
    assert "5 failed logins" in a.summary


def test_failures_spread_beyond_the_window_are_not_brute_force() -> None:
    mon = LoginMonitor(window=600.0, brute_force_failures=5)

    alerts = mon.process_many(fail(T0 + i * 700.0) for i in range(20))

    assert alerts == []


def test_spraying_and_stuffing_are_told_apart_by_passwords() -> None:
    accounts = [f"u{i}" for i in range(6)]
    spray = LoginMonitor().process_many(fail(T0 + i, a, password="Winter2024!") for i, a in enumerate(accounts))
    stuff = LoginMonitor().process_many(fail(T0 + i, a, password=f"pw{i}") for i, a in enumerate(accounts))
    unknown = LoginMonitor().process_many(fail(T0 + i, a) for i, a in enumerate(accounts))

    assert detectors(spray) == ["password_spraying"]
    assert "Winter2024!" in spray[0].summary
    assert detectors(stuff) == ["credential_stuffing"]
    assert detectors(unknown) == ["password_spraying"] and "not logged" in unknown[0].summary


def test_distributed_brute_force_on_one_account() -> None:
    mon = LoginMonitor(brute_force_failures=6, distributed_sources=3)

    alerts = mon.process_many(fail(T0 + i, "admin", source=f"198.51.100.{i % 4}") for i in range(6))

    assert detectors(alerts) == ["distributed_brute_force"]
    assert alerts[0].entity == "admin"


def test_success_after_failures_is_unauthorized_access_and_not_learned() -> None:
    mon = LoginMonitor(success_after_failures=3)
    steps = [fail(T0 + i, "root", i=i) for i in range(4)] + [ok(T0 + 10, "root", source="203.0.113.9")]

    alerts = mon.process_many(steps)

    assert detectors(alerts) == ["success_after_failures"]
    a = alerts[0]
    assert a.misuse_type == MisuseType.UNAUTHORIZED_ACCESS
    assert a.evidence[-1] == f"s{T0 + 10}" and len(a.evidence) == 5
    assert mon.typical_failures_before_success == 4.0


def test_a_typo_before_a_login_is_not_an_alert() -> None:
    mon = LoginMonitor()

    alerts = mon.process_many([fail(T0, "alice", source="192.168.1.20"), ok(T0 + 5)])

    assert alerts == []


def _habit(mon: LoginMonitor, days: int = 10) -> None:
    mon.learn_many(ok(T0 + d * DAY + 9 * 3600.0) for d in range(days))


def test_unusual_login_needs_two_of_hour_network_client() -> None:
    mon = LoginMonitor(min_history=5)
    _habit(mon)

    usual = mon.process_one(ok(T0 + 20 * DAY + 9 * 3600.0 + 60))
    new_net_only = mon.process_one(ok(T0 + 21 * DAY + 9 * 3600.0, source="198.51.100.7"))
    odd = mon.process_one(ok(T0 + 22 * DAY + 3 * 3600.0, source="203.0.113.50", client="python-requests/2.31"))

    assert usual == [] and new_net_only == []
    assert detectors(odd) == ["unusual_login"]
    a = odd[0]
    assert a.misuse_type == MisuseType.IMPERSONATION and a.severity == "high"
    assert {c["feature"] for c in a.contributions} == {"login_hour_utc", "source_network", "client"}
    assert any(c["typical"] == "App/1" and c["actual"] == "python-requests/2.31" for c in a.contributions)


def test_with_min_unusual_one_each_signal_alone_is_a_low_alert() -> None:
    mon = LoginMonitor(min_history=5, min_unusual=1)
    _habit(mon)

    hour = mon.process_one(ok(T0 + 20 * DAY + 3 * 3600.0))
    net = mon.process_one(ok(T0 + 21 * DAY + 9 * 3600.0, source="198.51.100.7"))
    client = mon.process_one(ok(T0 + 22 * DAY + 9 * 3600.0, client="python-requests/2.31"))

    for alerts, feature in ((hour, "login_hour_utc"), (net, "source_network"), (client, "client")):
        assert detectors(alerts) == ["unusual_login"] and alerts[0].severity == "low"
        assert [c["feature"] for c in alerts[0].contributions] == [feature]


def test_unusual_login_waits_for_history() -> None:
    mon = LoginMonitor(min_history=5)
    _habit(mon, days=3)

    alerts = mon.process_one(ok(T0 + 22 * DAY + 3 * 3600.0, source="203.0.113.50", client="curl/8"))

    assert alerts == []


def test_state_stays_bounded() -> None:
    mon = LoginMonitor(max_entities=50, max_events=8)

    mon.process_many(fail(T0 + i, f"user{i}", source=f"10.{i // 250 % 250}.{i % 250}.1") for i in range(2000))
    mon.process_many(ok(T0 + 3000 + i, f"acct{i}") for i in range(300))

    assert mon.state_size <= 4 * 50
    assert all(len(q) <= 8 for q in mon._by_source.values())


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"window": 0}, "window"), ({"rare_hour": 1.5}, "rare_hour"), ({"min_unusual": 4}, "min_unusual")],
)
def test_bad_parameters_fail_at_once(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(InvalidParameterError, match=name):
        LoginMonitor(**kwargs)  # type: ignore[arg-type]


def test_network_of_groups_addresses() -> None:
    assert network_of("10.1.2.3") == network_of("10.1.2.200") != network_of("10.1.3.1")
    assert network_of("host.example") == "host.example"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 20_000), st.sampled_from(["root", "admin", "alice", ""]),
            st.sampled_from(["1.2.3.4", "5.6.7.8", "", "fe80::1"]), st.booleans(),
            st.sampled_from(["", "pw", "x"]), st.floats(0, 50),
        ),
        max_size=80,
    )
)  # fmt: skip
def test_any_attempt_stream_gives_valid_alerts(rows: list[tuple[float, str, str, bool, str, float]]) -> None:
    mon = LoginMonitor(brute_force_failures=3, spray_accounts=2, min_history=1, max_entities=5, max_events=4)
    attempts = [
        LoginAttempt(ts=T0 + t, account=u, source=s, success=k, password=p, failures=n, event_id=f"e{i}")
        for i, (t, u, s, k, p, n) in enumerate(sorted(rows))
    ]

    alerts = mon.process_many(attempts)

    assert all(a.score >= 0 and a.window_start <= a.window_end and a.summary for a in alerts)
    assert all(set(a.evidence) <= {x.event_id for x in attempts} for a in alerts)
    assert mon.state_size <= 4 * 5


@pytest.mark.realdata
def test_loghub_openssh_brute_force_sources_really_failed_often(shared_data: Path) -> None:
    frame = AuthLogReader(year=2017).read(shared_data / "loghub-auth/OpenSSH/OpenSSH_2k.log")
    att = login_attempts(frame)
    mon = LoginMonitor()

    alerts = mon.process_many(att)

    brute = [
        a for a in alerts if a.detector.endswith("brute_force") and not a.detector.endswith("distributed_brute_force")
    ]
    assert brute
    fails = att[~att["success"]].groupby("source")["failures"].sum()
    assert all(fails[a.entity] >= mon.brute_force_failures for a in brute)
    assert fails.idxmax() in {a.entity for a in alerts}
