"""Risk fusion per entity, and incidents that group alerts by entity and cause.

:func:`fuse` turns alerts from rules and detectors into one risk per entity and window with a
noisy-OR of calibrated probabilities: ``risk = 1 - prod(1 - p_i)``, where ``p_i`` is a rule's
``confidence`` (its probability that a hit is a true positive) or a detector alert's
probability. Several weak signals on one entity therefore add up: three independent hits at
0.5 give 0.875. The strongest hit per source counts once, so one noisy rule cannot reach a
high risk on its own by repetition. Every contribution is listed, under the name a person knows
it by (a rule's title, a detector's name: :func:`display_names`).

:func:`group_incidents` merges alerts on the same entity and misuse type whose windows lie
within ``gap`` seconds of each other into one :class:`Incident`, which says how many alerts it
holds, over what time span, and which rules and detectors contributed most.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from misuse.alerts.model import Alert
from misuse.alerts.types import MisuseType
from misuse.errors import InvalidParameterError
from misuse.rules.model import Rule

SEVERITY_ORDER = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def display_names(alerts: Iterable[Alert], rules: Iterable[Rule] = ()) -> dict[str, str]:
    """What to call each detector of ``alerts``: a rule's title for ``rule:<id>``, else the detector.

    A rule alert whose rule is not among ``rules`` is named by its summary, which the rule engine
    starts with the rule's title (``"<title>: ..."``); failing that, by its detector.

    >>> from datetime import datetime, UTC
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> a = [Alert("cam", t, t, 1, 1, "low", "scanning", "rule:9d3b", "Telnet scan: 20 peers"),
    ...      Alert("cam", t, t, 2, 1, "low", "anomaly", "iforest", "unusual window")]
    >>> display_names(a)
    {'rule:9d3b': 'Telnet scan', 'iforest': 'iforest'}
    """
    titles = {f"rule:{r.id}": r.title for r in rules}
    out: dict[str, str] = {}
    for a in alerts:
        if a.detector in out:
            continue
        if a.detector in titles:
            out[a.detector] = titles[a.detector]
        elif a.detector.startswith("rule:") and ": " in a.summary:
            out[a.detector] = a.summary.split(": ", 1)[0]
        else:
            out[a.detector] = a.detector
    return out


def _span(start: Any, end: Any) -> str:
    """A duration for people: ``2h 05m``, ``4m 10s``, ``12s``."""
    secs = max(int((end - start).total_seconds()), 0)
    h, rest = divmod(secs, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {sec:02d}s" if m else f"{sec}s"


def detector_probability(alert: Alert) -> float:
    """A detector alert's probability: a logistic of how far its score exceeds the threshold.

    At the threshold it is 0.5; twice the threshold gives about 0.73. Rule alerts are not
    scored this way (they carry their confidence).
    """
    scale = abs(alert.threshold) or 1.0
    z = (alert.score - alert.threshold) / scale
    return 1.0 / (1.0 + math.exp(-z))


@dataclass
class EntityRisk:
    """The fused risk of one entity in one window, with every contribution."""

    entity: str
    window_start: Any
    window_end: Any
    risk: float
    misuse_type: str
    contributions: list[dict[str, Any]] = field(default_factory=list)
    alert_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (times as ISO-8601 strings)."""
        return {
            "entity": self.entity,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "risk": self.risk,
            "misuse_type": self.misuse_type,
            "contributions": self.contributions,
            "alert_ids": self.alert_ids,
        }

    def summary(self, top: int | None = 4) -> str:
        """One line: the risk, the entity and the strongest ``top`` contributions by name (None: all)."""
        shown = self.contributions if top is None else self.contributions[:top]
        parts = ", ".join(f"{c['feature']} {c['actual']:.2f}" for c in shown)
        more = len(self.contributions) - len(shown)
        return (
            f"risk {self.risk:.2f} {self.entity} ({self.misuse_type}) {self.window_start:%Y-%m-%d %H:%M} - "
            f"{self.window_end:%Y-%m-%d %H:%M}: {parts}" + (f" and {more} more" if more > 0 else "")
        )

    def to_alert(self, threshold: float) -> Alert:
        """The fused risk as one alert (detector ``fusion``)."""
        severity = "critical" if self.risk >= 0.95 else "high" if self.risk >= 0.8 else "medium"
        parts = ", ".join(f"{c['feature']} ({c['actual']:.2f})" for c in self.contributions[:4])
        return Alert(
            entity=self.entity,
            window_start=self.window_start,
            window_end=self.window_end,
            score=self.risk,
            threshold=threshold,
            severity=severity,
            misuse_type=self.misuse_type,
            detector="fusion",
            summary=f"risk {self.risk:.2f} for {self.entity} from {len(self.contributions)} signal(s): {parts}",
            contributions=self.contributions,
            evidence=self.alert_ids,
        )


