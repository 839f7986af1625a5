"""Shared fixtures. Real data lives outside the repository (../shared/data or MISUSE_DATA_DIR);
tests that need it are marked ``realdata`` and skip without it, unless MISUSE_REQUIRE_DATA=1
(set by .ci/run), which turns the skip into a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Where the shared real datasets are."""
    return Path(os.environ.get("MISUSE_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """The shared data folder; skips (or fails under MISUSE_REQUIRE_DATA=1) when absent."""
    root = data_dir()
    if not root.is_dir():
        msg = f"real data not found at {root} (set MISUSE_DATA_DIR)"
        if os.environ.get("MISUSE_REQUIRE_DATA") == "1":
            pytest.fail(msg + " and MISUSE_REQUIRE_DATA=1")
        pytest.skip(msg)
    return root


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test marked ``realdata`` gets the shared_data check even if it does not ask for it."""
    for item in items:
        if item.get_closest_marker("realdata") and "shared_data" not in getattr(item, "fixturenames", []):
            item.fixturenames.append("shared_data")  # type: ignore[attr-defined]
