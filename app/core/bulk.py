"""Bulk inserts of rows the application computes (a layoff's tens of thousands of notifications).

On PostgreSQL they go in by COPY on the session's own connection, so inside its transaction: measured at
full scale, 75,000 outbox rows took 6.4 s as one executemany, about half that by COPY. Elsewhere (SQLite) one
Core executemany. Either way every row must have the same keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb
from sqlalchemy import JSON, Dialect, Table, insert
from sqlalchemy.orm import Session


class JsonText(str):
    """A JSON column's value already serialised (the caller had to serialise it anyway to check it): COPY sends the
    text as it is instead of encoding the object a second time; the executemany path decodes it back."""


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(table), [{k: _decoded(v) for k, v in row.items()} for row in rows])
        return
    session.flush()  # rows may refer to objects the session has not written yet
    connection = session.connection()
    columns = list(rows[0])
    # Each value goes through its column type's bind processing, as in an executemany (e.g. UTCDateTime refuses
    # naive times), then psycopg writes it in COPY's text format.
    process = [_processor(table.c[c].type, connection.dialect) for c in columns]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    raw = connection.connection.driver_connection
    assert raw is not None  # a live connection of the session's transaction
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([row[c] if p is None else p(row[c]) for c, p in zip(columns, process, strict=True)])


def _decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, JsonText) else value


def _as_jsonb(value: Any) -> Any:
    if value is None or isinstance(value, JsonText):
        return None if value is None else str(value)  # COPY's text format: the server parses it
    return Jsonb(value)


def _processor(column_type: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    if isinstance(column_type, JSON):
        # psycopg's SQLAlchemy dialect leaves JSON to psycopg's adapters, which COPY needs told.
        return _as_jsonb
    processor: Callable[[Any], Any] | None = column_type.bind_processor(dialect)
    return processor
