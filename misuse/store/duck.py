"""The embedded project store: DuckDB for events, alerts, feedback, models and bookkeeping.

A project folder (``.misuse/`` by default) holds::

    misuse.duckdb          tables meta, datasets, alerts, feedback, models, dead_letters; view events
    events/<dataset>/      part-00000.parquet, ... (the columnar event form)
    models/<name>/         saved detectors (JSON + npz)

Events are stored as Parquet parts (what the scale-out path reads too) and queried in DuckDB
through the view ``events``: every stored event with a ``dataset`` column, the event columns and
the union of the datasets' ``num.*`` / ``cat.*`` columns. The view is rebuilt when the store is
opened and after every write of events, so it follows the parts and the folder's location.

``meta.schema_version`` is checked on open; a store written by a newer version is refused.
"""

from __future__ import annotations

import json
import logging
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
from misuse.events import BASE_COLUMNS
from misuse.store.tables import ALERT_COLS, DDL, SCHEMA_VERSION, VERDICTS, TableStore, alert_rows

__all__ = ["SCHEMA_VERSION", "VERDICTS", "Store"]

log = logging.getLogger(__name__)
#: the view ``events`` of a store without events: the columns, no rows
_NO_EVENTS = (
    "SELECT "
    + ", ".join(f"NULL::{'TIMESTAMPTZ' if c == 'ts' else 'VARCHAR'} AS {c}" for c in ("dataset", *BASE_COLUMNS))
    + " WHERE false"
)


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
    >>> from misuse.events import Event, events_to_frame
    >>> s = Store(Path(tempfile.mkdtemp()) / ".misuse")
    >>> s.schema_version()
    1
    >>> frame = events_to_frame([Event(ts=0.0, entity="cam1", kind="flow", action="mqtt")])
    >>> s.write_events("lab", [frame], ["x.pcap"])
    1
    >>> s.con.execute("SELECT dataset, entity, action FROM events").fetchall()
    [('lab', 'cam1', 'mqtt')]
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
        self.refresh_events_view()

    # ----- events -------------------------------------------------------------------------
    def write_events(
        self, dataset: str, batches: Iterable[pd.DataFrame], sources: list[str], replace: bool = True
    ) -> int:
        """Write event batches as Parquet parts of ``dataset``; returns the number of rows."""
        folder = self.events_dir(dataset)
        if replace and folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        start = len(self.event_parts(dataset))
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
        self.refresh_events_view()
        return rows

    def count_events(self, dataset: str) -> int:
        """Rows stored for a dataset."""
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.event_parts(dataset))

    def refresh_events_view(self) -> list[str]:
        """(Re)create the DuckDB view ``events`` over the Parquet parts of every stored dataset.

        The view has a ``dataset`` column, the event columns and every dataset's ``num.*`` and
        ``cat.*`` columns (NULL where a dataset has none). A dataset whose parts DuckDB cannot read
        is left out of the view, with a warning in the log.

        Returns
        -------
        list[str]
            The datasets left out.
        """
        selects = {}
        for name in self.dataset_names():
            files = ", ".join(_literal(str(p.resolve())) for p in self.event_parts(name))
            if files:
                selects[name] = (
                    f"SELECT {_literal(name)} AS dataset, * FROM read_parquet([{files}], union_by_name = true)"
                )
        try:
            self._create_events_view(list(selects.values()))
            return []
        except duckdb.Error as exc:  # some dataset DuckDB cannot read: find it and leave only it out
            log.debug("%s: the events view over every dataset failed (%s); checking them one by one", self.root, exc)
        readable, left_out = [], []
        for name, select in selects.items():
            try:
                self.con.execute(f"DESCRIBE {select}")
            except duckdb.Error as exc:
                log.warning("%s: dataset %r left out of the events view: %s", self.root, name, exc)
                left_out.append(name)
            else:
                readable.append(select)
        self._create_events_view(readable)
        return left_out

    def _create_events_view(self, selects: list[str]) -> None:
        body = " UNION ALL BY NAME ".join(selects) if selects else _NO_EVENTS
        self.con.execute(f"CREATE OR REPLACE VIEW events AS {body}")

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


def _literal(text: str) -> str:
    """A SQL string literal.

    >>> _literal("it's")
    "'it''s'"
    """
    return "'" + text.replace("'", "''") + "'"
