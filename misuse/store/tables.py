"""What every project store shares: the table layout and the methods written in SQL common to DuckDB
and PostgreSQL (``?`` placeholders; :mod:`misuse.store.postgres` translates them for psycopg).

:class:`TableStore` needs ``root`` (the project folder), ``con`` (a connection with ``execute(sql,
params)`` returning something with ``fetchone``/``fetchall``/``df``, and ``executemany``) and
``dataset_names``; :class:`misuse.store.duck.Store` and :class:`misuse.store.postgres.PgStore`
add what differs (opening, writing events and alerts, registering models).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import pandas as pd
import pyarrow.parquet as pq

from misuse.alerts.model import Alert
from misuse.errors import InvalidParameterError, NotFoundError, StoreError

SCHEMA_VERSION = 1
VERDICTS = ("true_positive", "false_positive")

DDL = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS datasets (
        name VARCHAR PRIMARY KEY, created_at TIMESTAMPTZ, rows BIGINT, bad_records BIGINT,
        sources VARCHAR, path VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS alerts (
        alert_id VARCHAR PRIMARY KEY, entity VARCHAR, window_start TIMESTAMPTZ, window_end TIMESTAMPTZ,
        score DOUBLE PRECISION, threshold DOUBLE PRECISION, severity VARCHAR, misuse_type VARCHAR,
        detector VARCHAR, summary VARCHAR, contributions VARCHAR, evidence VARCHAR, created_at TIMESTAMPTZ,
        status VARCHAR, dataset VARCHAR, model VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS feedback (
        alert_id VARCHAR, verdict VARCHAR, analyst VARCHAR, note VARCHAR, created_at TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS models (
        name VARCHAR PRIMARY KEY, kind VARCHAR, path VARCHAR, created_at TIMESTAMPTZ,
        active BOOLEAN, info VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        dataset VARCHAR, source VARCHAR, line BIGINT, reason VARCHAR, raw VARCHAR, created_at TIMESTAMPTZ)""",
]
ALERT_COLS = (
    "alert_id, entity, window_start, window_end, score, threshold, severity, misuse_type, detector, summary, "
    "contributions, evidence, created_at, status, dataset, model"
)


def alert_rows(alerts: Iterable[Alert], dataset: str, model: str) -> list[list[Any]]:
    """Alerts as rows in :data:`ALERT_COLS` order, sorted by id (one lock order for every writer)."""
    rows = [
        [
            a.alert_id,
            a.entity,
            a.window_start,
            a.window_end,
            float(a.score),
            float(a.threshold),
            a.severity,
            a.misuse_type,
            a.detector,
            a.summary,
            json.dumps(a.contributions, default=float),
            json.dumps(a.evidence),
            a.created_at,
            a.status,
            dataset,
            model,
        ]
        for a in alerts
    ]
    return sorted(rows, key=lambda r: str(r[0]))


