"""Profiles at work: cut new events into per-entity windows, assess each against the profiles, and turn
the typed warnings (:mod:`misuse.profiles.warnings`) into alerts.

Each alert carries the warning's type, the views that diverged, the drivers as contributions
(``view:item``, typical vs actual), for impersonation whom the behaviour resembles (in the summary),
and as evidence the ids of the window's events that drove it (the actions named, the out-of-spec
values), or its first events when a driver is not an action.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from misuse.alerts.model import Alert
from misuse.alerts.types import MisuseType, Severity
from misuse.errors import InvalidParameterError
from misuse.profiles.profile import ProfileBook, _seconds
from misuse.profiles.warnings import ProfileWarning, WarningRules

DETECTOR = "profile"
MAX_EVIDENCE = 50
SEVERITY = {
    MisuseType.IMPERSONATION.value: Severity.HIGH,
    MisuseType.INSIDER_MISUSE.value: Severity.HIGH,
    MisuseType.INADVERTENT_MISUSE.value: Severity.MEDIUM,
}


def profile_alerts(
    book: ProfileBook,
    events: pd.DataFrame,
    rules: WarningRules | None = None,
    *,
    window: float = 3600.0,
    min_events: int = 3,
    kinds: Collection[str] | None = None,
) -> list[Alert]:
    """Assess every (entity, window) of ``events`` whose entity has a profile; one alert per warning.

    Parameters
    ----------
    book:
        The profiles, learned from history (:meth:`ProfileBook.learn`).
    events:
        New events in the event model's columnar form.
    rules:
        The decision rules (defaults: :class:`WarningRules`).
    window:
        Window length in seconds (> 0); windows start at multiples of it (UTC epoch).
    min_events:
        Windows with fewer events are not assessed (too little to tell).
    kinds:
        Only events of these kinds (e.g. ``{"command"}`` for people operating devices); None for all.

    Examples
    --------
    >>> day = pd.Timestamp("2026-03-02", tz="UTC")
    >>> def use(who, actions, hour):
    ...     return pd.DataFrame({"ts": [day + pd.Timedelta(hours=hour, minutes=m) for m in range(len(actions))],
    ...                          "entity": who, "action": actions, "peer": "hub", "event_id": range(len(actions))})
    >>> history = pd.concat([use("ann", ["lock", "arm"] * 20, 8), use("ben", ["view", "zoom"] * 20, 9)])
    >>> book = ProfileBook().learn(history)
    >>> [a.misuse_type for a in profile_alerts(book, use("ann", ["view", "zoom", "view", "zoom"], 20))]
    ['impersonation']
    """
    if not window > 0:
        raise InvalidParameterError(f"The 'window' parameter of profile_alerts must be > 0. Got {window} instead.")
    if min_events < 1:
        raise InvalidParameterError(f"The 'min_events' parameter of profile_alerts must be >= 1. Got {min_events}.")
    rules = rules or WarningRules()
    ev = events if kinds is None or "kind" not in events.columns else events[events["kind"].isin(set(kinds))]
    ev = ev[ev["entity"].astype(str).isin(set(book.profiles))]
    if ev.empty:
        return []
    start = np.floor(_seconds(ev["ts"]) / window) * window
    alerts = []
    for (entity, w0), part in ev.assign(_w=start).groupby([ev["entity"].astype(str), "_w"], sort=True):
        if len(part) < min_events:
            continue
        part = part.drop(columns="_w").sort_values("ts", kind="stable")
        warning = rules.assess(book, str(entity), part)
        if warning is not None:
            alerts.append(_alert(warning, part, float(w0), window))
    return alerts


def _alert(w: ProfileWarning, part: pd.DataFrame, start: float, window: float) -> Alert:
    items = {str(d["item"]) for d in w.drivers if d["view"] == "functional"}
    hits = part["action"].astype(str).isin(items)
    for d in (d for d in w.drivers if d["view"] == "distribution"):
        col = f"num.{str(d['item']).rsplit(':', 1)[-1]}"  # "set_temp:value" -> num.value
        if col in part.columns:
            hits |= pd.to_numeric(part[col], errors="coerce") == d["actual"]
    chosen = part[hits] if hits.any() else part
    ids = chosen["event_id"].astype(str).tolist() if "event_id" in part.columns else []
    summary = w.summary
    if w.resembles and w.misuse_type == MisuseType.IMPERSONATION:
        summary += " Resembles: " + ", ".join(f"{who} ({fit:.2f})" for who, fit in w.resembles[:3]) + "."
    total = sum(abs(float(d.get("excess", 1.0))) for d in w.drivers) or 1.0
    return Alert(
        entity=w.entity,
        window_start=datetime.fromtimestamp(start, UTC),
        window_end=datetime.fromtimestamp(start + window, UTC),
        score=float(w.score),
        threshold=float(w.threshold),
        severity=SEVERITY.get(str(w.misuse_type), Severity.MEDIUM).value,
        misuse_type=str(w.misuse_type),
        detector=f"{DETECTOR}.{w.misuse_type}",
        summary=summary,
        contributions=[
            {
                "feature": f"{d['view']}:{d['item']}",
                "typical": float(d["typical"]),
                "actual": float(d["actual"]),
                "weight": round(abs(float(d.get("excess", 1.0))) / total, 4),
            }
            for d in w.drivers
        ],
        evidence=ids[:MAX_EVIDENCE],
    )


#: window-detector types a profile warning may refine (the window path cannot tell who acts)
REFINABLE = frozenset({MisuseType.ANOMALY.value, MisuseType.IMPERSONATION.value})


def refine_types(window_alerts: list[Alert], warnings: list[Alert]) -> list[Alert]:
    """Window alerts of an undetermined type that overlap a profile alert of the same entity take the
    profile's type; their summary says so. Other alerts are returned unchanged (same order).

    Examples
    --------
    >>> t0 = datetime(2026, 3, 5, 9, tzinfo=UTC)
    >>> def alert(kind, detector, minutes):
    ...     return Alert(entity="bob", window_start=t0, window_end=t0 + pd.Timedelta(minutes=minutes), score=2.0,
    ...                  threshold=1.0, severity="medium", misuse_type=kind, detector=detector, summary="odd")
    >>> [a.misuse_type for a in refine_types([alert("anomaly", "window", 5)], [alert("insider_misuse", "profile", 60)])]
    ['insider_misuse']
    """
    out = []
    for a in window_alerts:
        match = next(
            (
                w
                for w in warnings
                if w.entity == a.entity and w.window_start < a.window_end and a.window_start < w.window_end
            ),
            None,
        )
        if match is None or a.misuse_type not in REFINABLE or a.misuse_type == match.misuse_type:
            out.append(a)
            continue
        out.append(
            replace(
                a,
                misuse_type=match.misuse_type,
                summary=f"{a.summary} [type from the profile check: {match.summary}]",
                alert_id="",
            )
        )
    return out
