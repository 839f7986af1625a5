"""Exfiltration checks on the site simulator and on self-made slow-drip and DNS-tunnel traffic."""

from __future__ import annotations

import pandas as pd
import pytest

from misuse.alerts.types import MisuseType
from misuse.errors import InvalidParameterError, NotFittedError, SchemaError
from misuse.exfil import ExfilMonitor, to_alerts
from misuse.exfil.simulate import dns_queries, slow_drip
from misuse.simulate import simulate_site


@pytest.fixture(scope="module")
def site() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Timestamp]:
    s = simulate_site(seed=3, days=3, attacks=["exfiltration"], scale=0.5)
    day0, _ = s.day_bounds(s.params.attack_day)
    flows = s.flows
    return flows[flows["ts"] < day0], flows[flows["ts"] >= day0], s.truth.iloc[0], day0


def test_simulated_exfiltration_is_a_burst_on_the_victim_only(
    site: tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Timestamp],
) -> None:
    train, test, truth, _ = site

    found = ExfilMonitor().fit(train).check(test)

    assert found[["entity", "check", "peer"]].values.tolist() == [[truth["victim_address"], "burst", truth["attacker"]]]
    assert found["window_start"].iloc[0] <= truth["start"] < found["window_end"].iloc[0]


def test_slow_drip_under_the_burst_limit_is_found_over_the_long_window(
    site: tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Timestamp],
) -> None:
    train, test, _, day0 = site
    drip = slow_drip("192.168.1.61", "203.0.113.77", day0, hours=24, total_bytes=12e6, uploads=96, seed=1)

    found = ExfilMonitor().fit(train).check(pd.concat([test, drip], ignore_index=True))

    mine = found[found["entity"] == "192.168.1.61"]
    assert mine["check"].tolist() == ["drip"]
    assert mine["peer"].iloc[0] == "203.0.113.77"
    assert set(mine["evidence"].iloc[0]) <= set(drip["event_id"])


def test_the_same_volume_to_a_known_destination_is_not_a_drip(
    site: tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Timestamp],
) -> None:
    train, test, _, day0 = site
    before = slow_drip("192.168.1.61", "203.0.113.77", day0 - pd.Timedelta("2D"), hours=24, total_bytes=1e5, seed=2)
    drip = slow_drip("192.168.1.61", "203.0.113.77", day0, hours=24, total_bytes=12e6, uploads=96, seed=1)

    mon = ExfilMonitor().fit(pd.concat([train, before], ignore_index=True))
    found = mon.check(pd.concat([test, drip], ignore_index=True))

    assert "192.168.1.61" not in set(found["entity"])


def test_dns_tunnelling_is_found_and_ordinary_lookups_are_not(
    site: tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Timestamp],
) -> None:
    _, _, _, day0 = site
    train = dns_queries("cam", day0 - pd.Timedelta("2D"), 48, seed=1)
    clean = dns_queries("cam", day0, 24, seed=2)
    tunnel = dns_queries("cam", day0, 3, tunnel_domain="t.evil.example", tunnel_per_hour=200, seed=3)

    mon = ExfilMonitor().fit(train)
    quiet = mon.check(clean, update=False)
    found = mon.check(tunnel, update=False)

    assert quiet.empty
    assert set(found["check"]) == {"dns"} and set(found["peer"]) == {"evil.example"}
    assert len(found) == 3


def test_history_carries_over_and_stays_bounded(
    site: tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Timestamp],
) -> None:
    train, test, truth, _ = site
    later = test.copy()
    later["ts"] = later["ts"] + pd.Timedelta("1D")
    mon = ExfilMonitor(rare_windows=1).fit(train)
    mon.check(test)

    again = mon.check(later)
    fresh = ExfilMonitor(rare_windows=1).fit(train).check(later)

    assert again.empty
    assert fresh["peer"].tolist() == [truth["attacker"]]
    k = round(mon.long_window / mon.window)
    pairs = mon.history_.groupby(["entity", "peer"]).ngroups
    assert len(mon.history_) <= pairs + 2 * k * pairs


def test_alerts_explain_findings(site: tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Timestamp]) -> None:
    train, test, truth, _ = site
    found = ExfilMonitor().fit(train).check(test)

    alerts = to_alerts(found)

    attack_ids = set(test.loc[test["label"] == "exfiltration", "event_id"])
    assert [a.misuse_type for a in alerts] == [MisuseType.EXFILTRATION]
    assert set(alerts[0].evidence) <= attack_ids and alerts[0].evidence
    assert {"typical", "actual"} <= set(alerts[0].contributions[0])
    assert alerts[0].entity == truth["victim_address"]


def _uploads(entity: str, peer: str, start: pd.Timestamp, hours: int, per_hour: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_id": [f"{entity}-{peer}-{start.value}-{h}" for h in range(hours)],
            "ts": start + pd.to_timedelta(range(hours), unit="h"),
            "entity": entity,
            "peer": peer,
            "kind": "flow",
            "num.orig_bytes": per_hour,
        }
    )


def test_each_finding_says_which_limit_applied() -> None:
    day = pd.Timestamp("2026-03-04", tz="UTC")
    before, later = day - pd.Timedelta("2D"), day + pd.Timedelta("3h")
    train = pd.concat([_uploads(e, "203.0.113.1", before, 48, b) for e, b in (("busy", 20e6), ("quiet", 1e3))])
    sent = (("busy", 300e6), ("quiet", 2e6), ("stranger", 2e6))
    test = pd.concat([_uploads(e, "198.51.100.9", later, 1, b) for e, b in sent], ignore_index=True)

    found = ExfilMonitor().fit(train).check(test).set_index("entity")

    assert found.loc["busy", "typical"] == "<= 200,000,000 bytes per window (10 x the device's p99)"
    assert found.loc["quiet", "typical"].endswith("(the floor; 10 x the device's p99 is lower)")
    assert found.loc["stranger", "typical"] == (
        "<= 1,000,000 bytes per window (the floor for a device not seen in training)"
    )


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_windows_do_not_depend_on_the_time_resolution(unit: str) -> None:
    day = pd.Timestamp("2026-03-04", tz="UTC")
    train = _uploads("cam", "203.0.113.1", day - pd.Timedelta("2D"), 48, 20e6)
    test = _uploads("cam", "198.51.100.9", day, 3, 300e6)
    as_unit = {"ts": lambda f: f["ts"].dt.as_unit(unit)}

    found = ExfilMonitor().fit(train.assign(**as_unit)).check(test.assign(**as_unit))

    assert found["window_start"].tolist() == [day + pd.Timedelta(hours=h) for h in range(3)]
    assert found["limit"].tolist() == [200e6] * 3


def test_bad_parameters_and_inputs_fail_loudly() -> None:
    with pytest.raises(InvalidParameterError, match="long_window"):
        ExfilMonitor(window=3600, long_window=3600)
    with pytest.raises(InvalidParameterError, match="local_networks"):
        ExfilMonitor(local_networks=("nonsense",))
    with pytest.raises(NotFittedError):
        ExfilMonitor().check(pd.DataFrame({"ts": [], "entity": [], "peer": []}))
    with pytest.raises(SchemaError, match="peer"):
        ExfilMonitor().fit(pd.DataFrame({"ts": [], "entity": []}))
    with pytest.raises(InvalidParameterError):
        slow_drip("a", "b", pd.Timestamp("2024-01-01", tz="UTC"), uploads=0)
