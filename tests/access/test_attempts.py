"""Login attempts from auth logs, Cowrie, Zeek ssh.log and app sessions."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from misuse.access.attempts import ATTEMPT_COLUMNS, api_logins, login_attempts
from misuse.access.monitor import LoginMonitor
from misuse.errors import InvalidParameterError, SchemaError
from misuse.events import Event, events_to_frame
from misuse.ingest.authlog import AuthLogReader
from misuse.ingest.cowrie import CowrieReader
from misuse.ingest.native import EventJsonReader

AUTH = """\
Dec 10 06:55:46 srv sshd[1]: Invalid user admin from 5.6.7.8
Dec 10 06:55:46 srv sshd[1]: Failed password for invalid user admin from 5.6.7.8 port 1000 ssh2
Dec 10 06:55:48 srv sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 \
tty=ssh ruser= rhost=5.6.7.8  user=root
Dec 10 06:55:49 srv sshd[1]: message repeated 3 times: [ Failed password for root from 5.6.7.8 port 1001 ssh2]
Dec 10 07:00:00 srv sshd[2]: Accepted publickey for alice from 10.0.0.2 port 5000 ssh2
"""


def test_auth_log_counts_each_attempt_once(tmp_path: Path) -> None:
    p = tmp_path / "auth.log"
    p.write_text(AUTH)
    frame = AuthLogReader(year=2020).read(p)

    att = login_attempts(frame)

    assert list(att.columns) == list(ATTEMPT_COLUMNS)
    assert att["failures"].sum() == 4.0  # 1 invalid-user failure + 3 repeated; invalid_user and PAM echo not counted
    ok = att[att["success"]]
    assert ok[["account", "source"]].values.tolist() == [["alice", "10.0.0.2"]]
    assert att["ts"].is_monotonic_increasing


def test_pam_failures_count_for_a_service_without_failed_password(tmp_path: Path) -> None:
    p = tmp_path / "auth.log"
    lines = [
        f"Jun 14 15:16:0{i} combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0 euid=0 "
        f"tty=NODEVssh ruser= rhost=218.188.2.4  user=root"
        for i in range(4)
    ]
    p.write_text("\n".join(lines) + "\n")

    att = login_attempts(AuthLogReader(year=2005).read(p))

    assert len(att) == 4
    assert set(att["source"]) == {"218.188.2.4"}
    assert not att["success"].any()


def test_cowrie_attempts_carry_password_and_session_client(tmp_path: Path) -> None:
    base = {"session": "s1", "src_ip": "9.9.9.9", "sensor": "h"}
    rows = [
        {"eventid": "cowrie.session.connect", "timestamp": "2018-05-06T17:44:05Z", "src_port": 1, "dst_port": 22},
        {"eventid": "cowrie.client.version", "timestamp": "2018-05-06T17:44:06Z", "version": "SSH-2.0-Go"},
        {"eventid": "cowrie.login.failed", "timestamp": "2018-05-06T17:44:07Z", "username": "root", "password": "x"},
        {"eventid": "cowrie.login.success", "timestamp": "2018-05-06T17:44:08Z", "username": "root", "password": "y"},
    ]
    p = tmp_path / "cowrie.json"
    p.write_text("".join(json.dumps(base | r) + "\n" for r in rows))

    att = login_attempts(CowrieReader().read(p))

    assert att["success"].tolist() == [False, True]
    assert att["password"].tolist() == ["x", "y"]
    assert set(att["client"]) == {"SSH-2.0-Go"}
    assert set(att["channel"]) == {"cowrie"}


def test_zeek_ssh_attempts_expand_auth_attempts() -> None:
    frame = events_to_frame(
        [
            Event(ts=1.0, entity="6.6.6.6", peer="10.0.0.1", kind="ssh", action="auth.failed",
                  num={"auth_attempts": 4.0}, cat={"client": "SSH-2.0-libssh"}, event_id="C1"),
            Event(ts=2.0, entity="6.6.6.6", peer="10.0.0.1", kind="ssh", action="auth.success",
                  num={"auth_attempts": 2.0}, cat={"client": "SSH-2.0-libssh"}, event_id="C2"),
        ]
    )  # fmt: skip

    att = login_attempts(frame)

    assert att["failures"].tolist() == [4.0, 1.0]
    assert att["account"].tolist() == ["host:10.0.0.1"] * 2
    assert att["success"].tolist() == [False, True]


def test_api_logins_start_a_session_after_a_gap_or_a_new_client() -> None:
    def cmd(t: float, client: str, ip: str = "192.168.1.20") -> Event:
        return Event(ts=t, entity="alice", peer="lock", kind="command", action="unlock",
                     cat={"client": client, "src_ip": ip}, event_id=f"c{t:.0f}")  # fmt: skip

    frame = events_to_frame([cmd(0, "App/1"), cmd(60, "App/1"), cmd(4000, "App/1"), cmd(4010, "curl/8")])

    logins = api_logins(frame, session_gap=1800.0)

    assert logins["event_id"].tolist() == ["c0", "c4000", "c4010"]
    assert logins["success"].all()
    assert logins["client"].tolist() == ["App/1", "App/1", "curl/8"]


def test_other_events_give_no_attempts_and_bad_input_fails_loudly() -> None:
    frame = events_to_frame([Event(ts=1.0, entity="cam", kind="flow", action="tcp")])

    assert login_attempts(frame).empty
    assert api_logins(frame).empty
    with pytest.raises(SchemaError, match="lacks column"):
        login_attempts(pd.DataFrame({"ts": [1.0]}))
    with pytest.raises(InvalidParameterError, match="session_gap"):
        api_logins(frame, session_gap=0)


def _api_login(day: int, agent: str, ip: str = "192.168.1.20", **extra: str) -> dict[str, object]:
    return {
        "ts": f"2026-03-{day:02d}T09:00:00Z",
        "entity": "alice",
        "peer": ip,
        "kind": "auth",
        "action": "login.success",
        "cat.user_agent": agent,
        **extra,
    }


def test_event_jsonl_logins_keep_their_client_and_service(tmp_path: Path) -> None:
    rows = [
        _api_login(1, "App/1"),
        {**_api_login(2, "", **{"cat.service": "api"}), "cat.client_id": "lock-app-7"},
        {"ts": 3.0, "entity": "bob", "kind": "auth", "action": "login.failed", "cat.src_ip": "6.6.6.6"},
    ]
    p = tmp_path / "logins.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))

    att = login_attempts(EventJsonReader().read(p)).sort_values("event_id")

    assert att["client"].tolist() == ["App/1", "lock-app-7", ""]
    assert att["channel"].tolist() == ["auth", "api", "auth"]
    assert att["source"].tolist() == ["192.168.1.20", "192.168.1.20", "6.6.6.6"]


def test_a_new_user_agent_on_event_jsonl_logins_is_an_unusual_login(tmp_path: Path) -> None:
    rows = [_api_login(d, "LockApp/2.1 (iOS)") for d in range(1, 8)] + [_api_login(8, "python-requests/2.31")]
    p = tmp_path / "logins.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))

    alerts = LoginMonitor(min_unusual=1).process_many(login_attempts(EventJsonReader().read(p)))

    assert [a.detector for a in alerts] == ["access.login.unusual_login"]
    assert "new client 'python-requests/2.31' (usually 'LockApp/2.1 (iOS)')" in alerts[0].summary
    assert alerts[0].evidence == ["logins.jsonl:8"]
