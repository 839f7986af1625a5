"""One default site for the whole simulator test directory (generating it takes about a second)."""

from __future__ import annotations

import time

import pytest

from misuse.simulate import SimulatedSite, simulate_site


@pytest.fixture(scope="session")
def default_site() -> SimulatedSite:
    """``simulate_site(seed=7)`` with every other parameter at its default."""
    start = time.perf_counter()
    site = simulate_site(seed=7)
    secs = time.perf_counter() - start
    sizes = {"flows": len(site.flows), "auth": len(site.auth), "commands": len(site.commands)}
    print(f"\nsimulate_site(seed=7), defaults: {secs:.2f} s, {sizes}")
    return site
