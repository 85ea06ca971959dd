"""Access grants with validity windows, access events reported by the CRM, and exfiltration alerts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, Numeric, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import ACTOR_LENGTH, Base, JSONType, UTCDateTime

LEVELS = ("owner", "interim", "shadow", "read")
ACTIONS = ("view", "edit", "export", "delete")
EVENT_ACTIONS = ("view", "edit", "export", "download", "delete")


class AccessGrant(Base):
    """Access is decided by the window [valid_from, valid_until) and revoked_at, never by a job running on time."""

    __tablename__ = "access_grant"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    employee_id: Mapped[str] = mapped_column(ForeignKey("employee.external_id"))
    client_id: Mapped[str] = mapped_column(ForeignKey("client.external_id", ondelete="CASCADE"), index=True)
    level: Mapped[str] = mapped_column(String(20))
    valid_from: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    reason: Mapped[str] = mapped_column(String(500))
    handover_id: Mapped[int | None] = mapped_column(ForeignKey("handover.id"), index=True)
    # Set while a handover cuts this grant short: the one whose cut ends it earliest, and the grant's own end before
    # any cut (to restore on cancel/undo). Every standing cut is a row of access_grant_cut.
    cut_by_handover_id: Mapped[int | None] = mapped_column(ForeignKey("handover.id"), index=True)
    cut_from: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_access_grant_employee_client", "employee_id", "client_id"),)


class AccessGrantCut(Base):
    """One handover's cut of one grant: the grant ends at `cut_at` at the latest while the cut stands. A grant may be
    cut by several handovers (a leaver's exit moved earlier by a later handover, a receiver's own exit); its window
    ends at the earliest of its own end and every standing cut, so lifting one cut (cancel, undo, reschedule) gives
    back the end the others still impose, never more."""

    __tablename__ = "access_grant_cut"

    grant_id: Mapped[int] = mapped_column(ForeignKey("access_grant.id", ondelete="CASCADE"), primary_key=True)
    handover_id: Mapped[int] = mapped_column(ForeignKey("handover.id"), primary_key=True, index=True)
    cut_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class AccessSuspension(Base):
    """An employee's own access is off for [valid_from, valid_until) unless revoked before: a leave. Like a grant,
    the decision reads the window at the instant asked about, never a job."""

    __tablename__ = "access_suspension"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    employee_id: Mapped[str] = mapped_column(ForeignKey("employee.external_id"), index=True)
    valid_from: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    reason: Mapped[str] = mapped_column(String(500))
    handover_id: Mapped[int | None] = mapped_column(ForeignKey("handover.id"), index=True)
    created_by: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class AccessEvent(Base):
    __tablename__ = "access_event"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    event_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    employee_id: Mapped[str] = mapped_column(ForeignKey("employee.external_id"))
    client_id: Mapped[str] = mapped_column(ForeignKey("client.external_id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(20))
    count: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_access_event_employee_time", "employee_id", "occurred_at"),)


class Alert(Base):
    __tablename__ = "alert"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    employee_id: Mapped[str] = mapped_column(ForeignKey("employee.external_id"), index=True)
    kind: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20), index=True)
    score: Mapped[float] = mapped_column(Numeric(10, 2))
    window_start: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    clients: Mapped[list[str]] = mapped_column(JSONType, default=list)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    resolution: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # One open alert per employee and kind, enforced by the database, not only by row locks.
        Index(
            "uq_alert_open_employee_kind",
            "employee_id",
            "kind",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )
