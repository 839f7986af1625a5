"""Every text reader on any time stamp: a time the event model holds is kept, a time outside
:data:`~misuse.events.TS_LIMIT` (or one that does not exist) is a bad record naming file and line,
and the good line beside it is kept. Random bytes rarely make a well-formed record with a far-off
time, so these properties draw the time itself.

pcap and pcapng are not here: their times are 32-bit seconds or 64-bit nanoseconds, always inside
the range.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misuse.errors import InvalidParameterError
from misuse.events import TS_LIMIT, ts_ok
from misuse.ingest.authlog import AuthLogReader
from misuse.ingest.base import DeadLetter, Reader
from misuse.ingest.cowrie import CowrieReader
from misuse.ingest.native import EventJsonReader
from misuse.ingest.tabular import TabularReader
from misuse.ingest.zeek import ZeekReader

GOOD_TS = 1_600_000_000
GOOD_ISO = "2020-09-13T12:26:40Z"
#: epoch seconds of every size, the edges of the range among them
EPOCHS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(10**20), 10**20),
    st.sampled_from([TS_LIMIT, -TS_LIMIT, TS_LIMIT - 1, 9.3e9, 1e300, -1e300, 2**63]),
)
#: ISO-8601 times of any year 1..9999 (the event model holds 1677..2262)
ISO_TIMES = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC))


def _iso(stamp: datetime) -> str:
    return stamp.isoformat().replace("+00:00", "Z")


def _read(reader: Reader, path: Path, text: str) -> tuple[int, DeadLetter]:
    path.write_text(text)
    dead = DeadLetter()
    rows = sum(len(frame) for frame in reader.batches(path, dead=dead))
    return rows, dead


def _assert_kept_or_set_aside(rows: int, dead: DeadLetter, in_range: bool, name: str) -> None:
    assert rows == (2 if in_range else 1)
    assert dead.count == (0 if in_range else 1)
    if not in_range:
        assert name in str(dead.samples[0]["source"]) and dead.samples[0]["line"] is not None


def _events_line(ts: object) -> str:
    return json.dumps({"ts": ts, "entity": "cam"})


def _zeek_json_line(ts: object) -> str:
    return json.dumps({"ts": ts, "uid": "C1", "id.orig_h": "10.0.0.1", "id.resp_h": "10.0.0.2"})


def _cowrie_line(ts: object) -> str:
    return json.dumps({"eventid": "cowrie.session.connect", "timestamp": ts, "src_ip": "1.2.3.4", "session": "s1"})


JSON_READERS: dict[str, tuple[Callable[[], Reader], Callable[[object], str]]] = {
    "events-jsonl": (EventJsonReader, _events_line),
    "zeek-json": (ZeekReader, _zeek_json_line),
    "cowrie": (CowrieReader, _cowrie_line),
}
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("fmt", ["events-jsonl", "zeek-json", "cowrie"])
@SETTINGS
@given(stamp=ISO_TIMES)
def test_json_readers_keep_or_set_aside_any_iso_time(tmp_path: Path, fmt: str, stamp: datetime) -> None:
    make, line = JSON_READERS[fmt]
    text = line(_iso(stamp)) + "\n" + line(GOOD_ISO) + "\n"

    rows, dead = _read(make(), tmp_path / "times.json", text)

    _assert_kept_or_set_aside(rows, dead, ts_ok(stamp.timestamp()), "times.json")


@pytest.mark.parametrize("fmt", ["events-jsonl", "zeek-json", "cowrie"])
@SETTINGS
@given(ts=EPOCHS)
def test_json_readers_keep_or_set_aside_any_epoch_number(tmp_path: Path, fmt: str, ts: float) -> None:
    make, line = JSON_READERS[fmt]
    text = line(ts) + "\n" + line(GOOD_TS) + "\n"

    rows, dead = _read(make(), tmp_path / "times.json", text)

    _assert_kept_or_set_aside(rows, dead, ts_ok(float(ts)), "times.json")


@SETTINGS
@given(ts=EPOCHS)
def test_zeek_tsv_keeps_or_sets_aside_any_epoch_number(tmp_path: Path, ts: float) -> None:
    head = "#separator \\x09\n#fields\tts\tuid\tid.orig_h\tid.resp_h\n#types\ttime\tstring\taddr\taddr\n"
    text = head + f"{ts!r}\tC1\t10.0.0.1\t10.0.0.2\n{GOOD_TS}\tC2\t10.0.0.1\t10.0.0.2\n"

    rows, dead = _read(ZeekReader(), tmp_path / "conn.log", text)

    _assert_kept_or_set_aside(rows, dead, ts_ok(float(ts)), "conn.log")


@SETTINGS
@given(ts=EPOCHS)
def test_csv_epoch_column_keeps_or_sets_aside_any_number(tmp_path: Path, ts: float) -> None:
    reader = TabularReader({"ts": {"column": "t", "epoch": "s"}, "entity": "e"})

    rows, dead = _read(reader, tmp_path / "times.csv", f"t,e\n{ts!r},a\n{GOOD_TS},b\n")

    _assert_kept_or_set_aside(rows, dead, ts_ok(float(ts)), "times.csv")


@pytest.mark.parametrize("fmt", [None, "%Y-%m-%dT%H:%M:%S%z"])
@SETTINGS
@given(stamp=ISO_TIMES.map(lambda d: d.replace(microsecond=0)))
def test_csv_time_column_keeps_or_sets_aside_any_iso_time(tmp_path: Path, fmt: str | None, stamp: datetime) -> None:
    reader = TabularReader({"ts": {"column": "t", **({"format": fmt} if fmt else {})}, "entity": "e"})

    rows, dead = _read(reader, tmp_path / "times.csv", f"t,e\n{stamp.isoformat()},a\n{GOOD_ISO},b\n")

    _assert_kept_or_set_aside(rows, dead, ts_ok(stamp.timestamp()), "times.csv")


def _auth_line(stamp: str) -> str:
    return f"{stamp} gw sshd[7]: Accepted password for root from 1.2.3.4 port 4242 ssh2"


@SETTINGS
@given(stamp=ISO_TIMES)
def test_authlog_keeps_or_sets_aside_any_iso_time(tmp_path: Path, stamp: datetime) -> None:
    text = _auth_line(_iso(stamp)) + "\n" + _auth_line(GOOD_ISO) + "\n"

    rows, dead = _read(AuthLogReader(), tmp_path / "auth.log", text)

    _assert_kept_or_set_aside(rows, dead, ts_ok(stamp.timestamp()), "auth.log")


@SETTINGS
@given(year=st.integers(0, 9999), month=st.integers(0, 19), day=st.integers(0, 39))
def test_authlog_sets_aside_dates_that_do_not_exist(tmp_path: Path, year: int, month: int, day: int) -> None:
    stamp = f"{year:04d}-{month:02d}-{day:02d}T10:00:00Z"
    try:
        in_range = ts_ok(datetime.fromisoformat(stamp).timestamp())
    except ValueError:
        in_range = False
    text = _auth_line(stamp) + "\n" + _auth_line(GOOD_ISO) + "\n"

    rows, dead = _read(AuthLogReader(), tmp_path / "auth.log", text)

    _assert_kept_or_set_aside(rows, dead, in_range, "auth.log")


def test_authlog_refuses_a_year_beyond_the_range_at_once() -> None:
    with pytest.raises(InvalidParameterError, match=r"'year' parameter .* Got 9999"):
        AuthLogReader(year=9999)
