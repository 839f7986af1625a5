"""The embedded project store: DuckDB for alerts, feedback, models and bookkeeping; Parquet for events.

A project folder (``.misuse/`` by default) holds::

    misuse.duckdb          tables meta, datasets, alerts, feedback, models, dead_letters
    events/<dataset>/      part-00000.parquet, ... (the columnar event form)
    models/<name>/         saved detectors (JSON + npz)

``meta.schema_version`` is checked on open; a store written by a newer version is refused.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from misuse.alerts.model import Alert
from misuse.errors import StoreError

SCHEMA_VERSION = 1

_DDL = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS datasets (
        name VARCHAR PRIMARY KEY, created_at TIMESTAMPTZ, rows BIGINT, bad_records BIGINT,
        sources VARCHAR, path VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS alerts (
        alert_id VARCHAR PRIMARY KEY, entity VARCHAR, window_start TIMESTAMPTZ, window_end TIMESTAMPTZ,
        score DOUBLE, threshold DOUBLE, severity VARCHAR, misuse_type VARCHAR, detector VARCHAR,
        summary VARCHAR, contributions VARCHAR, evidence VARCHAR, created_at TIMESTAMPTZ,
        status VARCHAR, dataset VARCHAR, model VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS feedback (
        alert_id VARCHAR, verdict VARCHAR, analyst VARCHAR, note VARCHAR, created_at TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS models (
        name VARCHAR PRIMARY KEY, kind VARCHAR, path VARCHAR, created_at TIMESTAMPTZ,
        active BOOLEAN, info VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        dataset VARCHAR, source VARCHAR, line BIGINT, reason VARCHAR, raw VARCHAR, created_at TIMESTAMPTZ)""",
]
VERDICTS = ("true_positive", "false_positive")


