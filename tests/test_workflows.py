"""The glue of misuse.workflows: which files of a folder are read, and time options."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from misuse.errors import InvalidParameterError, ParseError
from misuse.workflows import not_data, parse_time, plan_readers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01", "2024-05-01 00:00:00+00:00"),
        ("2024-05-01T12:00:00+02:00", "2024-05-01 10:00:00+00:00"),
        ("2024-05-01T12:00:00Z", "2024-05-01 12:00:00+00:00"),
    ],
)
def test_parse_time_gives_utc(value: str, expected: str) -> None:
    assert parse_time(value, "until") == pd.Timestamp(expected)


@pytest.mark.parametrize("value", ["notadate", "", "9999-01-01", "2024-13-01"])
def test_parse_time_refuses_what_is_no_time_naming_the_parameter(value: str) -> None:
    with pytest.raises(InvalidParameterError, match=f"'since' parameter .* Got {value!r}"):
        parse_time(value, "since")


@pytest.mark.parametrize(
    ("name", "data"),
    [("README.md", False), ("README.json", False), ("x.capinfos", False), ("LICENSE", False), ("conn.log", True)],
)
def test_not_data_judges_by_the_name(name: str, data: bool) -> None:
    assert (not_data(Path(name)) is None) is data


def test_a_named_file_is_never_skipped_a_folder_file_may_be(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    readme = tmp_path / "d" / "README.md"
    readme.write_text("Dec 10 06:55:46 gw sshd[1]: Invalid user admin from 1.2.3.4\n")
    (tmp_path / "d" / "empty.log").write_bytes(b"")

    named, _ = plan_readers([readme])
    with pytest.raises(ParseError, match=r"no data file to read: skipped 2 \(first: .*README\.md"):
        plan_readers([tmp_path / "d"])

    assert [(p.name, kind) for p, kind, _ in named] == [("README.md", "authlog")]
