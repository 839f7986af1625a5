"""The alert: what every detector, rule and check produces, and what every sink stores and shows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from misuse.alerts.types import MisuseType, Severity


@dataclass
class Alert:
    """An explained warning about one entity in one time window.

    Parameters
    ----------
    entity:
        The device or user the alert is about.
    window_start, window_end:
        The time window (UTC) the evidence falls in.
    score, threshold:
        The detector's score and the threshold it crossed (same units, higher = worse).
    severity:
        low / medium / high / critical.
    misuse_type:
        One of :class:`~misuse.alerts.types.MisuseType`.
    detector:
        Which model or rule raised it.
    summary:
        One sentence a person can read.
    contributions:
        The top contributing features: ``{"feature", "typical", "actual", "weight"}`` each.
    evidence:
        Ids of the events behind the alert.
    """

    entity: str
    window_start: datetime
    window_end: datetime
    score: float
    threshold: float
    severity: str
    misuse_type: str
    detector: str
    summary: str
    contributions: list[dict[str, Any]] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    alert_id: str = ""
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    status: str = "open"

    def __post_init__(self) -> None:
        MisuseType(self.misuse_type)
        Severity(self.severity)
        if not self.alert_id:
            key = f"{self.detector}|{self.entity}|{self.window_start.isoformat()}|{self.misuse_type}"
            self.alert_id = hashlib.sha1(key.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (datetimes as ISO-8601 strings)."""
        d = asdict(self)
        for k in ("window_start", "window_end", "created_at"):
            d[k] = getattr(self, k).isoformat()
        return d

    def to_json(self) -> str:
        """One-line JSON."""
        return json.dumps(self.to_dict(), default=str)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Alert:
        """An alert again from one row of a store's alert frame (times to UTC; missing fields defaulted)."""

        def utc(v: Any) -> datetime:
            ts = pd.Timestamp(v)
            return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()

        return cls(
            entity=str(row["entity"]),
            window_start=utc(row["window_start"]),
            window_end=utc(row["window_end"]),
            score=float(row["score"]),
            threshold=float(row["threshold"]),
            severity=str(row["severity"]),
            misuse_type=str(row["misuse_type"]),
            detector=str(row["detector"]),
            summary=str(row["summary"]),
            contributions=list(row.get("contributions", []) or []),
            evidence=list(row.get("evidence", []) or []),
            alert_id=str(row["alert_id"]),
            status=str(row.get("status", "open")),
        )
