"""Detections: values, modifiers, conditions; the one-event path equals the batch path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from misuse.rules.detection import SMALL, CompiledDetection, FrameView, factorize_small

FRAME = pd.DataFrame(
    {
        "entity": ["root", "admin", "Alice", "pi", None],
        "peer": ["1.2.3.4", "10.0.0.5", "192.168.1.9", "8.8.8.8", ""],
        "action": ["login.failed", "login.failed", "login.success", "login.failed", "other"],
        "num.dst_port": [22.0, 23.0, 2323.0, np.nan, 80.0],
        "num.tcp_seq": [1.0, 5.0, 7.0, 9.0, 4.0],
        "num.dst_ip_int": [1.0, 6.0, 7.0, 9.0, 3.0],
        "cat.message": [None, None, None, None, "Corrupted MAC on input"],
    }
)


def _mask(selections: dict[str, Any], condition: str = "sel", logsource: dict[str, str] | None = None) -> list[bool]:
    det = {**selections, "condition": condition}
    compiled = CompiledDetection(det, logsource or {})
    small = compiled.mask(FrameView(FRAME)).tolist()
    large = compiled.mask(FrameView(pd.concat([FRAME] * 4, ignore_index=True))).tolist()  # past SMALL rows
    assert large == small * 4
    return small


@pytest.mark.parametrize(
    ("sel", "expected"),
    [
        ({"action": "LOGIN.FAILED"}, [True, True, False, True, False]),
        ({"entity": "a*"}, [False, True, True, False, False]),
        ({"entity|contains": "i"}, [False, True, True, True, False]),
        ({"entity|cased": "alice"}, [False, False, False, False, False]),
        ({"dst_port": [23, 2323]}, [False, True, True, False, False]),
        ({"dst_port|gte": 2000}, [False, False, True, False, False]),
        ({"dst_port": None}, [False, False, False, True, False]),
        ({"entity": "*"}, [True, True, True, True, False]),
        ({"peer|cidr": "10.0.0.0/8"}, [False, True, False, False, False]),
        ({"peer|cidr": ["10.0.0.0/8", "192.168.0.0/16"]}, [False, True, True, False, False]),
        ({"entity|re": "^[a-z]{4,5}$"}, [True, True, False, False, False]),
        ({"entity|contains|all": ["a", "m"]}, [False, True, False, False, False]),
        ({"tcp_seq|fieldref": "dst_ip_int"}, [True, False, True, True, False]),
        ({"nosuchfield|exists": False}, [True] * 5),
        ({"entity|exists": True}, [True, True, True, True, False]),
    ],
)
def test_values_and_modifiers(sel: dict[str, Any], expected: list[bool]) -> None:
    # prepare / execute
    got = _mask({"sel": sel})
    # assert
    assert got == expected


def test_conditions_and_keywords() -> None:
    # prepare
    sels = {
        "sel_fail": {"action": "login.failed"},
        "sel_root": {"entity": "root"},
        "keywords": ["corrupted mac", "incorrect signature"],
    }
    # execute / assert
    assert _mask(sels, "sel_fail and not sel_root") == [False, True, False, True, False]
    assert _mask(sels, "1 of sel_*") == [True, True, False, True, False]
    assert _mask(sels, "all of sel_*") == [True, False, False, False, False]
    assert _mask(sels, "keywords or (sel_root and sel_fail)") == [True, False, False, False, True]


def test_auth_aliases_and_rebuilt_message() -> None:
    # prepare: a parsed sshd failure has no cat.message; the keyword still matches
    linux = {"product": "linux", "service": "sshd"}
    # execute
    by_alias = _mask({"sel": {"user_name": "root", "client_ip": "1.2.3.4"}}, logsource=linux)
    by_keyword = _mask({"kw": ["Failed password for root"]}, "kw", logsource=linux)
    # assert
    assert by_alias == [True, False, False, False, False]
    assert by_keyword == [True, False, False, False, False]


_ROW = st.fixed_dictionaries(
    {
        "entity": st.sampled_from(["root", "admin", "pi", ""]),
        "num.dst_port": st.sampled_from([22.0, 23.0, 2323.0, float("nan")]),
        "cat.state": st.sampled_from(["S0", "SF", None]),
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_ROW, min_size=1, max_size=3 * SMALL))
def test_one_row_path_equals_batch(rows: list[dict[str, Any]]) -> None:
    # prepare
    det = {
        "a": {"entity|startswith": ["r", "p"], "dst_port": [23, 2323]},
        "b": {"state": "S0"},
        "condition": "a or not b",
    }
    compiled = CompiledDetection(det, {})
    frame = pd.DataFrame(rows)
    # execute
    batch = compiled.mask(FrameView(frame)).tolist()
    single = [bool(compiled.mask(FrameView(frame.iloc[[i]].reset_index(drop=True)))[0]) for i in range(len(frame))]
    # assert
    assert batch == single


_VALUES = st.one_of(
    st.lists(st.sampled_from(["a", "b", "", "A", None]), max_size=SMALL).map(lambda v: pd.Series(v, dtype="str")),
    st.lists(st.sampled_from([1.0, 2.5, -0.0, float("nan")]), max_size=SMALL).map(pd.Series),
    st.lists(st.sampled_from(["x", None, 3, 3.0, float("nan")]), max_size=SMALL).map(
        lambda v: pd.Series(v, dtype=object)
    ),
)


@settings(max_examples=100, deadline=None)
@given(_VALUES)
def test_small_factorize_equals_pandas(series: pd.Series) -> None:
    # prepare / execute
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    small_codes, small_uniques = factorize_small(series.tolist())
    # assert
    assert small_codes.tolist() == np.asarray(codes).tolist()
    assert small_uniques == [str(u) for u in np.asarray(uniques, dtype=object)]
