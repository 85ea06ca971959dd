"""`notify.emit_many` (a batch of handovers' events in one insert) writes what `notify.emit` writes for each event,
one call at a time: same rows, same order of events, whoever is subscribed.

Endpoints: one subscribed to everything, one to approvals only, one to creations only, one subscribed to
everything but disabled. Same rows (type, endpoint, envelope, status, times), same order of events; on both
databases (COPY on PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from app.core.config import Settings
from app.core.db import Database, transaction
from app.notify import service as notify
from app.notify.models import OutboxMessage, WebhookEndpoint
from tests.conftest import START

EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("handover.approved", {"handover_id": 1, "effective_at": START, "leaver": "e0", "reason": "résignation"}),
    ("client.reassigned", {"handover_id": 1, "clients": [{"client": "c1", "from": "e0", "to": "e1"}], "undo": False}),
    ("handover.executed", {"handover_id": 1, "clients_moved": 3, "value": decimal.Decimal("12.50")}),
    ("handover.approved", {"handover_id": 2, "effective_at": START + dt.timedelta(days=1), "leaver": "e1"}),
    ("handover.created", {"handover_id": 3, "leaver": "e2"}),
]


def _endpoints(db: Database, settings: Settings) -> dict[str, int]:
    allowed = settings.model_copy(update={"webhook_allow_private": True})
    ids: dict[str, int] = {}
    with transaction(db) as s:
        for name, types in (("all", ["*"]), ("approvals", ["handover.approved"]), ("created", ["handover.created"])):
            e = notify.create_endpoint(
                s,
                url=f"http://127.0.0.1:9/{name}",
                event_types=types,
                description=name,
                actor="t",
                now=START,
                settings=allowed,
            )
            s.flush()
            ids[name] = e.id
        off = notify.create_endpoint(
            s,
            url="http://127.0.0.1:9/off",
            event_types=["*"],
            description="off",
            actor="t",
            now=START,
            settings=allowed,
        )
        s.flush()
        s.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == off.id).values(status="disabled"))
    return ids


def _rows(db: Database) -> list[list[tuple[Any, ...]]]:
    """The outbox's event rows, grouped per event in insertion order, each group sorted by endpoint."""
    m = OutboxMessage
    with db.session(write=False) as s:
        rows = s.execute(
            select(
                m.event_type,
                m.payload,
                m.endpoint_id,
                m.category,
                m.channel,
                m.status,
                m.priority,
                m.attempts,
                m.not_before,
                m.next_attempt_at,
                m.created_at,
                m.message_id,
            ).order_by(m.id)
        ).all()
    for r in rows:
        assert re.fullmatch(r"msg_[0-9a-f]{32}", r.message_id), r.message_id
    assert len({r.message_id for r in rows}) == len(rows)
    groups: list[list[tuple[Any, ...]]] = []
    for r in rows:
        key = tuple(r[: 12 - 1])
        if groups and (groups[-1][0][0], groups[-1][0][1]) == (r[0], r[1]):
            groups[-1].append(key)
        else:
            groups.append([key])
    return [sorted(g, key=lambda x: x[2]) for g in groups]


def test_emit_many_writes_what_emit_writes_event_by_event(db: Database, settings: Settings) -> None:
    ids = _endpoints(db, settings)
    now = START + dt.timedelta(hours=1)
    with transaction(db) as s:
        for event_type, payload in EVENTS:
            notify.emit(s, event_type, payload, now=now)
    one_by_one = _rows(db)
    with transaction(db) as s:
        s.execute(delete(OutboxMessage))
    with transaction(db) as s:
        notify.emit_many(s, EVENTS, now=now)
    assert _rows(db) == one_by_one
    # Who got what: approvals to "all" and "approvals", creations to "all" and "created", the rest to "all" only.
    assert [[r[2] for r in g] for g in one_by_one] == [
        sorted([ids["all"], ids["approvals"]]),
        [ids["all"]],
        [ids["all"]],
        sorted([ids["all"], ids["approvals"]]),
        sorted([ids["all"], ids["created"]]),
    ]
    assert one_by_one[0][0][1]["data"]["reason"] == "résignation"
    assert one_by_one[2][0][1]["data"]["value"] == 12.5


def test_emit_into_holds_the_event_back_and_emit_many_of_nothing_writes_nothing(
    db: Database, settings: Settings
) -> None:
    _endpoints(db, settings)
    held: notify.Events = []
    with transaction(db) as s:
        notify.emit(s, "handover.created", {"handover_id": 9}, now=START, into=held)
        notify.emit_many(s, [], now=START)
    assert held == [("handover.created", {"handover_id": 9})]
    assert _rows(db) == []


def test_unknown_event_types_are_refused_before_anything_is_written(db: Database, settings: Settings) -> None:
    _endpoints(db, settings)
    with transaction(db) as s:
        with pytest.raises(ValueError, match="handover.exploded"):
            notify.emit_many(s, [("handover.created", {}), ("handover.exploded", {})], now=START)
        with pytest.raises(ValueError, match="handover.exploded"):
            notify.emit(s, "handover.exploded", {}, now=START, into=[])
    assert _rows(db) == []
