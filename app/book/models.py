"""The records the CRM holds beside its clients (deals, tasks, cases, …), keyed by (kind, external id)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, Numeric, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, JSONType, UTCDateTime

RECORD_KINDS = ("deal", "task", "case", "meeting", "contract", "invoice", "project", "automation", "other")
RECORD_STATUSES = ("open", "closed")


class Record(Base):
    __tablename__ = "record"

    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    client_id: Mapped[str | None] = mapped_column(ForeignKey("client.external_id"), index=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("employee.external_id"))
    status: Mapped[str] = mapped_column(String(10))
    stage: Mapped[str | None] = mapped_column(String(100))
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    progress: Mapped[int | None] = mapped_column(Integer)
    url: Mapped[str | None] = mapped_column(String(2000))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(
            "kind IN ('deal', 'task', 'case', 'meeting', 'contract', 'invoice', 'project', 'automation', 'other')",
            name="kind",
        ),
        CheckConstraint("status IN ('open', 'closed')", name="status"),
        CheckConstraint("progress IS NULL OR (progress >= 0 AND progress <= 100)", name="progress"),
        CheckConstraint("amount IS NULL OR currency IS NOT NULL", name="amount_currency"),
        Index("ix_record_owner_status", "owner_id", "status"),
    )


class RecordMove(Base):
    """A record a handover gave to a new owner: undo gives it back (issue 16 point 3). `step` orders the moves one
    handover made of one record (leaver → interim owner at the take-over, interim owner → successor at the late
    execution), so undo walks them back in reverse. A meeting kept by its owner within the transition period is a
    row with from = to and `attendee_id` (who joined it)."""

    __tablename__ = "record_move"

    handover_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True, default=1, server_default=text("1"))
    from_owner_id: Mapped[str] = mapped_column(String(100))
    to_owner_id: Mapped[str] = mapped_column(String(100))
    attendee_id: Mapped[str | None] = mapped_column(String(100))
    moved_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    restored_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
