"""A synthetic live stream for the service's tests, benchmark and demos.

Devices send small regular flows to a couple of peers; an attacked device bursts connections to
many addresses and ports that fail (a scan). Timestamps follow the wall clock (or any start
time), so window closing behaves as in production.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from misuse.events import events_to_frame
from misuse.ingest.native import parse_event_object
from misuse.pipeline import WindowModel, train
from misuse.store.duck import Store


def steady_events(
    n_entities: int, rate: float, start: float, seconds: float, seed: int = 0, prefix: str = "ev"
) -> Iterator[dict[str, Any]]:
    """Normal traffic: ``n_entities`` devices, ``rate`` events per second in total, in time order.

    Examples
    --------
    >>> evs = list(steady_events(3, 10.0, 0.0, 1.0))
    >>> len(evs), sorted({e["entity"] for e in evs})
    (10, ['dev-000', 'dev-001', 'dev-002'])
    """
    rng = np.random.default_rng(seed)
    n = round(rate * seconds)
    ts = start + np.arange(n) / rate
    ent = np.arange(n) % n_entities
    peers = rng.integers(0, 2, n)
    size = rng.normal(400, 40, n).clip(50)
    for i in range(n):
        e = int(ent[i])
        yield {
            "event_id": f"{prefix}-{i}",
            "ts": float(ts[i]),
            "entity": f"dev-{e:03d}",
            "peer": f"10.0.{e % 250}.{200 + int(peers[i])}",
            "kind": "flow",
            "action": "mqtt",
            "num": {"dst_port": 1883.0, "orig_bytes": float(size[i]), "resp_bytes": 80.0, "duration": 0.05},
            "cat": {"conn_state": "SF"},
        }


def scan_events(
    entity: str, start: float, n: int = 200, span: float = 0.5, prefix: str = "scan"
) -> list[dict[str, Any]]:
    """A scan from ``entity``: ``n`` failed connections to many addresses and ports within ``span`` seconds."""
    return [
        {
            "event_id": f"{prefix}-{entity}-{i}",
            "ts": start + span * i / n,
            "entity": entity,
            "peer": f"192.168.{i // 250}.{i % 250}",
            "kind": "flow",
            "action": "tcp",
            "num": {"dst_port": float(20 + i), "orig_bytes": 0.0, "resp_bytes": 0.0, "duration": 0.0},
            "cat": {"conn_state": "S0"},
        }
        for i in range(n)
    ]


def train_steady_model(
    store: Store,
    name: str,
    *,
    n_entities: int,
    rate: float,
    window: float,
    windows: int = 200,
    seed: int = 0,
    end: float | None = None,
) -> WindowModel:
    """Train and register (active) a window model on steady traffic of the given shape.

    The ``windows`` training windows are spread over the day before ``end`` (default: now) with
    rates varying by +-30%, so time-of-day and volume features have a realistic spread.
    """
    end = time.time() if end is None else end
    rng = np.random.default_rng(seed)
    hist: list[dict[str, Any]] = []
    for k in range(windows):
        start = np.floor((end - 86400.0 + k * 86400.0 / windows) / window) * window
        r = rate * float(rng.uniform(0.7, 1.3))
        hist += steady_events(n_entities, r, float(start), window, seed=seed + k, prefix=f"hist{k}")
    # flattened exactly as the live path flattens payloads
    model = train(
        events_to_frame(parse_event_object(e, "loadgen") for e in hist), window=window, target_fpr=0.001, seed=seed
    )
    model.info["dataset"] = "synthetic-steady"
    model.save(store.model_dir(name))
    store.register_model(name, "window", model.info)
    return model
