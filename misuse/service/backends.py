"""Where the service keeps its state: the project's DuckDB store, or PostgreSQL for several workers.

The routes use the store's methods and portable SQL through ``store.con``; the few bulk statements
of the streaming path that differ between the two databases live here, behind one interface
(:class:`StreamTables`): store new events (idempotent by ``event_id``), record closed windows,
store new alerts (idempotent by ``alert_id``), and list the events of windows still open.

On PostgreSQL every event row also names the worker that stored it (``worker_id``), so a worker
that restarts replays only its own open windows, never another worker's.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import ClassVar, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from misuse.alerts.model import Alert
from misuse.service.config import ServiceConfig
from misuse.store.duck import Store
from misuse.store.postgres import PgStore

AnyStore = Store | PgStore


def open_store(cfg: ServiceConfig) -> AnyStore:
    """The store named by ``cfg.store_url``: the project's DuckDB file, or a PostgreSQL database."""
    if cfg.store_url == "duckdb":
        return Store(cfg.project, create=True)
    return PgStore(cfg.store_url, cfg.project)


class StreamTables(Protocol):
    """The streaming path's bulk statements on one backend."""

    def insert_new(self, recs: list[dict[str, object]], received: list[float], origin: str, now: datetime) -> set[str]:
        """Store events whose ``event_id`` is not stored yet; return the ids stored by this call."""

    def upsert_windows(self, rows: pd.DataFrame) -> None:
        """Record closed windows; a window already recorded gets the counts of its later part added."""

    def add_new_alerts(self, alerts: list[Alert], dataset: str, model: str) -> list[Alert]:
        """Store alerts whose ``alert_id`` is not stored yet; return those stored by this call."""

    def open_records(self, window: float) -> list[str]:
        """Stored event records (JSON) of windows not closed yet, oldest first."""


def stream_tables(store: AnyStore, worker: str) -> StreamTables:
    """The :class:`StreamTables` of a store (tables created if missing)."""
    if isinstance(store, PgStore):
        return PgStreamTables(store, worker)
    return DuckStreamTables(store)


_WINDOW_UPSERT = (
    "ON CONFLICT (entity, window_start) DO UPDATE SET n_events = stream_windows.n_events + excluded.n_events, "
    "score = greatest(stream_windows.score, excluded.score), alarm = stream_windows.alarm OR excluded.alarm, "
    "closed_at = excluded.closed_at"
)
_OPEN_RECORDS = """SELECT e.record FROM stream_events e
    LEFT JOIN (SELECT entity, max(window_start) AS m FROM stream_windows GROUP BY entity) w USING (entity)
    WHERE {cond}(w.m IS NULL OR extract(epoch FROM e.ts) >= w.m + ?)
    ORDER BY e.ts"""


def _new_alerts(alerts: list[Alert], stored: list[str]) -> list[Alert]:
    ids = set(stored)
    return [a for a in alerts if a.alert_id in ids]


