"""The fastest raw way to write rows, used for the floors the service is compared with.

PostgreSQL: `COPY … FROM STDIN` through psycopg's `cursor.copy`. SQLite: the driver's `executemany` on one
prepared INSERT (SQLite has no faster bulk path). Both run on a raw DBAPI connection of an engine made by
`app.core.db.make_engine`, so the connection settings (WAL, synchronous, foreign keys) are the service's own.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any


def _sqlite_value(value: Any) -> Any:
    # What SQLAlchemy's SQLite types store: naive UTC "YYYY-MM-DD HH:MM:SS.ffffff", ISO dates, JSON text.
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


def _pg_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


class RawWriter:
    """Bulk writes on one raw connection inside one transaction (`begin()` … `commit()`/`rollback()`)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.fairy = engine.raw_connection()
        self.conn = self.fairy.driver_connection

    def begin(self) -> None:
        if self.dialect == "sqlite":
            # The app's engine takes transaction control away from pysqlite; begin as its writers do.
            self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.commit() if self.dialect != "sqlite" else self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.rollback() if self.dialect != "sqlite" else self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.fairy.close()

    def copy(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """COPY (PostgreSQL) or executemany (SQLite); returns the number of rows."""
        n = 0
        if self.dialect == "postgresql":
            cols = ", ".join(columns)
            with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([_pg_value(v) for v in row])
                    n += 1
            return n
        marks = ", ".join("?" for _ in columns)
        values = [[_sqlite_value(v) for v in row] for row in rows]
        cur = self.conn.cursor()
        cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values)
        cur.close()
        return len(values)

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """One set-based statement; `%s`-style placeholders are rewritten to `?` for SQLite."""
        if self.dialect == "sqlite":
            sql = sql.replace("%s", "?")
            if isinstance(params, dict):
                params = {k: _sqlite_value(v) for k, v in params.items()}
            else:
                params = [_sqlite_value(v) for v in params]
        cur = self.conn.cursor()
        cur.execute(sql, params)
        count = int(cur.rowcount)
        cur.close()
        return count

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self.dialect == "sqlite":
            sql = sql.replace("%s", "?")
        cur = self.conn.cursor()
        cur.execute(sql, params)
        row = cur.fetchone()
        cur.close()
        return row[0] if row else None
