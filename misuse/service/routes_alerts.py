"""Alert routes: list/filter, detail with evidence, acknowledge, feedback, live feed (SSE)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from misuse.service.deps import AnalystDep, ServiceState, StateDep, ViewerDep
from misuse.service.errors import ApiError, error_docs
from misuse.service.schemas import AlertDetail, AlertList, AlertOut, FeedbackIn, OkOut

router = APIRouter(prefix="/api/alerts", tags=["alerts"], responses=error_docs(500))
NO_ALERT = (404, "no alert with this id")

_COLS = (
    "alert_id, entity, window_start, window_end, score, threshold, severity, misuse_type, detector, summary, "
    "contributions, evidence, created_at, status, dataset, model"
)


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f and abs(f) != float("inf") else None


def iso(v: Any) -> str:
    """A stored time as ISO-8601; a value the driver could not turn into a datetime (a row stored
    with a time out of its range) as the database's own text, so that one odd row never fails a listing."""
    return v.isoformat() if isinstance(v, datetime) else str(v)


def alert_row(r: tuple[Any, ...]) -> dict[str, Any]:
    """One ``alerts`` row as the API's JSON form."""
    d = dict(zip([c.strip() for c in _COLS.split(",")], r, strict=True))
    for k in ("window_start", "window_end", "created_at"):
        d[k] = iso(d[k])
    contribs = json.loads(d["contributions"] or "[]")
    for c in contribs:
        for k in ("typical", "actual", "weight"):
            c[k] = _finite(c.get(k))
    d["contributions"] = contribs
    d["evidence"] = json.loads(d["evidence"] or "[]")
    d["dataset"] = d["dataset"] or ""
    d["model"] = d["model"] or ""
    return d


def query_alerts(
    st: ServiceState, where: list[str], args: list[Any], limit: int, offset: int = 0
) -> tuple[int, list[dict[str, Any]]]:
    """Alerts matching SQL conditions, newest first."""
    cond = (" WHERE " + " AND ".join(where)) if where else ""
    with st.lock:
        total = st.store.con.execute(f"SELECT count(*) FROM alerts{cond}", args).fetchone()
        rows = st.store.con.execute(
            f"SELECT {_COLS} FROM alerts{cond} ORDER BY window_end DESC, score DESC LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()
    return int(total[0]) if total else 0, [alert_row(r) for r in rows]


@router.get("", response_model=AlertList, summary="List and filter alerts", responses=error_docs(401, 422))
def list_alerts(
    st: StateDep,
    _who: ViewerDep,
    misuse_type: Annotated[str | None, Query(max_length=40)] = None,
    entity: Annotated[str | None, Query(max_length=200)] = None,
    status: Literal["open", "acknowledged"] | None = None,
    severity: Literal["low", "medium", "high", "critical"] | None = None,
    dataset: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[datetime | None, Query(description="Only alerts whose window ends at or after this time")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AlertList:
    """Alerts, newest window first."""
    where: list[str] = []
    args: list[Any] = []
    for col, val in (
        ("misuse_type", misuse_type),
        ("entity", entity),
        ("status", status),
        ("severity", severity),
        ("dataset", dataset),
    ):
        if val is not None:
            where.append(f"{col} = ?")
            args.append(val)
    if since is not None:
        where.append("window_end >= ?")
        args.append(since)
    total, alerts = query_alerts(st, where, args, limit, offset)
    return AlertList(total=total, alerts=[AlertOut(**a) for a in alerts])


@router.get(
    "/stream",
    summary="Live alert feed (server-sent events)",
    response_class=StreamingResponse,
    responses=error_docs(401),
)
async def alert_stream(request: Request, _who: ViewerDep) -> StreamingResponse:
    """``text/event-stream``: one ``event: alert`` per new alert, its JSON as data."""
    st: ServiceState = request.app.state.service
    return StreamingResponse(
        st.hub.stream(request.is_disconnected),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/{alert_id}",
    response_model=AlertDetail,
    summary="One alert with evidence and feedback",
    responses=error_docs(401, NO_ALERT),
)
def get_alert(alert_id: str, st: StateDep, _who: ViewerDep) -> AlertDetail:
    """The alert, the events behind it (when received on the stream) and analyst feedback."""
    _, found = query_alerts(st, ["alert_id = ?"], [alert_id], 1)
    if not found:
        raise ApiError(404, f"no alert with id {alert_id!r}")
    a = found[0]
    with st.lock:
        ev = st.store.con.execute(
            "SELECT record FROM stream_events WHERE event_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY ts",
            [a["evidence"]],
        ).fetchall()
        fb = st.store.con.execute(
            "SELECT verdict, analyst, note, created_at FROM feedback WHERE alert_id = ? ORDER BY created_at", [alert_id]
        ).fetchall()
    return AlertDetail(
        **a,
        evidence_events=[json.loads(r[0]) for r in ev],
        feedback=[{"verdict": f[0], "analyst": f[1], "note": f[2], "created_at": f[3].isoformat()} for f in fb],
    )


@router.post(
    "/{alert_id}/ack", response_model=OkOut, summary="Acknowledge an alert", responses=error_docs(401, 403, NO_ALERT)
)
def acknowledge(alert_id: str, st: StateDep, _who: AnalystDep) -> OkOut:
    """Mark the alert as acknowledged."""
    with st.lock:
        st.store.acknowledge(alert_id)
    return OkOut(detail=f"alert {alert_id} acknowledged")


@router.post(
    "/{alert_id}/feedback",
    response_model=OkOut,
    summary="Record analyst feedback",
    responses=error_docs(401, 403, NO_ALERT, 413, 422),
)
def feedback(alert_id: str, body: FeedbackIn, st: StateDep, who: AnalystDep) -> OkOut:
    """Record a true- or false-positive verdict (with an optional note) under the caller's token name."""
    with st.lock:
        st.store.add_feedback(alert_id, body.verdict, analyst=who.name, note=body.note)
    return OkOut(detail=f"{body.verdict} recorded for alert {alert_id}")
