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
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from misuse.alerts.model import Alert
from misuse.errors import StoreError
from misuse.store.tables import ALERT_COLS, DDL, SCHEMA_VERSION, VERDICTS, TableStore, alert_rows

__all__ = ["SCHEMA_VERSION", "VERDICTS", "Store"]


class Store(TableStore):
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
        for stmt in DDL:
            self.con.execute(stmt)
        row = self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            self.con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        elif int(row[0]) > SCHEMA_VERSION:
            raise StoreError(
                f"{db}: schema version {row[0]} is newer than this misuse ({SCHEMA_VERSION}); upgrade misuse"
            )

    # ----- events -------------------------------------------------------------------------
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

    def dataset_names(self) -> list[str]:
        """Names of the datasets in the store."""
        return [r[0] for r in self.con.execute("SELECT name FROM datasets ORDER BY name").fetchall()]

    def datasets(self) -> pd.DataFrame:
        """The datasets table."""
        return self.con.execute("SELECT * FROM datasets ORDER BY name").df()

    # ----- alerts -------------------------------------------------------------------------
    def add_alerts(self, alerts: Iterable[Alert], dataset: str = "", model: str = "") -> int:
        """Store alerts; an alert id already stored is replaced (idempotent re-runs)."""
        rows = alert_rows(alerts, dataset, model)
        if rows:
            self.con.executemany(f"INSERT OR REPLACE INTO alerts ({ALERT_COLS}) VALUES ({', '.join('?' * 16)})", rows)
        return len(rows)

    def clear_alerts(self, dataset: str, model: str) -> None:
        """Drop the alerts of one dataset/model pair (before a re-run of detection)."""
        self.con.execute("DELETE FROM alerts WHERE dataset = ? AND model = ?", [dataset, model])

    # ----- models -------------------------------------------------------------------------
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