class Store:
    """A project's state on disk.

    Parameters
    ----------
    root:
        The project folder; created when ``create`` is true.
    create:
        Create the folder and tables if missing (else a missing store is an error).

    Examples
    --------
    >>> import tempfile
    >>> s = Store(Path(tempfile.mkdtemp()) / ".misuse")
    >>> s.schema_version()
    1
    """

    def __init__(self, root: str | Path, create: bool = True) -> None:
        self.root = Path(root)
        db = self.root / "misuse.duckdb"
        if not db.exists() and not create:
            raise StoreError(f"{self.root}: no project store here (run `misuse ingest` first or pass --project)")
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(db))
        except duckdb.Error as exc:
            raise StoreError(f"{db}: cannot open the store: {exc}") from None
        for stmt in _DDL:
            self.con.execute(stmt)
        row = self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            self.con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        elif int(row[0]) > SCHEMA_VERSION:
            raise StoreError(
                f"{db}: schema version {row[0]} is newer than this misuse ({SCHEMA_VERSION}); upgrade misuse"
            )

    def close(self) -> None:
        """Close the database connection."""
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        """The schema version recorded in the store."""
        row = self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    # ----- events -------------------------------------------------------------------------
    def events_dir(self, dataset: str) -> Path:
        """Folder of a dataset's Parquet parts."""
        return self.root / "events" / dataset

    def write_events(
        self, dataset: str, batches: Iterable[pd.DataFrame], sources: list[str], replace: bool = True
    ) -> int:
        """Write event batches as Parquet parts of ``dataset``; returns the number of rows."""
        folder = self.events_dir(dataset)
        if replace and folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        start = len(list(folder.glob("part-*.parquet")))
        rows = 0
        for i, frame in enumerate(batches, start=start):
            table = pa.Table.from_pandas(frame, preserve_index=False)
            pq.write_table(table, folder / f"part-{i:05d}.parquet")
            rows += len(frame)
        total = self.count_events(dataset)
        self.con.execute(
            "INSERT OR REPLACE INTO datasets VALUES (?, ?, ?, COALESCE((SELECT bad_records FROM datasets "
            "WHERE name = ?), 0), ?, ?)",
            [dataset, datetime.now(UTC), total, dataset, json.dumps(sources), str(folder)],
        )
        return rows

    def count_events(self, dataset: str) -> int:
        """Rows stored for a dataset."""
        parts = sorted(self.events_dir(dataset).glob("part-*.parquet"))
        return sum(pq.ParquetFile(p).metadata.num_rows for p in parts)

    def events(self, dataset: str, columns: list[str] | None = None) -> pd.DataFrame:
        """All events of a dataset as one frame (sorted by time)."""
        frames = list(self.iter_events(dataset, columns))
        if not frames:
            raise StoreError(f"{self.root}: dataset '{dataset}' has no events (known: {self.dataset_names()})")
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        return frame.sort_values("ts", kind="stable").reset_index(drop=True)

    def iter_events(self, dataset: str, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        """A dataset's events part by part (bounded memory)."""
        for p in sorted(self.events_dir(dataset).glob("part-*.parquet")):
            yield pq.read_table(p, columns=columns).to_pandas()

    def dataset_names(self) -> list[str]:
        """Names of the datasets in the store."""
        return [r[0] for r in self.con.execute("SELECT name FROM datasets ORDER BY name").fetchall()]

    def datasets(self) -> pd.DataFrame:
        """The datasets table."""
        return self.con.execute("SELECT * FROM datasets ORDER BY name").df()

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

    # ----- alerts -------------------------------------------------------------------------
    def add_alerts(self, alerts: Iterable[Alert], dataset: str = "", model: str = "") -> int:
        """Store alerts; an alert id already stored is replaced (idempotent re-runs)."""
        rows = [
            [
                a.alert_id,
                a.entity,
                a.window_start,
                a.window_end,
                a.score,
                a.threshold,
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
        if rows:
            self.con.executemany("INSERT OR REPLACE INTO alerts VALUES (" + ", ".join("?" * 16) + ")", rows)
        return len(rows)

    def alerts(
        self,
        *,
        misuse_type: str | None = None,
        entity: str | None = None,
        status: str | None = None,
        dataset: str | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Stored alerts, most severe and newest first, optionally filtered."""
        where, args = [], []
        for col, val in (
            ("misuse_type", misuse_type),
            ("entity", entity),
            ("status", status),
            ("dataset", dataset),
        ):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        q = "SELECT * FROM alerts"
        if where:
            q += " WHERE " + " AND ".join(where)
        q += " ORDER BY window_start, score DESC"
        if limit is not None:
            q += f" LIMIT {int(limit)}"
        df = self.con.execute(q, args).df()
        for col in ("contributions", "evidence"):
            df[col] = df[col].map(json.loads)
        return df

    def clear_alerts(self, dataset: str, model: str) -> None:
        """Drop the alerts of one dataset/model pair (before a re-run of detection)."""
        self.con.execute("DELETE FROM alerts WHERE dataset = ? AND model = ?", [dataset, model])

    def acknowledge(self, alert_id: str) -> None:
        """Mark an alert as acknowledged."""
        self._require_alert(alert_id)
        self.con.execute("UPDATE alerts SET status = 'acknowledged' WHERE alert_id = ?", [alert_id])

    def add_feedback(self, alert_id: str, verdict: str, analyst: str = "", note: str = "") -> None:
        """Record an analyst's verdict on an alert: true_positive or false_positive."""
        if verdict not in VERDICTS:
            raise StoreError(f"feedback verdict must be one of {VERDICTS}, got {verdict!r}")
        self._require_alert(alert_id)
        self.con.execute(
            "INSERT INTO feedback VALUES (?, ?, ?, ?, ?)",
            [alert_id, verdict, analyst, note, datetime.now(UTC)],
        )

    def feedback(self) -> pd.DataFrame:
        """All analyst feedback, oldest first."""
        return self.con.execute("SELECT * FROM feedback ORDER BY created_at").df()

    def _require_alert(self, alert_id: str) -> None:
        if self.con.execute("SELECT 1 FROM alerts WHERE alert_id = ?", [alert_id]).fetchone() is None:
            raise StoreError(f"no alert with id {alert_id!r}")

    # ----- models -------------------------------------------------------------------------
    def model_dir(self, name: str) -> Path:
        """Folder a model is saved in."""
        return self.root / "models" / name

    def register_model(self, name: str, kind: str, info: dict[str, Any], activate: bool = True) -> None:
        """Record a saved model; the newest registered model of a kind becomes active."""
        if activate:
            self.con.execute("UPDATE models SET active = false WHERE kind = ?", [kind])
        self.con.execute(
            "INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?, ?, ?)",
            [
                name,
                kind,
                str(self.model_dir(name)),
                datetime.now(UTC),
                activate,
                json.dumps(info, default=str),
            ],
        )

    def models(self) -> pd.DataFrame:
        """The models table."""
        return self.con.execute("SELECT * FROM models ORDER BY created_at").df()

    def active_model(self, kind: str) -> str | None:
        """Name of the active model of a kind, if any."""
        row = self.con.execute(
            "SELECT name FROM models WHERE kind = ? AND active ORDER BY created_at DESC LIMIT 1", [kind]
        ).fetchone()
        return str(row[0]) if row else None
