"""Request and response bodies of the API (they make the OpenAPI schema complete)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_BATCH = 10_000
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class EventBatch(BaseModel):
    """A batch of events in the event model (see ``docs/events.md``)."""

    model_config = ConfigDict(extra="forbid")
    events: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class IngestOut(BaseModel):
    """What an ingest call did."""

    accepted: int
    duplicates: int
    dead_letters: int
    windows_scored: int
    alerts: int
    reasons: list[str]


class Contribution(BaseModel):
    """One feature behind an alert: typical vs actual value."""

    model_config = ConfigDict(extra="allow")
    feature: str
    typical: float | None = None
    actual: float | None = None
    weight: float | None = None
    baseline: str | None = None


class AlertOut(BaseModel):
    """An alert as stored."""

    alert_id: str
    entity: str
    window_start: str
    window_end: str
    score: float
    threshold: float
    severity: str
    misuse_type: str
    detector: str
    summary: str
    contributions: list[Contribution]
    evidence: list[str]
    created_at: str
    status: str
    dataset: str
    model: str


class AlertDetail(AlertOut):
    """An alert with its evidence events and the analyst feedback it received."""

    evidence_events: list[dict[str, Any]]
    feedback: list[dict[str, Any]]


class AlertList(BaseModel):
    """A page of alerts."""

    total: int
    alerts: list[AlertOut]


class FeedbackIn(BaseModel):
    """An analyst's verdict on an alert."""

    model_config = ConfigDict(extra="forbid")
    verdict: Literal["true_positive", "false_positive"]
    note: str = Field(default="", max_length=2000)


class OkOut(BaseModel):
    """A plain acknowledgement."""

    ok: bool = True
    detail: str = ""


class EntityOut(BaseModel):
    """An entity seen on the stream."""

    entity: str
    events: int
    first_seen: str
    last_seen: str
    alerts: int
    open_alerts: int


class ProfileOut(BaseModel):
    """An entity's behaviour profile."""

    entity: str
    events: int
    activity: list[list[int]] = Field(description="7 x 24 event counts, Monday first, by UTC hour")
    actions: list[dict[str, Any]]
    peers: list[dict[str, Any]]
    baseline: dict[str, float]
    recent_alerts: list[AlertOut]


class ModelOut(BaseModel):
    """A stored model."""

    name: str
    kind: str
    created_at: str
    active: bool
    loaded: bool
    info: dict[str, Any]


class TrainIn(BaseModel):
    """Train a window model on a stored dataset (``stream`` = the events received live)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    dataset: str = Field(default="stream", pattern=NAME)
    window: float = Field(default=60.0, gt=0, le=86400)
    target_fpr: float = Field(default=0.01, gt=0, lt=0.5)
    detector: str = Field(default="iforest", pattern=NAME)
    seed: int = 0
    activate: bool = True


class HealthOut(BaseModel):
    """Liveness and readiness."""

    status: Literal["ok", "degraded"]
    version: str
    store: bool
    mqtt: Literal["connected", "disconnected", "disabled"]
    model: str | None
    auth: bool


class StatsOut(BaseModel):
    """Stream accounting: events in vs events scored."""

    events_stored: int
    events_in_closed_windows: int
    events_scored: int
    open_window_events: int
    windows: int
    alerts: int
    dead_letters: int
    model: str | None


class DeadLetterOut(BaseModel):
    """A malformed message set aside, with the reason."""

    dataset: str
    source: str
    line: int | None
    reason: str
    raw: str
    created_at: str


class TokenIn(BaseModel):
    """A new API token."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    role: Literal["viewer", "analyst", "admin"]


class TokenOut(BaseModel):
    """A token's public fields (``token`` only in the creation response)."""

    token_id: str
    name: str
    role: str
    created_at: str
    token: str | None = None


class WhoAmI(BaseModel):
    """The caller's token."""

    name: str
    role: str
