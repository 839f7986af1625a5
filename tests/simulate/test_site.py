"""The generated site: determinism, clean days, attacks against their ground truth, schema."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misuse.alerts.types import MisuseType
from misuse.errors import InvalidParameterError
from misuse.events import BASE_COLUMNS, normalize_frame
from misuse.simulate import ATTACKS, TRUTH_COLUMNS, SimulatedSite, simulate_site

FRAMES = ("flows", "auth", "commands")


@pytest.fixture
def site(default_site: SimulatedSite) -> SimulatedSite:
    return default_site


def _all_events(site: SimulatedSite) -> pd.DataFrame:
    return site.events()


def test_default_site_has_the_documented_size(site: SimulatedSite) -> None:
    assert 30_000 <= len(site.flows) <= 80_000
    assert 500 <= len(site.auth) + len(site.commands) <= 5_000
    assert site.params.attack_day == site.params.days - 1 == 3


def test_same_seed_same_frames() -> None:
    a = simulate_site(seed=11, days=2, scale=0.3)
    b = simulate_site(seed=11, days=2, scale=0.3)
    for name in (*FRAMES, "truth", "event_attacks"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))


def test_different_seed_different_site() -> None:
    a = simulate_site(seed=11, days=2, scale=0.3)
    b = simulate_site(seed=12, days=2, scale=0.3)
    assert not a.flows["event_id"].equals(b.flows["event_id"])
    assert not a.truth["start"].equals(b.truth["start"])


@pytest.mark.parametrize(("days", "attack_day"), [(4, None), (3, 1), (2, 0)])
def test_only_the_attack_day_holds_malicious_events(days: int, attack_day: int | None) -> None:
    site = simulate_site(seed=5, days=days, attack_day=attack_day, scale=0.3)
    events = _all_events(site)
    lo, hi = site.day_bounds(site.params.attack_day)
    outside = (events["ts"] < lo) | (events["ts"] >= hi)
    assert outside.any()
    assert (events.loc[outside, "label"] == "benign").all()
    assert (events.loc[~outside, "label"] != "benign").any()


def test_every_attack_is_in_truth_and_labelled_within_its_interval(site: SimulatedSite) -> None:
    events = _all_events(site)
    truth = site.truth
    assert sorted(truth["type"]) == sorted(ATTACKS)
    assert list(truth.columns) == list(TRUTH_COLUMNS)
    by_id = site.event_attacks.set_index("event_id")["attack_id"]
    for row in truth.itertuples(index=False):
        ids = by_id.index[by_id == row.attack_id]
        mine = events.loc[events["event_id"].isin(ids)]
        assert len(mine) == row.n_events > 0
        assert (mine["label"] == row.type).all()
        assert (mine["ts"] >= row.start).all() and (mine["ts"] <= row.end).all()
        assert pd.Timedelta(minutes=1) <= row.end - row.start <= pd.Timedelta(hours=1, minutes=15)
    malicious = events.loc[events["label"] != "benign"]
    assert set(malicious["event_id"]) == set(site.event_attacks["event_id"])


def test_incidents_do_not_overlap(site: SimulatedSite) -> None:
    t = site.truth.sort_values("start")
    assert (t["start"].iloc[1:].to_numpy() > t["end"].iloc[:-1].to_numpy()).all()


def test_labels_are_misuse_types(site: SimulatedSite) -> None:
    allowed = {"benign"} | {m.value for m in MisuseType}
    for name in FRAMES:
        assert set(getattr(site, name)["label"]) <= allowed


@pytest.mark.parametrize("name", FRAMES)
def test_frames_are_in_the_event_model(site: SimulatedSite, name: str) -> None:
    frame = getattr(site, name)
    again = normalize_frame(frame)
    pd.testing.assert_frame_equal(again, frame)
    assert list(frame.columns[: len(BASE_COLUMNS)]) == list(BASE_COLUMNS)
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert frame["event_id"].is_unique
    assert frame["ts"].is_monotonic_increasing


def test_requested_subset_and_clean_site() -> None:
    only = simulate_site(seed=3, days=2, attacks=["exfiltration"], scale=0.3)
    clean = simulate_site(seed=3, days=2, attacks=[], scale=0.3)
    assert list(only.truth["type"]) == ["exfiltration"]
    assert set(only.flows["label"]) == {"benign", "exfiltration"}
    assert clean.truth.empty
    assert (clean.events()["label"] == "benign").all()


def test_botnet_looks_like_mirai(site: SimulatedSite) -> None:
    row = site.truth.loc[site.truth["type"] == "botnet"].iloc[0]
    bot = site.flows.loc[(site.flows["label"] == "botnet") & (site.flows["entity"] == row.victim_address)]
    scan = bot.loc[bot["num.dst_port"].isin([23, 2323]) & bot["cat.conn_state"].isin(["S0", "REJ"])]
    assert scan["peer"].nunique() > 300
    cnc_ip = row.attacker.split(";")[1]
    beats = bot.loc[bot["peer"] == cnc_ip, "ts"].diff().dt.total_seconds().dropna()
    assert 50 < beats.median() < 70
    flood = bot.loc[bot["cat.proto"] == "udp"]
    assert flood["peer"].nunique() == 1 and len(flood) > 1000
    infection = site.flows.loc[(site.flows["label"] == "botnet") & (site.flows["peer"] == row.victim_address)]
    assert set(infection["num.dst_port"]) == {23.0}


def test_brute_force_fails_many_times_then_succeeds_once(site: SimulatedSite) -> None:
    row = site.truth.loc[site.truth["type"] == "brute_force"].iloc[0]
    mine = site.auth.loc[site.auth["peer"] == row.attacker]
    assert (mine["label"] == "brute_force").all()
    assert (mine["action"] == "login.failed").sum() > 50
    assert (mine["action"] == "login.success").sum() == 1
    assert mine.loc[mine["action"] == "login.success", "ts"].iloc[0] == mine["ts"].max()


def test_exfiltration_goes_to_a_never_seen_peer_with_unusual_volume(site: SimulatedSite) -> None:
    row = site.truth.loc[site.truth["type"] == "exfiltration"].iloc[0]
    f = site.flows
    before = f.loc[f["ts"] < row.start]
    assert row.attacker not in set(before["peer"])
    dev_before = before.loc[before["entity"] == row.victim_address, "num.orig_bytes"]
    exfil = f.loc[(f["label"] == "exfiltration") & (f["peer"] == row.attacker), "num.orig_bytes"]
    assert exfil.median() > 100 * dev_before.median()


def test_impersonation_uses_a_new_address_and_client(site: SimulatedSite) -> None:
    row = site.truth.loc[site.truth["type"] == "impersonation"].iloc[0]
    c = site.commands
    owner = c.loc[(c["entity"] == row.victim) & (c["label"] == "benign")]
    fake = c.loc[c["label"] == "impersonation"]
    assert set(fake["entity"]) == {row.victim}
    assert set(fake["cat.src_ip"]).isdisjoint(owner["cat.src_ip"])
    assert set(fake["cat.client"]).isdisjoint(owner["cat.client"])


def test_people_follow_daily_rhythms(site: SimulatedSite) -> None:
    c = site.commands.loc[site.commands["label"] == "benign"]
    hours = c["ts"].dt.hour
    assert (hours.between(17, 22)).sum() > 5 * (hours.between(1, 4)).sum()
    mqtt = site.flows.loc[(site.flows["entity"] == "192.168.1.51") & (site.flows["action"] == "mqtt")]
    gaps = mqtt["ts"].diff().dt.total_seconds().dropna()
    assert 55 < gaps.median() < 65


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"days": 0}, "'days'"),
        ({"days": 2, "attack_day": 2}, "'attack_day'"),
        ({"attacks": ["ddos_from_mars"]}, "ddos_from_mars"),
        ({"attacks": "botnet"}, "'attacks'"),
        ({"scale": 0.0}, "'scale'"),
        ({"start": "March 2nd"}, "'start'"),
        ({"seed": -1}, "'seed'"),
    ],
)
def test_bad_parameters_fail_at_once(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidParameterError, match=needle):
        simulate_site(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), days=st.integers(1, 3))
def test_truth_and_labels_agree_for_any_seed(seed: int, days: int) -> None:
    site = simulate_site(seed=seed, days=days, scale=0.1)
    events = site.events()
    labelled = events.loc[events["label"] != "benign"]
    assert set(labelled["label"]) == set(site.truth["type"])
    lo, hi = site.truth["start"].min(), site.truth["end"].max()
    assert labelled["ts"].between(lo, hi).all()
    assert np.isfinite(site.flows["num.orig_ip_bytes"]).all()


def test_weekends_have_their_own_rhythm() -> None:
    weekday = simulate_site(seed=9, days=2, start="2026-03-02", attacks=[], scale=0.5)  # Monday
    weekend = simulate_site(seed=9, days=2, start="2026-03-07", attacks=[], scale=0.5)  # Saturday

    def midday_share(site: SimulatedSite) -> float:
        hours = site.commands["ts"].dt.hour
        return float(hours.between(9, 15).mean())

    assert midday_share(weekend) > 1.5 * midday_share(weekday)


def test_away_from_home_commands_come_from_outside_on_clean_days(site: SimulatedSite) -> None:
    benign = site.commands.loc[site.commands["label"] == "benign", "cat.src_ip"]
    assert (~benign.str.startswith("192.168.")).any()


def test_every_malicious_event_names_an_entity_of_its_incident(site: SimulatedSite) -> None:
    events = site.events().merge(site.event_attacks, on="event_id")
    entities = site.truth.set_index("attack_id")["entities"].str.split(";")
    for attack_id, grp in events.groupby("attack_id"):
        known = set(entities[attack_id])
        assert (grp["entity"].isin(known) | grp["peer"].isin(known)).all(), attack_id
