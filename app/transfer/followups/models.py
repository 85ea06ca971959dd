"""Follow-ups: after a handover the successor checks in with each client."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import ACTOR_LENGTH, Base, UTCDateTime

FOLLOW_UP_KINDS = ("first_contact", "check_in", "satisfaction_survey")
FOLLOW_UP_OUTCOMES = ("retained", "at_risk", "churned")


class FollowUp(Base):
    """After a handover, the successor checks in: first contact, a check-in, a satisfaction survey."""

    __tablename__ = "follow_up"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    handover_id: Mapped[int] = mapped_column(ForeignKey("handover.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("handover_item.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("client.external_id"), index=True)
    assignee_id: Mapped[str] = mapped_column(ForeignKey("employee.external_id"), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)  # open · completed · cancelled
    outcome: Mapped[str | None] = mapped_column(String(20))
    satisfaction: Mapped[float | None] = mapped_column(Numeric(4, 1))
    satisfaction_before: Mapped[float | None] = mapped_column(Numeric(4, 1))
    first_contact_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(Text)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    completed_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    overdue_notified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("item_id", "kind"),)
