"""Compact profile storage: the 4 KB-per-entity budget and the exactness of the compact forms."""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import numpy as np

from misuse.profiles.footprint import BoundedCounts
from misuse.profiles.profile import EntityProfile
from misuse.profiles.temporal import Temporal

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def test_benchmark_profiles_fit_in_four_kilobytes_each() -> None:
    from profiles import memory  # benchmarks/profiles.py

    per_entity, as_json, _ = memory(1000)
    assert per_entity <= 4096
    assert as_json < 4096


def test_grid_is_uint16_until_a_cell_overflows_then_float32_and_counts_stay_exact() -> None:
    t = Temporal()
    t.update(np.zeros(65_535))
    assert t.grid.dtype == np.uint16 and t.grid[3, 0] == 65_535
    t.update(np.zeros(2))
    assert t.grid.dtype == np.float32 and t.grid[3, 0] == 65_537
    back = Temporal.from_dict(t.to_dict())
    assert back.grid.dtype == np.float32 and back.total == 65_537


def test_bounded_counts_round_trip_and_intern_names() -> None:
    c = BoundedCounts(capacity=3)
    c.update(["".join(["lo", "gin"]), "login", "read", "write", "delete"])
    d = BoundedCounts.from_dict(c.to_dict())
    assert d.counts == c.counts and d.total == 5 and d.distinct_seen == 4
    assert "login" in d and d.get("nothing") == 0.0
    assert d.items[d.items.index("login")] is sys.intern("login")


def test_a_loaded_profile_is_not_bigger_than_a_learned_one() -> None:
    p = EntityProfile("cam")
    p.footprint.update([f"act{i % 20}" for i in range(200)], ["broker"] * 200)
    p.temporal.update(np.linspace(0, 7 * 86400, 200))
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    loaded = [EntityProfile.from_dict(p.to_dict()) for _ in range(200)]
    per = (tracemalloc.get_traced_memory()[0] - base) / len(loaded)
    tracemalloc.stop()
    assert per < 4096
    assert loaded[0].footprint.actions.counts == p.footprint.actions.counts
