from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misuse.errors import ParseError
from misuse.events import BASE_COLUMNS
from misuse.ingest.base import DeadLetter
from misuse.ingest.native import EventJsonReader, parse_event_object


def test_reads_flat_and_nested_attributes(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl"
    lines = [
        {
            "ts": "2026-03-02T10:00:00Z",
            "entity": "alice",
            "kind": "command",
            "action": "unlock",
            "peer": "lock-1",
            "num.n": 2,
            "cat.client": "app/1.2",
            "label": "benign",
        },
        {"ts": 1772445600.5, "entity": "cam", "num": {"bytes": 10}, "cat": {"proto": "tcp"}},
    ]
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    f = EventJsonReader().read(p)
    assert f["entity"].tolist() == ["alice", "cam"]
    assert f["num.n"].iloc[0] == 2.0 and f["num.bytes"].iloc[1] == 10.0
    assert f["cat.client"].iloc[0] == "app/1.2" and f["cat.proto"].iloc[1] == "tcp"
    assert str(f["ts"].iloc[0]) == "2026-03-02 10:00:00+00:00"
    assert f["source"].iloc[1] == "e.jsonl:2"


def test_bad_lines_go_to_the_dead_letter_with_line_numbers(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl"
    p.write_text(
        '{"ts": 1, "entity": "a"}\n{not json\n{"ts": "yesterday", "entity": "a"}\n'
        '{"ts": 2, "entity": "a", "num.x": "big"}\n{"ts": "2026-01-01T00:00:00", "entity": "a"}\n'
        '{"ts": 3, "entity": "b"}\n'
    )
    dead = DeadLetter(path=tmp_path / "dead.jsonl")
    f = EventJsonReader().read(p, dead=dead)
    assert f["entity"].tolist() == ["a", "b"]
    assert dead.count == 4
    lines = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [d["line"] for d in lines] == [2, 3, 4, 5]
    assert "num.x" not in lines[2]["reason"] and "'x'" in lines[2]["reason"]
    assert "timezone" in lines[3]["reason"]


def test_an_out_of_range_time_is_a_dead_letter_and_the_good_lines_stay(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl"
    p.write_text(
        '{"ts": 1e300, "entity": "a"}\n{"ts": 10, "entity": "b"}\n{"ts": "9999-01-01T00:00:00Z", "entity": "c"}\n'
    )
    dead = DeadLetter(path=tmp_path / "dead.jsonl")

    f = EventJsonReader().read(p, dead=dead)

    assert f["entity"].tolist() == ["b"]
    lines = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [(d["source"], d["line"]) for d in lines] == [("e.jsonl", 1), ("e.jsonl", 3)]
    assert all("out of range" in d["reason"] for d in lines)


def test_file_with_no_valid_event_is_a_one_line_error(tmp_path: Path) -> None:
    p = tmp_path / "junk.jsonl"
    p.write_text("hello\nworld\n")
    with pytest.raises(ParseError, match=r"junk.jsonl.*no valid event"):
        EventJsonReader().read(p)


def test_missing_entity_names_the_field() -> None:
    with pytest.raises(ParseError, match="entity"):
        parse_event_object({"ts": 1}, "api")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_any_bytes_give_events_or_parse_error(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "fuzz.jsonl"
    p.write_bytes(data)
    try:
        frame = EventJsonReader().read(p)
    except ParseError as exc:
        assert "fuzz.jsonl" in str(exc)
    else:
        assert list(frame.columns[: len(BASE_COLUMNS)]) == list(BASE_COLUMNS)
