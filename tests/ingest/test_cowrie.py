"""CowrieReader: honeypot JSON lines into auth, session, command, file and tunnel events."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misuse.errors import ParseError
from misuse.ingest.base import DeadLetter
from misuse.ingest.cowrie import CowrieReader

T = "2018-05-06T17:44:{:02d}.000000Z"


def ev(eventid: str, second: int, **fields: object) -> dict[str, object]:
    base = {"eventid": "cowrie." + eventid, "timestamp": T.format(second), "session": "s1", "src_ip": "5.6.7.8"}
    return {**base, "sensor": "hp", **fields}


SESSION = [
    ev("session.connect", 0, src_port=40000, dst_port=2222, protocol="ssh"),
    ev("client.version", 1, version="SSH-2.0-Go"),
    ev("login.failed", 2, username="admin", password="admin"),
    ev("login.success", 3, username="root", password="1234"),
    ev("command.input", 4, input="uname -a"),
    ev("command.failed", 5, input="./bot arm7"),
    ev("session.file_download", 6, url="http://x/bot", shasum="ab12"),
    ev("direct-tcpip.request", 7, dst_ip="1.1.1.1", dst_port=80, uuid="u-1"),
    ev("session.closed", 8, duration=8.5),
    ev("command.input", 9, input="ls"),
]


def write(tmp_path: Path, lines: list[str]) -> Path:
    p = tmp_path / "cowrie.json"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_session_maps_to_events(tmp_path: Path) -> None:
    frame = CowrieReader().read(write(tmp_path, [json.dumps(e) for e in SESSION]))

    assert frame["kind"].tolist() == [
        "session",
        "session",
        "auth",
        "auth",
        "command",
        "command",
        "file",
        "tunnel",
        "session",
        "command",
    ]
    assert frame["action"].tolist() == [
        "connect",
        "client.version",
        "login.failed",
        "login.success",
        "uname",
        "./bot",
        "download",
        "direct-tcpip.request",
        "closed",
        "ls",
    ]
    # before login the entity is the source address, after it the user; after close again the address
    ip = "5.6.7.8"
    assert frame["entity"].tolist() == [ip, ip, "admin", "root", "root", "root", "root", "root", "root", ip]
    assert set(frame["peer"]) == {"5.6.7.8"}
    assert frame["cat.password"].iloc[2] == "admin"
    assert frame["cat.client"].iloc[1] == "SSH-2.0-Go"
    assert frame["cat.input"].iloc[4] == "uname -a"
    assert frame["cat.result"].iloc[5] == "failed"
    assert (frame["cat.url"].iloc[6], frame["cat.shasum"].iloc[6]) == ("http://x/bot", "ab12")
    assert (frame["cat.dst"].iloc[7], frame["num.dst_port"].iloc[7]) == ("1.1.1.1", 80.0)
    assert frame["num.duration"].iloc[8] == 8.5
    assert frame["event_id"].tolist()[6:8] == ["s1:7", "u-1"]
    assert frame["ts"].iloc[3].isoformat() == "2018-05-06T17:44:03+00:00"


def test_bad_lines_are_dead_letters(tmp_path: Path) -> None:
    far = {**SESSION[1], "timestamp": "9999-01-01T00:00:00Z"}
    lines = [json.dumps(SESSION[0]), "{not json", json.dumps({"eventid": "other"}), "[1, 2]", json.dumps(far)]
    lines.append(json.dumps(SESSION[2]))
    dead = DeadLetter()

    frame = CowrieReader().read(write(tmp_path, lines), dead=dead)

    assert frame["source"].tolist() == ["cowrie.json:1", "cowrie.json:6"]
    assert [s["line"] for s in dead.samples] == [2, 3, 4, 5]


@pytest.mark.parametrize("content", [b"", b"\n \n", b'{"a": 1}\n' * 25, b"hello\n"])
def test_wrong_files_raise_parse_error(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "c.json"
    p.write_bytes(content)

    with pytest.raises(ParseError, match=r"c\.json"):
        CowrieReader().read(p)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), valid_first=st.booleans())
def test_any_bytes_give_frames_or_parse_error(tmp_path: Path, data: bytes, valid_first: bool) -> None:
    p = tmp_path / "fuzz.json"
    p.write_bytes((json.dumps(SESSION[0]).encode() + b"\n" if valid_first else b"") + data)

    try:
        frames = list(CowrieReader().batches(p, dead=DeadLetter()))
    except ParseError as exc:
        assert "fuzz.json" in str(exc)
    else:
        assert sum(len(f) for f in frames) >= int(valid_first)


@pytest.mark.realdata
def test_one_day_of_cowrie_counts_eventids(shared_data: Path) -> None:
    path = shared_data / "cowrie-2018/json/cowrie.json.2018-05-06"
    expected = collections.Counter(json.loads(line)["eventid"] for line in path.read_text().splitlines())
    dead = DeadLetter()

    frame = CowrieReader().read(path, dead=dead)

    assert dead.count == 0
    assert frame["cat.eventid"].value_counts().to_dict() == dict(expected)
    logins = frame[frame["kind"] == "auth"]
    assert len(logins) == expected["cowrie.login.failed"] + expected["cowrie.login.success"]
    assert logins["cat.password"].notna().all()
    assert (frame["kind"] == "command").sum() == expected["cowrie.command.input"] + expected["cowrie.command.failed"]
