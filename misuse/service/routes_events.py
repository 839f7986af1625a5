"""Ingest routes: HTTP event batches, dead letters, stream accounting."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query

from misuse.service.deps import AnalystDep, StateDep, ViewerDep
from misuse.service.errors import error_docs
from misuse.service.routes_alerts import iso
from misuse.service.schemas import DeadLetterOut, EventBatch, IngestOut, StatsOut
from misuse.service.stream import DATASET, parse_objects

router = APIRouter(prefix="/api", tags=["events"], responses=error_docs(500))


@router.post(
    "/events",
    response_model=IngestOut,
    summary="Ingest a batch of events",
    responses=error_docs(401, 403, 413, 422),
)
def ingest_events(body: EventBatch, st: StateDep, who: AnalystDep) -> IngestOut:
    """Validate, store and score events; malformed ones (a ``ts`` outside years 1678-2261 among them)
    go to the dead-letter table with the reason, as on MQTT, and the good ones of the batch are kept."""
    parsed = parse_objects(body.events, who.name, "http", time.time())
    rep = st.processor.ingest(parsed, "http")
    return IngestOut(
        accepted=rep.accepted,
        duplicates=rep.duplicates,
        dead_letters=rep.dead_letters,
        windows_scored=rep.windows_scored,
        alerts=len(rep.alerts),
        reasons=rep.reasons,
    )


@router.get(
    "/dead-letters",
    response_model=list[DeadLetterOut],
    summary="Malformed messages set aside",
    responses=error_docs(401, 422),
)
def dead_letters(
    st: StateDep,
    _who: ViewerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetterOut]:
    """The newest dead letters of the stream with their reasons."""
    with st.lock:
        rows = st.store.con.execute(
            "SELECT dataset, source, line, reason, raw, created_at FROM dead_letters WHERE dataset = ? "
            "ORDER BY created_at DESC LIMIT ?",
            [DATASET, limit],
        ).fetchall()
    return [
        DeadLetterOut(dataset=r[0], source=r[1], line=r[2], reason=r[3], raw=r[4] or "", created_at=iso(r[5]))
        for r in rows
    ]


@router.get("/stream/stats", response_model=StatsOut, summary="Events in vs events scored", responses=error_docs(401))
def stream_stats(st: StateDep, _who: ViewerDep) -> StatsOut:
    """Counts from the store: stored events, events in closed (scored) windows, windows, alerts."""
    with st.lock:
        con = st.store.con
        stored = con.execute("SELECT count(*) FROM stream_events").fetchone()
        win = con.execute("SELECT count(*), coalesce(sum(n_events), 0) FROM stream_windows").fetchone()
        scored = con.execute("SELECT coalesce(sum(n_events), 0) FROM stream_windows WHERE score IS NOT NULL").fetchone()
        alerts = con.execute("SELECT count(*) FROM alerts WHERE dataset = ?", [DATASET]).fetchone()
        dead = con.execute("SELECT count(*) FROM dead_letters WHERE dataset = ?", [DATASET]).fetchone()
        open_events = st.processor.open_events()
    assert stored and win and scored and alerts and dead
    return StatsOut(
        events_stored=int(stored[0]),
        events_in_closed_windows=int(win[1]),
        events_scored=int(scored[0]),
        open_window_events=open_events,
        windows=int(win[0]),
        alerts=int(alerts[0]),
        dead_letters=int(dead[0]),
        model=st.processor.model_name,
    )