class DuckStreamTables:
    """The streaming tables in the project's DuckDB file (one writing process)."""

    DDL: ClassVar[list[str]] = [
        """CREATE TABLE IF NOT EXISTS stream_events (
            event_id VARCHAR PRIMARY KEY, ts TIMESTAMPTZ, entity VARCHAR, kind VARCHAR, action VARCHAR,
            peer VARCHAR, origin VARCHAR, record VARCHAR,
            received_at TIMESTAMPTZ, stored_at TIMESTAMPTZ)""",
        """CREATE TABLE IF NOT EXISTS stream_windows (
            entity VARCHAR, window_start DOUBLE, n_events BIGINT, score DOUBLE, alarm BOOLEAN, model VARCHAR,
            closed_at TIMESTAMPTZ, PRIMARY KEY (entity, window_start))""",
    ]

    def __init__(self, store: Store) -> None:
        self.store = store
        for stmt in self.DDL:
            store.con.execute(stmt)

    def insert_new(self, recs: list[dict[str, object]], received: list[float], origin: str, now: datetime) -> set[str]:
        """Store events whose ``event_id`` is not stored yet; return the ids stored by this call."""
        con = self.store.con
        ids = [str(r["event_id"]) for r in recs]
        con.register("_batch_ids", pd.DataFrame({"event_id": ids}))
        try:
            known = {
                r[0]
                for r in con.execute(
                    "SELECT b.event_id FROM _batch_ids b JOIN stream_events e ON e.event_id = b.event_id"
                ).fetchall()
            }
        finally:
            con.unregister("_batch_ids")
        if known:
            keep = [i for i, e in enumerate(ids) if e not in known]
            recs, received = [recs[i] for i in keep], [received[i] for i in keep]
        if not recs:
            return set()
        n = len(recs)
        us = pa.timestamp("us", tz="UTC")
        table = pa.table(
            {
                "event_id": pa.array([str(r["event_id"]) for r in recs], pa.string()),
                "ts": pa.array((np.array([r["ts"] for r in recs], dtype="float64") * 1e6).astype("int64")).cast(us),
                "entity": pa.array([str(r["entity"]) for r in recs], pa.string()),
                "kind": pa.array([str(r.get("kind", "")) for r in recs], pa.string()),
                "action": pa.array([str(r.get("action", "")) for r in recs], pa.string()),
                "peer": pa.array([str(r.get("peer", "")) for r in recs], pa.string()),
                "origin": pa.array([origin] * n, pa.string()),
                "record": pa.array([json.dumps(r, separators=(",", ":")) for r in recs], pa.string()),
                "received_at": pa.array((np.asarray(received, dtype="float64") * 1e6).astype("int64")).cast(us),
                "stored_at": pa.array([int(now.timestamp() * 1e6)] * n, pa.int64()).cast(us),
            }
        )
        con.register("_batch_events", table)
        try:
            con.execute("INSERT INTO stream_events SELECT * FROM _batch_events")
        finally:
            con.unregister("_batch_events")
        return {str(r["event_id"]) for r in recs}

    def upsert_windows(self, rows: pd.DataFrame) -> None:
        """Record closed windows; a window already recorded gets the counts of its later part added."""
        con = self.store.con
        con.register("_batch_windows", rows)
        try:
            con.execute(
                "INSERT INTO stream_windows "
                "SELECT entity, window_start, n_events, score, alarm, model, closed_at FROM _batch_windows "
                + _WINDOW_UPSERT
            )
        finally:
            con.unregister("_batch_windows")

    def add_new_alerts(self, alerts: list[Alert], dataset: str, model: str) -> list[Alert]:
        """Store alerts whose ``alert_id`` is not stored yet; return those stored by this call."""
        if not alerts:
            return []
        ids = [a.alert_id for a in alerts]
        marks = ", ".join("?" * len(ids))
        q = f"SELECT alert_id FROM alerts WHERE alert_id IN ({marks})"
        known = {r[0] for r in self.store.con.execute(q, ids).fetchall()}
        new = [a for a in alerts if a.alert_id not in known]
        self.store.add_alerts(new, dataset=dataset, model=model)
        return new

    def open_records(self, window: float) -> list[str]:
        """Stored event records (JSON) of windows not closed yet, oldest first."""
        rows = self.store.con.execute(_OPEN_RECORDS.format(cond=""), [window]).fetchall()
        return [str(r[0]) for r in rows]


