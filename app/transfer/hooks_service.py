"""Applies a verified HR event exactly once per webhook-id, in the caller's transaction (no commit here).

The inbound_event row is inserted and flushed before the effect: a concurrent delivery of the same id then
waits on (PostgreSQL) or is serialised behind (SQLite) the primary key, and answers the first one's result.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import Unprocessable
from app.directory import service as directory
from app.transfer import service
from app.transfer.hooks_schemas import EmployeeUpdatedEvent, ExitCancelledEvent, ExitEvent
from app.transfer.models import InboundEvent

ACTOR = "hr_webhook"
SOURCE = "hr"

logger = logging.getLogger("handover.hooks")


def _replay(row: InboundEvent, event_type: str) -> dict[str, Any]:
    if row.event_type != event_type:
        # Same id, other event: a sender bug. The first delivery stands; the id is the idempotency key.
        logger.warning("webhook-id %s replayed as %s, first seen as %s", row.webhook_id, event_type, row.event_type)
    return {
        "webhook_id": row.webhook_id,
        "type": row.event_type,
        "replayed": True,
        "handover_id": row.result.get("handover_id"),
    }


def _claim(session: Session, webhook_id: str, event_type: str, now: dt.datetime) -> InboundEvent | None:
    """Inserts the inbound_event row; None if another delivery of this id committed it first."""
    row = InboundEvent(webhook_id=webhook_id, source=SOURCE, event_type=event_type, received_at=now, result={})
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        # Lost the race: the other delivery committed first (PostgreSQL blocked this insert until then).
        return None
    return row


def _relocate(exc: Unprocessable) -> None:
    """The workflow reports the leaver at `body.leaver` (its HTTP body); in this event it is `body.data.employee`."""
    for err in exc.errors or []:
        loc = list(err.get("loc", []))
        if loc[:2] == ["body", "leaver"]:
            err["loc"] = ["body", "data", "employee", *loc[2:]]


def _apply(
    session: Session,
    event: ExitEvent | ExitCancelledEvent | EmployeeUpdatedEvent,
    now: dt.datetime,
    settings: Settings,
) -> int | None:
    """The event's effect; returns the handover it touched, if any."""
    try:
        if isinstance(event, ExitEvent):
            d = event.data
            h = service.open_from_exit(
                session,
                leaver=d.employee,
                effective_at=d.effective_at,
                reason=d.reason,
                destination_competitor=d.destination_competitor,
                actor=ACTOR,
                now=now,
                settings=settings,
            )
            return h.id
        if isinstance(event, ExitCancelledEvent):
            cancelled = service.cancel_for_exit(
                session, leaver=event.data.employee, reason=event.data.reason, actor=ACTOR, now=now
            )
            return cancelled.id if cancelled is not None else None
    except Unprocessable as exc:
        _relocate(exc)
        raise
    directory.upsert_employees(
        session,
        [(event.data.employee, event.data.record())],
        actor=ACTOR,
        now=now,
        loc_prefix=("body", "data"),
        row_index=False,
    )
    return None


def handle_event(
    session: Session,
    event: ExitEvent | ExitCancelledEvent | EmployeeUpdatedEvent,
    *,
    webhook_id: str,
    now: dt.datetime,
    settings: Settings,
) -> dict[str, Any]:
    """Runs the event once; a known webhook-id answers the stored result and changes nothing.

    Returns `{"webhook_id", "type", "replayed", "handover_id"}`. Domain errors from the effect propagate, and
    the caller's rollback removes the inbound_event row too, so the sender's retry is processed afresh.
    """
    seen = session.get(InboundEvent, webhook_id)
    if seen is not None:
        return _replay(seen, event.type)
    row = _claim(session, webhook_id, event.type, now)
    if row is None:
        seen = session.get(InboundEvent, webhook_id, populate_existing=True)
        if seen is None:  # pragma: no cover - the conflicting row was committed, so it is visible now
            raise RuntimeError(f"inbound event {webhook_id!r} conflicted but cannot be read")
        return _replay(seen, event.type)
    handover_id = _apply(session, event, now, settings)
    row.result = {"handover_id": handover_id}
    session.flush()
    return {"webhook_id": webhook_id, "type": event.type, "replayed": False, "handover_id": handover_id}
