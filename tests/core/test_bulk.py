"""Bulk inserts (COPY on PostgreSQL, executemany on SQLite): the rows read back are the rows given, inside the
caller's transaction."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from sqlalchemy import Table, select
from sqlalchemy.exc import StatementError

from app.core import bulk
from app.core.db import Database, transaction
from app.notify import service as notify
from app.notify.models import OutboxMessage
from tests.support.company import START

TABLE = cast(Table, OutboxMessage.__table__)


def _rows(n: int) -> list[dict[str, Any]]:
    return [
        notify.message_row(
            kind="client",
            template="client_intro",
            locale="zh-CN" if i % 2 else "en",
            channel="email",
            recipient=f"c{i}@client.example" if i % 3 else None,
            endpoint_id=None,
            data={"client": {"name": f"客户 {i}", "external_id": f"c{i}"}, "nested": [1, None, "x\ty\nz\\"], "n": i},
            not_before=START,
            now=START,
            priority=i,
            skip=None if i % 3 else "the contact has no email address",
        )
        for i in range(n)
    ]


def _stored(db: Database) -> list[tuple[Any, ...]]:
    with db.session(write=False) as s:
        return [
            (
                m.message_id,
                m.locale,
                m.recipient,
                m.payload,
                m.status,
                m.priority,
                m.not_before,
                m.next_attempt_at,
                m.last_error,
            )
            for m in s.scalars(select(OutboxMessage).order_by(OutboxMessage.priority))
        ]


def test_rows_read_back_as_given(db: Database) -> None:
    rows = _rows(250)
    with transaction(db) as s:
        bulk.insert_rows(s, TABLE, rows)
    expected = [
        (
            r["message_id"],
            r["locale"],
            r["recipient"],
            r["payload"],
            r["status"],
            r["priority"],
            r["not_before"],
            r["next_attempt_at"],
            r["last_error"],
        )
        for r in rows
    ]
    assert _stored(db) == expected


def test_rows_go_with_the_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError), transaction(db) as s:
        bulk.insert_rows(s, TABLE, _rows(10))
        raise RuntimeError("the caller fails after the insert")
    assert _stored(db) == []


def test_nothing_to_insert(db: Database) -> None:
    with transaction(db) as s:
        bulk.insert_rows(s, TABLE, [])
    assert _stored(db) == []


def test_values_get_their_column_types_processing(db: Database) -> None:
    """As in an executemany: a naive time is refused (UTCDateTime), not stored as whatever the server assumes."""
    row = {**_rows(1)[0], "not_before": START.replace(tzinfo=None)}
    with pytest.raises((ValueError, StatementError)), transaction(db) as s:
        bulk.insert_rows(s, TABLE, [row])
    assert _stored(db) == []


def test_json_given_as_text_reads_back_as_the_object(db: Database) -> None:
    rows = _rows(20)
    for row in rows:
        row["payload"] = bulk.JsonText(json.dumps(row["payload"], ensure_ascii=False))
    with transaction(db) as s:
        bulk.insert_rows(s, TABLE, rows)
    assert [r[3] for r in _stored(db)] == [json.loads(r["payload"]) for r in rows]
    assert _stored(db)[1][3]["nested"] == [1, None, "x\ty\nz\\"]


@pytest.mark.parametrize("n", [0, 1, 3, bulk.JSON_FROM - 1, bulk.JSON_FROM, bulk.JSON_FROM + 7])
def test_among_selects_exactly_the_values_given(db: Database, n: int) -> None:
    """One `among` on both databases, below and above the size where PostgreSQL switches from ANY to JSON."""
    rows = _rows(30)
    with transaction(db) as session:
        bulk.insert_rows(session, TABLE, rows)
    m = OutboxMessage
    wanted = [f"c{i}@client.example" for i in range(0, 30, 2)] + [f"missing-{i}" for i in range(max(0, n - 15))]
    wanted = wanted[:n]
    with transaction(db) as session:
        found = set(session.scalars(select(m.recipient).where(bulk.among(session, m.recipient, wanted))))
        by_int = set(session.scalars(select(m.priority).where(bulk.among(session, m.priority, list(range(0, n, 3))))))
    assert found == {r["recipient"] for r in rows if r["recipient"] in wanted}
    assert by_int == {i for i in range(0, min(n, 30), 3)}


def test_chunks_cover_the_sequence_in_order() -> None:
    items = list(range(10))
    assert [list(c) for c in bulk.chunks(items, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert list(bulk.chunks([], 4)) == []
