"""The fastest raw way to write rows, used for the floors the service is compared with.

PostgreSQL: `COPY … FROM STDIN` through psycopg's `cursor.copy`. SQLite: the driver's `executemany` on one
prepared INSERT (SQLite has no faster bulk path). Both run on a raw DBAPI connection of an engine made by
`app.core.db.make_engine`, so the connection settings (WAL, synchronous, foreign keys) are the service's own.
"""

from __future__ import annotations

import datetime as dt
import enum
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


def _copy_text(value: Any) -> str:
    # COPY's text format: \N for NULL, backslash escapes for the four characters that delimit it.
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\\\x" + bytes(value).hex()
    if isinstance(value, dt.datetime | dt.date):
        text = value.isoformat()
    elif isinstance(value, dict | list):
        text = json.dumps(value)
    else:
        text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class Prepared:
    """Rows serialised before the timed part: COPY text (PostgreSQL) or converted value lists (SQLite).

    The floor measures what the database does; formatting rows in Python overlapped with the database only when
    a core was free (7.2 s quiet vs 12.5 s busy for the same floor), so it is done ahead, untimed."""

    def __init__(self, table: str, columns: Sequence[str], payload: bytes | list[list[Any]], count: int) -> None:
        self.table, self.columns, self.payload, self.count = table, list(columns), payload, count


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

    def prepare(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Prepared:
        """Serialise rows for `copy_prepared`, outside the timed part."""
        if self.dialect == "postgresql":
            lines = ["\t".join(_copy_text(v) for v in row) + "\n" for row in rows]
            return Prepared(table, columns, "".join(lines).encode(), len(lines))
        values = [[_sqlite_value(v) for v in row] for row in rows]
        return Prepared(table, columns, values, len(values))

    def copy_prepared(self, prepared: Prepared) -> int:
        """Write prepared rows: COPY FROM STDIN of the text (PostgreSQL), executemany (SQLite)."""
        cols = ", ".join(prepared.columns)
        if self.dialect == "postgresql":
            assert isinstance(prepared.payload, bytes)
            with self.conn.cursor() as cur, cur.copy(f"COPY {prepared.table} ({cols}) FROM STDIN") as copy:
                view = memoryview(prepared.payload)
                for start in range(0, len(view), 1 << 20):
                    copy.write(view[start : start + (1 << 20)])
            return prepared.count
        marks = ", ".join("?" for _ in prepared.columns)
        cur = self.conn.cursor()
        cur.executemany(f"INSERT INTO {prepared.table} ({cols}) VALUES ({marks})", prepared.payload)
        cur.close()
        return prepared.count

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