class PgStreamTables:
    """The streaming tables in PostgreSQL, shared by several workers.

    Inserts are ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` in key order, so two workers
    storing the same event or alert at once store it once (the second waits for the first's
    transaction, then skips the row) and never deadlock on each other's rows.
    """

    DDL: ClassVar[list[str]] = [
        """CREATE TABLE IF NOT EXISTS stream_events (
            event_id VARCHAR PRIMARY KEY, ts TIMESTAMPTZ, entity VARCHAR, kind VARCHAR, action VARCHAR,
            peer VARCHAR, origin VARCHAR, record VARCHAR,
            received_at TIMESTAMPTZ, stored_at TIMESTAMPTZ, worker_id VARCHAR)""",
        "CREATE INDEX IF NOT EXISTS stream_events_entity_ts ON stream_events (entity, ts)",
        "CREATE INDEX IF NOT EXISTS stream_events_worker_ts ON stream_events (worker_id, ts)",
        """CREATE TABLE IF NOT EXISTS stream_windows (
            entity VARCHAR, window_start DOUBLE PRECISION, n_events BIGINT, score DOUBLE PRECISION,
            alarm BOOLEAN, model VARCHAR, closed_at TIMESTAMPTZ, PRIMARY KEY (entity, window_start))""",
    ]

    def __init__(self, store: PgStore, worker: str) -> None:
        self.store = store
        self.worker = worker
        con = store.con
        con.begin()
        try:
            con.execute("SELECT pg_advisory_xact_lock(?)", [0x6D697376])
            for stmt in self.DDL:
                con.execute(stmt)
            con.commit()
        except BaseException:
            con.rollback()
            raise

    def insert_new(self, recs: list[dict[str, object]], received: list[float], origin: str, now: datetime) -> set[str]:
        """Store events whose ``event_id`` is not stored yet; return the ids stored by this call."""
        if not recs:
            return set()
        order = sorted(range(len(recs)), key=lambda i: str(recs[i]["event_id"]))
        recs = [recs[i] for i in order]
        got = self.store.con.execute(
            "INSERT INTO stream_events SELECT e, to_timestamp(t), en, k, a, p, ?::varchar, r, to_timestamp(rt), "
            "?::timestamptz, ?::varchar "
            "FROM unnest(?::varchar[], ?::float8[], ?::varchar[], ?::varchar[], ?::varchar[], ?::varchar[], "
            "?::varchar[], ?::float8[]) AS b(e, t, en, k, a, p, r, rt) "
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            [
                origin,
                now,
                self.worker,
                [str(r["event_id"]) for r in recs],
                [float(r["ts"]) for r in recs],  # type: ignore[arg-type]
                [str(r["entity"]) for r in recs],
                [str(r.get("kind", "")) for r in recs],
                [str(r.get("action", "")) for r in recs],
                [str(r.get("peer", "")) for r in recs],
                [json.dumps(r, separators=(",", ":")) for r in recs],
                [float(received[i]) for i in order],
            ],
        ).fetchall()
        return {str(r[0]) for r in got}

    def upsert_windows(self, rows: pd.DataFrame) -> None:
        """Record closed windows; a window already recorded gets the counts of its later part added."""
        rows = rows.sort_values(["entity", "window_start"])
        score = [None if not np.isfinite(s) else float(s) for s in rows["score"].astype("float64")]
        closed = [pd.Timestamp(t).to_pydatetime() for t in rows["closed_at"]]
        self.store.con.execute(
            "INSERT INTO stream_windows SELECT * FROM unnest(?::varchar[], ?::float8[], ?::int8[], ?::float8[], "
            "?::bool[], ?::varchar[], ?::timestamptz[]) " + _WINDOW_UPSERT,
            [
                rows["entity"].astype(str).tolist(),
                rows["window_start"].astype("float64").tolist(),
                rows["n_events"].astype("int64").tolist(),
                score,
                rows["alarm"].astype(bool).tolist(),
                rows["model"].astype(str).tolist(),
                closed,
            ],
        )

    def add_new_alerts(self, alerts: list[Alert], dataset: str, model: str) -> list[Alert]:
        """Store alerts whose ``alert_id`` is not stored yet; return those stored by this call."""
        return _new_alerts(alerts, self.store.add_new_alerts(alerts, dataset=dataset, model=model))

    def open_records(self, window: float) -> list[str]:
        """This worker's stored event records of windows not closed yet, oldest first."""
        rows = self.store.con.execute(_OPEN_RECORDS.format(cond="e.worker_id = ? AND "), [self.worker, window])
        return [str(r[0]) for r in rows.fetchall()]
