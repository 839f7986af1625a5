"""Small replays and a store with alerts for the response tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from misuse.alerts.model import Alert
from misuse.response.replay import Replay, synthetic_replay
from misuse.store.duck import Store


@pytest.fixture
def train_replays() -> list[Replay]:
    return [synthetic_replay(f"train-{s}", seed=s, attack_entities=(s % 3,)) for s in range(4)]


@pytest.fixture
def held_replays() -> list[Replay]:
    return [synthetic_replay(f"held-{s}", seed=100 + s, attack_entities=(1,)) for s in range(2)]


def make_alerts(n: int = 6) -> list[Alert]:
    t = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    out = []
    for i in range(n):
        start = t + timedelta(minutes=i)
        entity = "cam" if i % 2 == 0 else "plug"
        out.append(
            Alert(
                entity=entity,
                window_start=start,
                window_end=start + timedelta(minutes=1),
                score=0.5 + 0.1 * i,
                threshold=0.5,
                severity="medium",
                misuse_type="botnet",
                detector="window-iforest",
                summary=f"{entity} alert {i}",
                contributions=[{"feature": "peers", "typical": 1.0, "actual": 1.0 + i, "weight": 0.5}],
            )
        )
    return out


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / ".misuse")
    s.add_alerts(make_alerts(), dataset="d", model="m")
    return s
