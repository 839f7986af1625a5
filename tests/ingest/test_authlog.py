"""AuthLogReader: syslog auth lines into auth events."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misuse.errors import InvalidParameterError, ParseError
from misuse.ingest.authlog import AuthLogReader
from misuse.ingest.base import DeadLetter

LINES = [
    "Dec 10 06:55:46 LabSZ sshd[24200]: reverse mapping checking getaddrinfo for ns.x.com [173.234.31.186]"
    " failed - POSSIBLE BREAK-IN ATTEMPT!",
    "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186",
    "Dec 10 06:55:48 LabSZ sshd[24200]: Failed password for invalid user webmaster from 173.234.31.186 port 38926 ssh2",
    "Dec 10 07:07:38 LabSZ sshd[24206]: Failed password for root from 52.80.34.196 port 36060 ssh2",
    "Dec 10 07:08:28 LabSZ sshd[24208]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0"
    " tty=ssh ruser= rhost=112.95.230.3  user=root",
    "Dec 10 09:32:20 LabSZ sshd[24680]: Accepted password for fztu from 119.137.62.142 port 49116 ssh2",
    "Dec 10 09:32:20 LabSZ sshd[24680]: pam_unix(sshd:session): session opened for user fztu by (uid=0)",
    "Dec 10 09:32:21 LabSZ sshd[24680]: Received disconnect from 119.137.62.142: 11: disconnected by user",
    "Dec 10 09:32:22 LabSZ sshd[24680]: pam_unix(sshd:session): session closed for user fztu",
    "Jan  1 00:00:01 LabSZ sshd[1]: Connection closed by 1.2.3.4 [preauth]",
    "Jan  1 00:00:02 host su[77]: (to root) alice on pts/0",
    "Jan  1 00:00:03 host sshd[78]: Server listening on 0.0.0.0 port 22.",
]


def write(tmp_path: Path, lines: list[str], name: str = "auth.log") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_auth_lines_map_to_the_auth_convention(tmp_path: Path) -> None:
    frame = AuthLogReader(year=2016).read(write(tmp_path, LINES))

    assert frame["action"].tolist() == [
        "break_in",
        "login.invalid_user",
        "login.failed",
        "login.failed",
        "pam.auth_failure",
        "login.success",
        "session.open",
        "disconnect",
        "session.close",
        "connection.closed",
        "su",
        "other",
    ]
    assert frame["entity"].tolist()[:6] == ["unknown", "webmaster", "webmaster", "root", "root", "fztu"]
    assert frame["peer"].tolist()[:6] == [
        "173.234.31.186",
        "173.234.31.186",
        "173.234.31.186",
        "52.80.34.196",
        "112.95.230.3",
        "119.137.62.142",
    ]
    assert set(frame["kind"]) == {"auth"}
    assert frame["num.src_port"].iloc[3] == 36060.0
    assert frame["num.pid"].iloc[3] == 24206.0
    assert frame["cat.method"].iloc[5] == "password"
    assert frame["cat.host"].iloc[0] == "LabSZ"
    assert frame["cat.service"].iloc[10] == "su"
    assert frame["cat.by"].iloc[10] == "alice"
    assert frame["cat.message"].iloc[11] == "Server listening on 0.0.0.0 port 22."
    assert frame["source"].iloc[1] == "auth.log:2"


def test_year_rolls_over_and_timezone_applies(tmp_path: Path) -> None:
    frame = AuthLogReader(year=2016, tz="America/New_York").read(write(tmp_path, LINES))

    assert frame["ts"].iloc[0].isoformat() == "2016-12-10T11:55:46+00:00"
    assert frame["ts"].iloc[9].isoformat() == "2017-01-01T05:00:01+00:00"


def test_iso_timestamps_and_repeats(tmp_path: Path) -> None:
    lines = [
        "2024-03-01T10:00:00.123+00:00 gw sshd[9]: message repeated 3 times: [ Failed password for root from"
        " 9.9.9.9 port 22 ssh2]"
    ]

    frame = AuthLogReader().read(write(tmp_path, lines))

    assert abs(frame["ts"].iloc[0] - pd.Timestamp("2024-03-01T10:00:00.123Z")) < pd.Timedelta("1us")
    assert (frame["action"].iloc[0], frame["num.repeat"].iloc[0], frame["peer"].iloc[0]) == (
        "login.failed",
        3.0,
        "9.9.9.9",
    )


def test_lines_without_header_are_dead_letters(tmp_path: Path) -> None:
    p = write(tmp_path, [LINES[3], "garbage \x00 line", "", LINES[5]])
    dead = DeadLetter()

    frame = AuthLogReader(year=2016).read(p, dead=dead)

    assert len(frame) == 2
    assert frame["source"].tolist() == ["auth.log:1", "auth.log:4"]
    assert (dead.count, dead.samples[0]["line"]) == (1, 2)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"just some text\n" * 30, b"only one odd line\n"])
def test_wrong_files_raise_parse_error(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "x.log"
    p.write_bytes(content)

    with pytest.raises(ParseError, match=r"x\.log"):
        AuthLogReader(year=2016).read(p)


def test_bad_parameters_fail_at_once() -> None:
    with pytest.raises(InvalidParameterError, match="'tz'"):
        AuthLogReader(tz="Mars/Olympus")
    with pytest.raises(InvalidParameterError, match="'year'"):
        AuthLogReader(year=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), valid_first=st.booleans())
def test_any_bytes_give_frames_or_parse_error(tmp_path: Path, data: bytes, valid_first: bool) -> None:
    p = tmp_path / "fuzz.log"
    p.write_bytes((LINES[3].encode() + b"\n" if valid_first else b"") + data)

    try:
        frames = list(AuthLogReader(year=2016).batches(p, dead=DeadLetter()))
    except ParseError as exc:
        assert "fuzz.log" in str(exc)
    else:
        assert all(set(f["kind"]) == {"auth"} for f in frames)


# Expected action for each loghub EventId (templates in *_templates.csv).
OPENSSH_EVENTS = {
    "E1": "login.success",
    "E2": "connection.closed",
    "E3": "connection.no_ident",
    "E4": "disconnect",
    "E5": "disconnect",
    "E6": "disconnect",
    "E7": "disconnect",
    "E8": "login.failed",
    "E9": "login.failed",
    "E10": "login.failed",
    "E11": "connection.reset",
    "E12": "userauth.invalid_user",
    "E13": "login.invalid_user",
    "E14": "login.failed",
    "E15": "pam.auth_failure",
    "E16": "pam.auth_failure",
    "E17": "pam.auth_failure",
    "E18": "pam.max_retries",
    "E19": "pam.auth_failure",
    "E20": "pam.auth_failure",
    "E21": "pam.user_unknown",
    "E22": "session.close",
    "E23": "session.open",
    "E24": "disconnect",
    "E25": "disconnect",
    "E26": "disconnect",
    "E27": "break_in",
}
LINUX_EVENTS = {
    "E9": "login.success",
    "E13": "login.failed",
    "E14": "login.failed",
    "E15": "pam.auth_failure",
    "E16": "pam.auth_failure",
    "E17": "pam.auth_failure",
    "E18": "pam.auth_failure",
    "E19": "pam.auth_failure",
    "E27": "pam.user_unknown",
    "E29": "connection.open",
    "E91": "login.success",
    "E101": "session.close",
    "E102": "session.open",
    "E103": "session.open",
    "E116": "connection.reset",
}


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("system", "year", "expected"), [("OpenSSH", 2016, OPENSSH_EVENTS), ("Linux", 2005, LINUX_EVENTS)]
)
def test_loghub_event_ids(shared_data: Path, system: str, year: int, expected: dict[str, str]) -> None:
    folder = shared_data / "loghub-auth" / system
    truth = pd.read_csv(folder / f"{system}_2k.log_structured.csv")
    dead = DeadLetter()

    frame = AuthLogReader(year=year).read(folder / f"{system}_2k.log", dead=dead)

    assert (len(frame), dead.count) == (2000, 0)
    by_line = dict(zip(frame["source"].str.split(":").str[1].astype(int), frame["action"], strict=True))
    got = truth["LineId"].map(by_line)
    wanted = truth["EventId"].map(expected).fillna("other")
    mismatches = truth.loc[got != wanted, ["LineId", "EventId", "Content"]]
    assert mismatches.empty, mismatches.head().to_string()
