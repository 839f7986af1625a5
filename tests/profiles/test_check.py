"""Profile warnings at work: context-aware impersonation, out-of-spec values, alerts and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from misuse.alerts.model import Alert
from misuse.cli import app
from misuse.errors import InvalidParameterError
from misuse.profiles.check import profile_alerts, refine_types
from misuse.profiles.footprint import context_values
from misuse.profiles.profile import EntityProfile, ProfileBook
from misuse.profiles.warnings import WarningRules
from misuse.store.duck import Store

DAY = pd.Timedelta(days=1)
T0 = pd.Timestamp("2026-03-02", tz="UTC")
HOME = {"cat.client": "HomeApp/2.1", "cat.src_ip": "192.168.1.20"}
BOB = {"cat.client": "HomeApp/2.1 (iOS)", "cat.src_ip": "192.168.1.21"}


def _session(
    who: str, actions: list[str], at: pd.Timestamp, ctx: dict[str, str] = HOME, **num: list[float]
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "ts": [at + pd.Timedelta(seconds=20 * i) for i in range(len(actions))],
            "entity": who,
            "kind": "command",
            "action": actions,
            "peer": "hub",
            "event_id": [f"{who}-{at.value}-{i}" for i in range(len(actions))],
            **ctx,
        }
    )
    for name, values in num.items():
        frame[f"num.{name}"] = values
    return frame


def _history() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    parts = []
    for d in range(10):
        day = T0 + d * DAY
        temps = list(rng.normal(21.5, 0.4, 2))
        parts.append(
            _session("alice", ["disarm", "unlock", "set_temp", "set_temp", "lock", "arm"], day + pd.Timedelta(hours=7),
                     value=[np.nan, np.nan, *temps, np.nan, np.nan])
        )  # fmt: skip
        parts.append(
            _session("bob", ["view_stream", "plug_on", "plug_off", "view_stream"], day + pd.Timedelta(hours=19),
                     BOB)
        )  # fmt: skip
    return pd.concat(parts, ignore_index=True)


@pytest.fixture
def book() -> ProfileBook:
    return ProfileBook().learn(_history())


def test_contexts_are_learned_and_command_values_are_kept_per_command(book: ProfileBook) -> None:
    alice = book["alice"]
    assert alice.footprint.new_contexts(["client:HomeApp/2.1", "net:192.168.1"]) == []
    assert alice.footprint.new_contexts(["client:curl/8"]) == ["client:curl/8"]
    assert "set_temp:value" in alice.numeric and alice.numeric["set_temp:value"].count == 20
    assert EntityProfile.from_dict(alice.to_dict()).footprint.contexts is not None
    assert context_values(pd.DataFrame({"cat.src_ip": ["10.1.2.3", "-"]})) == ["net:10.1.2"]


def test_a_new_client_and_network_make_a_small_divergence_impersonation(book: ProfileBook) -> None:
    odd = _session("alice", ["disarm", "unlock", "view_stream", "view_stream"], T0 + 12 * DAY + pd.Timedelta(hours=7),
                   {"cat.client": "okhttp/4.9", "cat.src_ip": "203.0.113.9"})  # fmt: skip
    same_from_home = odd.assign(**HOME)

    w = WarningRules().assess(book, "alice", odd)
    assert w is not None and w.misuse_type == "impersonation" and "context" in w.views
    assert {d["item"] for d in w.drivers if d["view"] == "context"} == {"client:okhttp/4.9", "net:203.0.113"}
    assert "okhttp/4.9" in w.summary and w.resembles[0][0] == "bob"
    # the same actions from alice's own phone and network are not enough to say someone else acts
    assert WarningRules().assess(book, "alice", same_from_home) is None


def test_rare_sensitive_actions_from_the_own_phone_are_insider_misuse(book: ProfileBook) -> None:
    window = _session("bob", ["view_stream", "disable_camera", "export_history", "delete_recordings"],
                      T0 + 12 * DAY + pd.Timedelta(hours=19), BOB)  # fmt: skip
    w = WarningRules().assess(book, "bob", window)
    assert w is not None and w.misuse_type == "insider_misuse"
    assert {"disable_camera", "export_history", "delete_recordings"} <= {d["item"] for d in w.drivers}


def test_an_out_of_spec_setting_without_malicious_markers_is_inadvertent(book: ProfileBook) -> None:
    window = _session("alice", ["disarm", "unlock", "set_temp", "lock"], T0 + 12 * DAY + pd.Timedelta(hours=7),
                      value=[np.nan, np.nan, 31.5, np.nan])  # fmt: skip
    normal = window.assign(**{"num.value": [np.nan, np.nan, 21.7, np.nan]})

    w = WarningRules().assess(book, "alice", window)
    assert w is not None and w.misuse_type == "inadvertent_misuse" and w.views == ["distribution"]
    d = w.drivers[0]
    assert d["item"] == "set_temp:value" and d["actual"] == 31.5 and 20.5 < d["typical"] < 22.5
    assert WarningRules().assess(book, "alice", normal) is None


def test_sensitive_matches_words_of_an_action_name() -> None:
    rules = WarningRules()
    assert rules.is_sensitive("export_history") and rules.is_sensitive("Firmware.Update")
    assert not rules.is_sensitive("view_stream") and not rules.is_sensitive("format")


def test_profile_alerts_carry_type_drivers_and_evidence(book: ProfileBook) -> None:
    later = T0 + 12 * DAY
    events = pd.concat(
        [
            _session("alice", ["disarm", "unlock", "set_temp", "lock"], later + pd.Timedelta(hours=7),
                     value=[np.nan, np.nan, 31.5, np.nan]),
            _session("bob", ["view_stream", "plug_on", "plug_off"], later + pd.Timedelta(hours=19),
                     BOB),
            _session("carol", ["lock"] * 5, later),  # no profile: not assessed
            _session("alice", ["set_temp"], later + pd.Timedelta(hours=9), value=[40.0]),  # too few events
        ],
        ignore_index=True,
    )  # fmt: skip

    alerts = profile_alerts(book, events)

    assert [(a.entity, a.misuse_type, a.severity) for a in alerts] == [("alice", "inadvertent_misuse", "medium")]
    a = alerts[0]
    assert a.detector == "profile.inadvertent_misuse" and a.window_start == datetime(2026, 3, 14, 7, tzinfo=UTC)
    assert a.contributions[0]["feature"] == "distribution:set_temp:value" and a.contributions[0]["actual"] == 31.5
    set_temp = events[(events["entity"] == "alice") & (events["action"] == "set_temp")]["event_id"].iloc[0]
    assert a.evidence == [set_temp]
    assert profile_alerts(book, events, kinds=("flow",)) == []
    with pytest.raises(InvalidParameterError, match="window"):
        profile_alerts(book, events, window=0.0)


def test_refine_types_retypes_only_undetermined_overlapping_alerts() -> None:
    t = datetime(2026, 3, 5, 9, tzinfo=UTC)

    def alert(entity: str, kind: str, start_min: int, minutes: int, detector: str = "window") -> Alert:
        start = t + pd.Timedelta(minutes=start_min)
        return Alert(entity=entity, window_start=start, window_end=start + pd.Timedelta(minutes=minutes), score=2.0,
                     threshold=1.0, severity="medium", misuse_type=kind, detector=detector, summary="odd")  # fmt: skip

    warning = alert("bob", "insider_misuse", 0, 60, "profile")
    window = [alert("bob", "anomaly", 10, 5), alert("bob", "botnet", 20, 5), alert("bob", "anomaly", 70, 5),
              alert("ann", "anomaly", 10, 5)]  # fmt: skip

    out = refine_types(window, [warning])

    assert [a.misuse_type for a in out] == ["insider_misuse", "botnet", "anomaly", "anomaly"]
    assert "type from the profile check" in out[0].summary and out[0].alert_id != window[0].alert_id


def test_cli_build_until_then_check_since_stores_the_warnings(tmp_path: Path) -> None:
    history = _history()
    later = _session("alice", ["disarm", "unlock", "set_temp", "lock"], T0 + 12 * DAY + pd.Timedelta(hours=7),
                     value=[np.nan, np.nan, 31.5, np.nan])  # fmt: skip
    project = tmp_path / "proj"
    with Store(project) as store:
        store.write_events("site", [pd.concat([history, later], ignore_index=True)], sources=["test"])
    runner = CliRunner()

    built = runner.invoke(app, ["profile", "build", "-d", "site", "-p", str(project), "--until", "2026-03-13"])
    checked = runner.invoke(
        app, ["profile", "check", "-d", "site", "-p", str(project), "--since", "2026-03-13", "--json"]
    )
    listed = runner.invoke(app, ["alerts", "-p", str(project), "--json"])
    bad = runner.invoke(app, ["profile", "check", "-p", str(project), "--since", "yesterday-ish"])

    assert built.exit_code == 0, built.output
    assert checked.exit_code == 0, checked.output
    assert [a["misuse_type"] for a in json.loads(checked.stdout)] == ["inadvertent_misuse"]
    assert [a["misuse_type"] for a in json.loads(listed.stdout)] == ["inadvertent_misuse"]
    assert bad.exit_code == 2 and "--since" in bad.output