class TableStore:
    """The methods both stores share (see the module docstring for what a subclass provides)."""

    root: Path
    con: Any

    def dataset_names(self) -> list[str]:
        """Names of the datasets the store knows."""
        raise StoreError(f"{type(self).__name__} does not list datasets")

    def close(self) -> None:
        """Close the database connection."""
        self.con.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        row = self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    # ----- files in the project folder ------------------------------------------------------
    def events_dir(self, dataset: str) -> Path:
        """Folder of a dataset's Parquet parts."""
        return self.root / "events" / dataset

    def model_dir(self, name: str) -> Path:
        """Folder a model is saved in."""
        return self.root / "models" / name

    def event_parts(self, dataset: str) -> list[Path]:
        """A dataset's Parquet parts, in the order they were written."""
        return sorted(self.events_dir(dataset).glob("part-*.parquet"))

    def iter_events(self, dataset: str, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        """A dataset's events part by part (bounded memory)."""
        for p in self.event_parts(dataset):
            yield pq.read_table(p, columns=columns).to_pandas()

    def events(
        self, dataset: str, columns: list[str] | None = None, tick: Callable[[int], None] | None = None
    ) -> pd.DataFrame:
        """All events of a dataset as one frame (sorted by time); ``tick(1)`` after each part read."""
        frames = []
        for frame in self.iter_events(dataset, columns):
            frames.append(frame)
            if tick is not None:
                tick(1)
        if not frames:
            raise NotFoundError(f"{self.root}: dataset '{dataset}' has no events (known: {self.dataset_names()})")
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        return frame.sort_values("ts", kind="stable").reset_index(drop=True)

    # ----- dead letters -----------------------------------------------------------------------
    def add_dead_letters(self, dataset: str, samples: list[dict[str, Any]], count: int) -> None:
        """Record bad records set aside while ingesting ``dataset``."""
        now = datetime.now(UTC)
        if samples:
            self.con.executemany(
                "INSERT INTO dead_letters VALUES (?, ?, ?, ?, ?, ?)",
                [[dataset, s["source"], s["line"], s["reason"], s["raw"], now] for s in samples],
            )
        self.con.execute("UPDATE datasets SET bad_records = ? WHERE name = ?", [count, dataset])

    def dead_letters(self, dataset: str | None = None) -> pd.DataFrame:
        """Bad records set aside, newest first."""
        q = "SELECT * FROM dead_letters"
        args: list[Any] = []
        if dataset:
            q += " WHERE dataset = ?"
            args.append(dataset)
        return self.con.execute(q + " ORDER BY created_at DESC", args).df()

    # ----- alerts and feedback ----------------------------------------------------------------
    def alerts(
        self,
        *,
        misuse_type: str | None = None,
        entity: str | None = None,
        status: str | None = None,
        dataset: str | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Stored alerts in window order (highest score first within a window), optionally filtered."""
        where, args = [], []
        for col, val in (("misuse_type", misuse_type), ("entity", entity), ("status", status), ("dataset", dataset)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        q = f"SELECT {ALERT_COLS} FROM alerts"
        if where:
            q += " WHERE " + " AND ".join(where)
        q += " ORDER BY window_start, score DESC"
        if limit is not None:
            q += f" LIMIT {int(limit)}"
        df = self.con.execute(q, args).df()
        for col in ("contributions", "evidence"):
            df[col] = df[col].map(json.loads)
        return df

    def acknowledge(self, alert_id: str) -> None:
        """Mark an alert as acknowledged."""
        self._require_alert(alert_id)
        self.con.execute("UPDATE alerts SET status = 'acknowledged' WHERE alert_id = ?", [alert_id])

    def add_feedback(self, alert_id: str, verdict: str, analyst: str = "", note: str = "") -> None:
        """Record an analyst's verdict on an alert: true_positive or false_positive."""
        if verdict not in VERDICTS:
            raise InvalidParameterError(f"feedback verdict must be one of {VERDICTS}, got {verdict!r}")
        self._require_alert(alert_id)
        self.con.execute(
            "INSERT INTO feedback VALUES (?, ?, ?, ?, ?)", [alert_id, verdict, analyst, note, datetime.now(UTC)]
        )

    def feedback(self) -> pd.DataFrame:
        """All analyst feedback, oldest first."""
        return self.con.execute("SELECT * FROM feedback ORDER BY created_at").df()

    def _require_alert(self, alert_id: str) -> None:
        if self.con.execute("SELECT 1 FROM alerts WHERE alert_id = ?", [alert_id]).fetchone() is None:
            raise NotFoundError(f"no alert with id {alert_id!r}")

    # ----- models ---------------------------------------------------------------------------------
    def models(self) -> pd.DataFrame:
        """The models table."""
        return self.con.execute("SELECT * FROM models ORDER BY created_at").df()

    def active_model(self, kind: str) -> str | None:
        """Name of the active model of a kind, if any."""
        row = self.con.execute(
            "SELECT name FROM models WHERE kind = ? AND active ORDER BY created_at DESC LIMIT 1", [kind]
        ).fetchone()
        return str(row[0]) if row else None
