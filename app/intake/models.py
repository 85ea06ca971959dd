"""Inbound HR events already processed (idempotency by webhook-id, and their order per employee)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, JSONType, UTCDateTime


class InboundEvent(Base):
    """Webhook ids already processed: a replay changes nothing.

    Also the order of an employee's HR events: `occurred_at` is the event's own time (its body's `timestamp`),
    and the latest one among an employee's exit events is the one a newer event must not be older than.
    Rows written before these columns existed have them null and take no part in that order.
    """

    __tablename__ = "inbound_event"

    webhook_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    source: Mapped[str] = mapped_column(String(50))
    event_type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    result: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Not a foreign key: an event may name an employee that does not exist (yet), e.g. employee.updated creating it.
    employee_id: Mapped[str | None] = mapped_column(String(100))
    occurred_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_inbound_event_employee_occurred", "employee_id", "occurred_at"),)
