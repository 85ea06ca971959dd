"""Outbound events in tests: a webhook endpoint subscribed to everything, and the events the outbox holds."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.core.config import Settings
from app.core.db import Database, transaction
from app.notify import service as notify
from app.notify.models import OutboxMessage
from tests.support.company import EFFECTIVE


def subscribe(db: Database, settings: Settings) -> None:
    with transaction(db) as s:
        notify.create_endpoint(
            s,
            url="http://127.0.0.1:9/hooks",
            event_types=["*"],
            description="crm",
            actor="test",
            now=EFFECTIVE,
            settings=settings.model_copy(update={"webhook_allow_private": True}),
        )


def events(db: Database) -> list[tuple[str, dict[str, Any]]]:
    with db.session(write=False) as s:
        rows = s.scalars(
            select(OutboxMessage).where(OutboxMessage.category == "event").order_by(OutboxMessage.id)
        ).all()
        return [(r.event_type or "", r.payload.get("data", r.payload)) for r in rows]
