"""Profiles: the three views, incremental learning, persistence, and typed warnings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from misuse.alerts.types import MisuseType
from misuse.errors import InvalidParameterError, NotFoundError, SchemaError
from misuse.profiles.distribution import QuantileSketch, ks_drift, psi
from misuse.profiles.footprint import BoundedCounts
from misuse.profiles.profile import ProfileBook
from misuse.profiles.warnings import WarningRules
from misuse.store.duck import Store

DAY = 86400.0
MONDAY = 4 * DAY  # 1970-01-05


def _user(entity: str, actions: list[str], days: int, hours: tuple[int, int], seed: int) -> pd.DataFrame:
    """Office-hours user: ``per day`` 40 events between the hours, drawn from their own actions."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(days):
        ts = np.sort(MONDAY + d * DAY + rng.uniform(hours[0] * 3600, hours[1] * 3600, 40))
        for t in ts:
            rows.append(
                {
                    "ts": t,
                    "entity": entity,
                    "action": str(rng.choice(actions)),
                    "peer": "srv",
                    "num.bytes": float(rng.lognormal(6, 0.3)),
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture
def book() -> ProfileBook:
    frame = pd.concat(
        [
            _user("alice", ["ls", "cd", "vi", "cat"], 14, (9, 17), 0),
            _user("bob", ["make", "gcc", "gdb", "git"], 14, (10, 18), 1),
        ]
    )
    return ProfileBook().learn(frame)


def test_quantile_sketch_is_accurate_bounded_and_mergeable() -> None:
    rng = np.random.default_rng(0)
    x = rng.lognormal(3, 1, 20_000)
    a, b = QuantileSketch(), QuantileSketch()
    a.update(x[:10_000])
    b.update(x[10_000:])
    a.merge(b)
    for q in (0.1, 0.5, 0.9, 0.99):
        assert abs(a.quantile(q) - np.quantile(x, q)) / np.quantile(x, q) < 0.05
    assert len(a.buckets) <= a.max_buckets and a.count == 20_000


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=200))
def test_sketch_takes_any_floats_and_its_quantiles_stay_in_range(values: list[float]) -> None:
    s = QuantileSketch()
    s.update(np.asarray(values, dtype="float64"))
    finite = [v for v in values if np.isfinite(v)]
    if finite:
        assert min(finite) <= s.quantile(0.5) <= max(finite)
    else:
        assert np.isnan(s.quantile(0.5))


def test_drift_tests_tell_a_shift_from_the_same_distribution() -> None:
    rng = np.random.default_rng(1)
    ref, same, shifted = QuantileSketch(), QuantileSketch(), QuantileSketch()
    ref.update(rng.normal(100, 10, 3000))
    same.update(rng.normal(100, 10, 500))
    shifted.update(rng.normal(130, 10, 500))
    assert ks_drift(ref, same)["p_value"] > 0.01 > ks_drift(ref, shifted)["p_value"]
    assert psi(ref, shifted) > 0.25 > psi(ref, same)


def test_bounded_counts_keep_memory_fixed() -> None:
    c = BoundedCounts(capacity=4)
    c.update([f"a{i}" for i in range(100)] + ["hot"] * 50)
    assert len(c.counts) == 4 and c.top(1)[0][0] == "hot" and c.distinct_seen == 101
    with pytest.raises(InvalidParameterError, match="capacity"):
        BoundedCounts(capacity=0)


def test_profile_learns_three_views_incrementally(book: ProfileBook) -> None:
    extra = _user("alice", ["ls"], 1, (9, 17), 5)
    before = book["alice"].events
    book.learn(extra)
    p = book["alice"]
    assert p.events == before + len(extra)
    assert p.temporal.hour_share()[3] == 0 and p.temporal.hour_share()[9:17].sum() == pytest.approx(1.0)
    assert 300 < p.numeric["bytes"].quantile(0.5) < 600
    assert {a for a, _ in p.footprint.actions.top(4)} == {"ls", "cd", "vi", "cat"}
    text = " ".join(p.describe())
    assert "alice" in text and "Busiest hours" in text and "bytes" in text


def test_profiles_round_trip_through_store_and_json(book: ProfileBook, tmp_path) -> None:
    store = Store(tmp_path / ".misuse")
    assert book.save(store, "office") == 2
    back = ProfileBook.load(store, "office", entity="bob")
    assert list(back) == ["bob"]
    assert back["bob"].to_dict() == book["bob"].to_dict()
    again = ProfileBook.from_json(book.to_json(tmp_path / "p.json"))
    assert again["alice"].describe() == book["alice"].describe()
    with pytest.raises(NotFoundError, match="nobody"):
        ProfileBook.load(store, "office", entity="nobody")
    with pytest.raises(SchemaError, match="mallory"):
        book["mallory"]


def test_bobs_routine_on_alices_account_is_impersonation_naming_bob(book: ProfileBook) -> None:
    window = _user("alice", ["make", "gcc", "gdb"], 1, (10, 12), 7)
    w = WarningRules().assess(book, "alice", window)
    assert w is not None and w.misuse_type == MisuseType.IMPERSONATION
    assert w.resembles[0][0] == "bob" and "bob" in w.summary
    assert {d["item"] for d in w.drivers} <= {"make", "gcc", "gdb"}


def test_repeated_failures_without_sensitive_actions_are_inadvertent(book: ProfileBook) -> None:
    window = pd.DataFrame(
        {
            "ts": MONDAY + 20 * DAY + 9.5 * 3600 + np.arange(12) * 30.0,
            "entity": "alice",
            "action": ["ls", "vi"] * 3 + ["login.failed"] * 6,
        }
    )
    w = WarningRules(novel_share=0.9).assess(book, "alice", window)
    assert w is not None and w.misuse_type == MisuseType.INADVERTENT_MISUSE
    assert w.drivers[0]["item"] == "login.failed"


def test_own_routine_at_night_in_bulk_is_insider_misuse(book: ProfileBook) -> None:
    ts = MONDAY + 21 * DAY + 2 * 3600 + np.arange(300) * 5.0
    rng = np.random.default_rng(3)
    window = pd.DataFrame({"ts": ts, "entity": "alice", "action": rng.choice(["ls", "cat", "vi"], ts.size)})
    w = WarningRules().assess(book, "alice", window)
    assert w is not None and w.misuse_type == MisuseType.INSIDER_MISUSE and "temporal" in w.views


def test_normal_window_raises_no_warning(book: ProfileBook) -> None:
    window = _user("alice", ["ls", "cd", "vi", "cat"], 1, (9, 17), 11)
    window["ts"] += 20 * DAY
    assert WarningRules().assess(book, "alice", window) is None
