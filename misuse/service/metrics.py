"""Service metrics in the Prometheus text exposition format (version 0.0.4), without a client library."""

from __future__ import annotations

import bisect
import math
import threading
from collections import defaultdict

import numpy as np

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_HELP = {
    "misuse_events_received_total": ("counter", "Events received, by origin (mqtt, http, zeek)."),
    "misuse_events_stored_total": ("counter", "New events committed to the store."),
    "misuse_events_duplicate_total": ("counter", "Events dropped because their event id was already stored."),
    "misuse_events_scored_total": ("counter", "Events inside windows that were scored."),
    "misuse_dead_letters_total": ("counter", "Malformed messages set aside, by origin."),
    "misuse_windows_scored_total": ("counter", "Entity windows closed and scored."),
    "misuse_rule_events_total": ("counter", "New events the rules were run over."),
    "misuse_alerts_total": ("counter", "Alerts raised, by misuse type."),
    "misuse_http_requests_total": ("counter", "HTTP requests, by method, route and status."),
    "misuse_ingest_failures_total": (
        "counter",
        "Batches whose transaction failed and was rolled back, by origin (mqtt, http, zeek, window-close).",
    ),
    "misuse_mqtt_reconnects_total": (
        "counter",
        "Connections the worker dropped after a batch failed every attempt, so that the broker redelivers it.",
    ),
    "misuse_mqtt_connected": ("gauge", "1 while the worker is connected to the broker."),
    "misuse_open_window_events": ("gauge", "Events buffered in windows not yet closed."),
    "misuse_batch_seconds": ("histogram", "Time to commit one batch of events."),
    "misuse_event_lag_seconds": ("histogram", "From reception of an event to its commit."),
}


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    esc = (
        f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in sorted(labels.items())
    )
    return "{" + ",".join(esc) + "}"


class Metrics:
    """Thread-safe counters, gauges and histograms rendered as Prometheus text.

    Examples
    --------
    >>> m = Metrics()
    >>> m.inc("misuse_events_stored_total", 3)
    >>> "misuse_events_stored_total 3" in m.render()
    True
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self._hist: dict[str, tuple[list[int], list[float]]] = {}

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[name][key] = self._values[name].get(key, 0.0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge."""
        with self._lock:
            self._values[name][tuple(sorted(labels.items()))] = value

    def get(self, name: str, **labels: str) -> float:
        """Current value of a counter or gauge (0 when never set)."""
        with self._lock:
            return self._values[name].get(tuple(sorted(labels.items())), 0.0)

    def total(self, name: str) -> float:
        """Sum of a counter over all its label sets."""
        with self._lock:
            return sum(self._values[name].values())

    def observe(self, name: str, value: float, count: int = 1) -> None:
        """Record ``count`` observations of ``value`` in a histogram."""
        with self._lock:
            counts, acc = self._hist.setdefault(name, ([0] * (len(LATENCY_BUCKETS) + 1), [0.0, 0.0]))
            counts[bisect.bisect_left(LATENCY_BUCKETS, value)] += count
            acc[0] += value * count
            acc[1] += count

    def observe_many(self, name: str, values: list[float]) -> None:
        """Record many observations in a histogram at once."""
        if not values:
            return
        idx = np.searchsorted(np.asarray(LATENCY_BUCKETS), np.asarray(values, dtype="float64"), side="left")
        per_bucket = np.bincount(idx, minlength=len(LATENCY_BUCKETS) + 1)
        with self._lock:
            counts, acc = self._hist.setdefault(name, ([0] * (len(LATENCY_BUCKETS) + 1), [0.0, 0.0]))
            for i, c in enumerate(per_bucket):
                counts[i] += int(c)
            acc[0] += float(np.sum(values))
            acc[1] += len(values)

    def render(self) -> str:
        """The exposition text."""
        out: list[str] = []
        with self._lock:
            for name, (kind, text) in _HELP.items():
                out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
                if kind == "histogram":
                    counts, acc = self._hist.get(name, ([0] * (len(LATENCY_BUCKETS) + 1), [0.0, 0.0]))
                    run = 0
                    for bound, c in zip((*LATENCY_BUCKETS, math.inf), counts, strict=True):
                        run += c
                        le = "+Inf" if math.isinf(bound) else repr(bound)
                        out.append(f'{name}_bucket{{le="{le}"}} {run}')
                    out += [f"{name}_sum {acc[0]:.6f}", f"{name}_count {int(acc[1])}"]
                    continue
                series = self._values.get(name) or {(): 0.0}
                for key, v in sorted(series.items()):
                    val = int(v) if float(v).is_integer() else v
                    out.append(f"{name}{_labels(dict(key))} {val}")
        return "\n".join(out) + "\n"
