"""The project store's shared state on PostgreSQL, for several service workers on one database.

:class:`PgStore` has the methods of :class:`misuse.store.duck.Store` that the live service uses
(alerts, feedback, dead letters, models, schema version) and a ``con`` that accepts the same
``execute(sql, params)`` calls as a DuckDB connection (``?`` placeholders, ``fetchone``,
``fetchall``, ``df``, ``begin``/``commit``/``rollback``), so the service's routes run unchanged on
either backend as long as their SQL is common to both. Files stay in the project folder: saved
models under ``models/<name>/`` and Parquet events under ``events/<dataset>/`` (several workers
share that folder or a copy of it).

Tables are created under a transaction-scoped advisory lock, so workers starting together do not
race; ``meta.schema_version`` is checked on open and a newer schema is refused. The driver is
psycopg 3 (``pip install 'misuse[service]'``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from misuse.alerts.model import Alert
from misuse.errors import StoreError
from misuse.store.tables import ALERT_COLS, DDL, SCHEMA_VERSION, TableStore, alert_rows

_LOCK_KEY = 0x6D697375  # "misu": serialises schema creation between workers
_DDL = [*DDL, "CREATE INDEX IF NOT EXISTS alerts_window_end ON alerts (window_end)"]


def redact(url: str) -> str:
    """A connection URL without its password, for messages."""
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, user = head.partition("://")
    return f"{scheme}://{user.split(':', 1)[0]}@{tail}"


def _pg_sql(sql: str) -> str:
    """DuckDB-style ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgResult:
    """The result of :meth:`PgConnection.execute`: ``fetchone``, ``fetchall``, ``df``."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def fetchone(self) -> tuple[Any, ...] | None:
        """The next row, or None."""
        row = self._cur.fetchone() if self._cur.description else None
        return tuple(row) if row is not None else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        """All remaining rows."""
        return [tuple(r) for r in self._cur.fetchall()] if self._cur.description else []

    def df(self) -> pd.DataFrame:
        """All remaining rows as a frame with the result's column names."""
        cols = [d.name for d in self._cur.description or []]
        return pd.DataFrame(self.fetchall(), columns=cols)


class PgConnection:
    """A psycopg connection that speaks the DuckDB connection calls the service makes.

    Statements run in autocommit mode unless inside ``begin()`` ... ``commit()``/``rollback()``.
    Not for concurrent use: the service serialises calls with its lock, as with DuckDB.
    """

    def __init__(self, url: str) -> None:
        import psycopg

        self._psycopg = psycopg
        try:
            self.raw = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"{redact(url)}: cannot connect to PostgreSQL: {str(exc).strip()}") from None
        self.raw.execute("SET TIME ZONE 'UTC'")

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> PgResult:
        """Run one statement with ``?`` placeholders."""
        return PgResult(self.raw.execute(_pg_sql(sql), list(params or [])))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for each parameter row."""
        with self.raw.cursor() as cur:
            cur.executemany(_pg_sql(sql), [list(r) for r in rows])

    def begin(self) -> None:
        """Open a transaction."""
        self.raw.execute("BEGIN")

    def commit(self) -> None:
        """Commit the open transaction."""
        self.raw.execute("COMMIT")

    def rollback(self) -> None:
        """Roll the open transaction back (a no-op outside one)."""
        self.raw.execute("ROLLBACK")

    def close(self) -> None:
        """Close the connection."""
        self.raw.close()


class PgStore(TableStore):
    """A project's shared state in PostgreSQL; files (models, Parquet events) in ``root``.

    Parameters
    ----------
    url:
        ``postgresql://user:password@host:port/dbname`` (any libpq connection string).
    root:
        The project folder holding saved models and Parquet datasets.

    Examples
    --------
    >>> store = PgStore("postgresql://misuse@127.0.0.1:5432/misuse", ".misuse")  # doctest: +SKIP
    >>> store.schema_version()  # doctest: +SKIP
    1
    """

    def __init__(self, url: str, root: str | Path) -> None:
        self.url = url
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.con = PgConnection(url)
        try:
            self.con.begin()
            self.con.execute("SELECT pg_advisory_xact_lock(?)", [_LOCK_KEY])
            for stmt in _DDL:
                self.con.execute(stmt)
            row = self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                self.con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"{redact(url)}: schema version {row[0]} is newer than this misuse ({SCHEMA_VERSION}); "
                    "upgrade misuse"
                )
            self.con.commit()
        except BaseException:
            self.con.rollback()
            self.con.close()
            raise

    def dataset_names(self) -> list[str]:
        """Datasets with Parquet parts in the project folder."""
        folder = self.root / "events"
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.exists() else []

    # ----- alerts -------------------------------------------------------------------------------
    def add_alerts(self, alerts: Iterable[Alert], dataset: str = "", model: str = "") -> int:
        """Store alerts; an alert id already stored is replaced (idempotent re-runs)."""
        rows = alert_rows(alerts, dataset, model)
        if rows:
            cols = [c.strip() for c in ALERT_COLS.split(",")]
            update = ", ".join(f"{c} = excluded.{c}" for c in cols[1:])
            self.con.executemany(
                f"INSERT INTO alerts ({ALERT_COLS}) VALUES ({', '.join('?' * len(cols))}) "
                f"ON CONFLICT (alert_id) DO UPDATE SET {update}",
                rows,
            )
        return len(rows)

    def add_new_alerts(self, alerts: Iterable[Alert], dataset: str = "", model: str = "") -> list[str]:
        """Store alerts whose id is not stored yet; returns the ids stored by this call.

        Two workers storing the same alert at once store it once: the second waits for the first's
        transaction and then skips the row.
        """
        rows = alert_rows(alerts, dataset, model)
        if not rows:
            return []
        cols = list(zip(*rows, strict=True))
        types = [
            "varchar", "varchar", "timestamptz", "timestamptz", "float8", "float8", "varchar", "varchar",
            "varchar", "varchar", "varchar", "varchar", "timestamptz", "varchar", "varchar", "varchar",
        ]  # fmt: skip
        unnest = ", ".join(f"?::{t}[]" for t in types)
        got = self.con.execute(
            f"INSERT INTO alerts ({ALERT_COLS}) SELECT * FROM unnest({unnest}) "
            "ON CONFLICT (alert_id) DO NOTHING RETURNING alert_id",
            [list(c) for c in cols],
        ).fetchall()
        return [str(r[0]) for r in got]

    # ----- models ---------------------------------------------------------------------------------
    def register_model(self, name: str, kind: str, info: dict[str, Any], activate: bool = True) -> None:
        """Record a saved model; the newest registered model of a kind becomes active."""
        self.con.begin()
        try:
            if activate:
                self.con.execute("UPDATE models SET active = false WHERE kind = ?", [kind])
            self.con.execute(
                "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "kind = excluded.kind, path = excluded.path, created_at = excluded.created_at, "
                "active = excluded.active, info = excluded.info",
                [name, kind, str(self.model_dir(name)), datetime.now(UTC), activate, json.dumps(info, default=str)],
            )
            self.con.commit()
        except BaseException:
            self.con.rollback()
            raise
