"""Turn the monitor's per-reading scores into explained alerts, one per run of flagged readings."""

from __future__ import annotations

import pandas as pd

from misuse.alerts.model import Alert
from misuse.alerts.types import MisuseType, Severity

DETECTOR = "integrity"
_SEVERITY = {
    "range": Severity.HIGH,
    "replay": Severity.HIGH,
    "frozen": Severity.MEDIUM,
    "rate": Severity.MEDIUM,
    "pair": Severity.MEDIUM,
    "shift": Severity.LOW,
}
_WORDS = {
    "range": "physically impossible values",
    "rate": "changes faster than the device ever did",
    "frozen": "a frozen (stuck) reading",
    "replay": "replayed readings",
    "shift": "a shift of the value distribution",
    "pair": "sensors that contradict each other",
}


def reading_scores(flags: pd.DataFrame, threshold: float = 1.0) -> pd.DataFrame:
    """One row per reading: its highest score, the check behind it and whether it crosses ``threshold``.

    Examples
    --------
    >>> f = pd.DataFrame({"event_id": ["a", "a", "b"], "check": ["range", "rate", "rate"],
    ...                   "score": [3.0, 0.2, 0.5]})
    >>> reading_scores(f)[["event_id", "check", "flagged"]].values.tolist()
    [['a', 'range', True], ['b', 'rate', False]]
    """
    if flags.empty:
        return pd.DataFrame(columns=["event_id", "score", "check", "flagged"])
    top = flags.sort_values("score", ascending=False, kind="stable").drop_duplicates("event_id")
    top = top.set_index("event_id").reindex(pd.unique(flags["event_id"])).reset_index()
    top["flagged"] = top["score"] > threshold
    return top


def to_alerts(flags: pd.DataFrame, threshold: float = 1.0, max_gap: float = 60.0) -> list[Alert]:
    """Group flagged readings per device and check into runs (gaps up to ``max_gap`` seconds) and explain each.

    Parameters
    ----------
    flags:
        Output of :meth:`misuse.integrity.IntegrityMonitor.check`.
    threshold:
        Score a reading must exceed (1.0 = the learned limit).
    max_gap:
        Flagged readings closer than this (seconds) belong to the same alert.
    """
    hit = flags[flags["score"] > threshold]
    alerts: list[Alert] = []
    for (entity, check), part in hit.groupby(["entity", "check"], sort=True):
        part = part.sort_values("ts", kind="stable")
        ts = pd.to_datetime(part["ts"], utc=True)
        gaps = ts.diff().dt.total_seconds().fillna(0.0).to_numpy()
        group = (gaps > max_gap).cumsum()
        for _, run in part.groupby(group, sort=True):
            t = pd.to_datetime(run["ts"], utc=True)
            worst = run.sort_values("score", ascending=False, kind="stable").head(5)
            first = worst.iloc[0]
            alerts.append(
                Alert(
                    entity=str(entity),
                    window_start=t.min().to_pydatetime(),
                    window_end=t.max().to_pydatetime(),
                    score=float(first["score"]),
                    threshold=threshold,
                    severity=_SEVERITY.get(str(check), Severity.MEDIUM).value,
                    misuse_type=MisuseType.DATA_TAMPERING.value,
                    detector=f"{DETECTOR}.{check}",
                    summary=(
                        f"{entity}: {_WORDS.get(str(check), str(check))} in {len(run)} reading(s); "
                        f"{first['feature']} is {first['actual']}, typical {first['typical']}"
                    ),
                    contributions=[
                        {
                            "feature": str(r["feature"]),
                            "typical": str(r["typical"]),
                            "actual": str(r["actual"]),
                            "weight": round(float(r["score"]), 3),
                        }
                        for _, r in worst.iterrows()
                    ],
                    evidence=[str(x) for x in run["event_id"].head(50)],
                )
            )
    return alerts