def fuse(
    alerts: Iterable[Alert],
    *,
    window: float = 3600.0,
    confidences: Mapping[str, float] | None = None,
    probability: Callable[[Alert], float] = detector_probability,
    names: Mapping[str, str] | None = None,
) -> list[EntityRisk]:
    """Noisy-OR risk per (entity, window) from rule hits and detector alerts.

    Parameters
    ----------
    alerts:
        Alerts from rules (``detector="rule:<id>"``) and detectors.
    window:
        Seconds per fusion window (aligned to the epoch).
    confidences:
        Rule id -> confidence (``Rule.confidence``); a rule missing here counts 0.5.
    probability:
        Maps a detector alert to a probability.
    names:
        Detector -> the name a contribution is shown under (``feature``), as
        :func:`display_names` gives; the detector itself is kept in ``detector``.

    Examples
    --------
    >>> from datetime import datetime, UTC
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> a = [Alert("cam", t, t, 1, 1, "low", "botnet", f"rule:r{i}", "x") for i in range(3)]
    >>> round(fuse(a, confidences={"r0": 0.5, "r1": 0.5, "r2": 0.5})[0].risk, 3)
    0.875
    """
    if window <= 0:
        raise InvalidParameterError(f"The 'window' parameter of fuse must be > 0. Got {window!r} instead.")
    conf = dict(confidences or {})
    label = dict(names or {})
    best: dict[tuple[str, int], dict[str, tuple[float, Alert]]] = {}
    for a in alerts:
        b = int(a.window_start.timestamp() // window)
        if a.detector.startswith("rule:"):
            p = conf.get(a.detector.removeprefix("rule:"), 0.5)
        else:
            p = probability(a)
        p = min(max(p, 0.0), 0.999)
        slot = best.setdefault((a.entity, b), {})
        if a.detector not in slot or slot[a.detector][0] < p:
            slot[a.detector] = (p, a)
    out = []
    for (entity, _bucket), signals in best.items():
        ranked = sorted(signals.items(), key=lambda kv: -kv[1][0])
        risk = 1.0 - math.prod(1.0 - p for _, (p, _) in ranked)
        types: dict[str, float] = {}
        for _, (p, a) in ranked:
            types[a.misuse_type] = types.get(a.misuse_type, 0.0) + p
        total = max(sum(x for x, _ in signals.values()), 1e-9)
        contributions = [
            {"feature": label.get(det, det), "detector": det, "typical": 0.0, "actual": p, "weight": p / total}
            for det, (p, _) in ranked
        ]
        alerts_in = [a for _, (_, a) in ranked]
        out.append(
            EntityRisk(
                entity=entity,
                window_start=min(a.window_start for a in alerts_in),
                window_end=max(a.window_end for a in alerts_in),
                risk=risk,
                misuse_type=max(types, key=lambda k: types[k]) if types else MisuseType.ANOMALY.value,
                contributions=contributions,
                alert_ids=[a.alert_id for a in alerts_in],
            )
        )
    return sorted(out, key=lambda r: -r.risk)


@dataclass
class Incident:
    """Alerts on one entity with one cause (misuse type), close in time."""

    entity: str
    misuse_type: str
    start: Any
    end: Any
    severity: str
    alerts: list[Alert] = field(default_factory=list)

    @property
    def detectors(self) -> list[str]:
        """The distinct rules and detectors involved."""
        return sorted({a.detector for a in self.alerts})

    def contributions(self, names: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Per rule or detector: its name, how many of the alerts it raised and its highest score,
        most alerts first."""
        label = dict(names or {})
        per: dict[str, list[Alert]] = {}
        for a in self.alerts:
            per.setdefault(a.detector, []).append(a)
        rows = [
            {
                "detector": det,
                "name": label.get(det, det),
                "alerts": len(group),
                "max_score": max(a.score for a in group),
                "severity": max((a.severity for a in group), key=SEVERITY_ORDER.__getitem__),
            }
            for det, group in per.items()
        ]
        return sorted(rows, key=lambda r: (-r["alerts"], -SEVERITY_ORDER[r["severity"]], r["name"]))

    def summary(self, names: Mapping[str, str] | None = None, top: int = 3) -> str:
        """One line a person can read: cause, entity, count, time span and the top contributions."""
        rows = self.contributions(names)
        parts = ", ".join(f"{r['name']} x{r['alerts']}" for r in rows[:top])
        more = f" and {len(rows) - top} more" if len(rows) > top else ""
        return (
            f"{self.misuse_type} on {self.entity}: {len(self.alerts)} alert(s) between "
            f"{self.start.isoformat()} and {self.end.isoformat()} ({_span(self.start, self.end)}); "
            f"top: {parts}{more}"
        )

    def to_dict(self, names: Mapping[str, str] | None = None) -> dict[str, Any]:
        """JSON-ready form (times as ISO-8601 strings)."""
        return {
            "entity": self.entity,
            "misuse_type": self.misuse_type,
            "severity": self.severity,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "seconds": (self.end - self.start).total_seconds(),
            "alerts": len(self.alerts),
            "summary": self.summary(names),
            "contributions": self.contributions(names),
            "alert_ids": [a.alert_id for a in self.alerts],
        }


def group_incidents(alerts: Iterable[Alert], *, gap: float = 3600.0) -> list[Incident]:
    """Group alerts on the same entity and misuse type within ``gap`` seconds into incidents.

    Examples
    --------
    >>> from datetime import datetime, UTC, timedelta
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> a = [Alert("cam", t + timedelta(minutes=m), t + timedelta(minutes=m), 1, 1, "low",
    ...            "scanning", "rule:x", "s") for m in (0, 5, 300)]
    >>> [len(i.alerts) for i in group_incidents(a)]
    [2, 1]
    """
    if gap < 0:
        raise InvalidParameterError(f"The 'gap' parameter of group_incidents must be >= 0. Got {gap!r} instead.")
    ordered = sorted(alerts, key=lambda a: (a.entity, a.misuse_type, a.window_start))
    out: list[Incident] = []
    open_: Incident | None = None
    for a in ordered:
        if (
            open_ is not None
            and open_.entity == a.entity
            and open_.misuse_type == a.misuse_type
            and a.window_start - open_.end <= timedelta(seconds=gap)
        ):
            open_.alerts.append(a)
            open_.end = max(open_.end, a.window_end)
            if SEVERITY_ORDER[a.severity] > SEVERITY_ORDER[open_.severity]:
                open_.severity = a.severity
            continue
        open_ = Incident(a.entity, a.misuse_type, a.window_start, a.window_end, a.severity, [a])
        out.append(open_)
    return sorted(out, key=lambda i: i.start)
