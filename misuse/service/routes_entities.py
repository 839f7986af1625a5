"""Entity routes: the entities seen on the stream and their behaviour profiles."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from misuse.service.deps import StateDep, ViewerDep
from misuse.service.errors import ApiError, error_docs
from misuse.service.routes_alerts import iso, query_alerts
from misuse.service.schemas import AlertOut, EntityOut, ProfileOut

router = APIRouter(prefix="/api/entities", tags=["entities"], responses=error_docs(500))


@router.get("", response_model=list[EntityOut], summary="Entities seen on the stream", responses=error_docs(401, 422))
def list_entities(
    st: StateDep,
    _who: ViewerDep,
    limit: Annotated[int, Query(ge=1, le=10000)] = 500,
) -> list[EntityOut]:
    """Entities with their event counts, first/last seen and alert counts, busiest first."""
    with st.lock:
        rows = st.store.con.execute(
            """SELECT e.entity, e.n, e.first_ts, e.last_ts, coalesce(a.n, 0), coalesce(a.n_open, 0)
               FROM (SELECT entity, count(*) AS n, min(ts) AS first_ts, max(ts) AS last_ts
                     FROM stream_events GROUP BY entity) e
               LEFT JOIN (SELECT entity, count(*) AS n, count(*) FILTER (WHERE status = 'open') AS n_open
                          FROM alerts GROUP BY entity) a USING (entity)
               ORDER BY e.n DESC, e.entity LIMIT ?""",
            [limit],
        ).fetchall()
    return [
        EntityOut(
            entity=r[0],
            events=r[1],
            first_seen=iso(r[2]),
            last_seen=iso(r[3]),
            alerts=r[4],
            open_alerts=r[5],
        )
        for r in rows
    ]


@router.get(
    "/{entity}/profile",
    response_model=ProfileOut,
    summary="An entity's behaviour profile",
    responses=error_docs(401, (404, "no events of this entity on the stream"), 422),
)
def profile(
    st: StateDep,
    _who: ViewerDep,
    entity: str,
    top: Annotated[int, Query(ge=1, le=100)] = 10,
) -> ProfileOut:
    """Activity by weekday and hour, footprint (top actions and peers), learned baseline, recent alerts."""
    with st.lock:
        con = st.store.con
        n = con.execute("SELECT count(*) FROM stream_events WHERE entity = ?", [entity]).fetchone()
        if not n or not n[0]:
            raise ApiError(404, f"no events for entity {entity!r} on the stream")
        grid = con.execute(
            "SELECT extract(isodow FROM ts AT TIME ZONE 'UTC') - 1, extract(hour FROM ts AT TIME ZONE 'UTC'), "
            "count(*) FROM stream_events WHERE entity = ? GROUP BY 1, 2",
            [entity],
        ).fetchall()
        actions = con.execute(
            "SELECT action, count(*) AS n FROM stream_events WHERE entity = ? GROUP BY action "
            "ORDER BY n DESC, action LIMIT ?",
            [entity, top],
        ).fetchall()
        peers = con.execute(
            "SELECT peer, count(*) AS n FROM stream_events WHERE entity = ? AND peer <> '' GROUP BY peer "
            "ORDER BY n DESC, peer LIMIT ?",
            [entity, top],
        ).fetchall()
    activity = [[0] * 24 for _ in range(7)]
    for d, h, c in grid:
        if d is not None and h is not None:
            activity[int(d)][int(h)] = int(c)
    model = st.processor.model
    baseline = dict(model.baseline.medians_.get(entity, {})) if model is not None else {}
    _, recent = query_alerts(st, ["entity = ?"], [entity], 10)
    return ProfileOut(
        entity=entity,
        events=int(n[0]),
        activity=activity,
        actions=[{"name": a, "count": c} for a, c in actions],
        peers=[{"name": p, "count": c} for p, c in peers],
        baseline=baseline,
        recent_alerts=[AlertOut(**a) for a in recent],
    )
