"""The alert: what every detector, rule and check produces, and what every sink stores and shows."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

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
