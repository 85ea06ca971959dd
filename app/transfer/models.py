"""Handover cases and their items (one per client)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import ACTOR_LENGTH, Base, JSONType, UTCDateTime

HANDOVER_STATUSES = ("draft", "planned", "approved", "executed", "scheduled", "completed", "cancelled", "undone")
# `scheduled`: a leave (a delegation, app/transfer/leave.py) from its opening until the person is back.
OPEN_STATUSES = ("draft", "planned", "approved", "executed", "scheduled")
REASONS = ("resignation", "termination", "retirement", "role_change", "leave", "other")
# Stored, never accepted as input: a departure signal that named no reason (a status change; issue 15).
STORED_REASONS = (*REASONS, "unknown")
ITEM_STATUSES = ("proposed", "approved", "transferred", "confirmed", "closed", "cancelled", "reverted")
CHECKLIST_KEYS = (
    "client_profile",
    "contacts",
    "open_projects",
    "contracts_financials",
    "open_issues",
    "handover_meeting",
)


class Handover(Base):
    __tablename__ = "handover"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    leaver_id: Mapped[str] = mapped_column(ForeignKey("employee.external_id"), index=True)
    manager_id: Mapped[str | None] = mapped_column(ForeignKey("employee.external_id"), index=True)
    reason: Mapped[str] = mapped_column(String(20))
    destination_competitor: Mapped[bool | None] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(20), index=True)
    effective_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    source: Mapped[str] = mapped_column(String(20))
    candidate_pool: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    leaver_status_before: Mapped[str | None] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    planned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    approved_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    approved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    executed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    completed_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    completion_reason: Mapped[str | None] = mapped_column(Text)
    cancelled_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    undone_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    undone_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Approval deadline and its reminders (app/transfer/deadlines.py). Null deadline: opened before deadlines
    # existed, never reminded.
    approval_deadline: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_reminded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # A leave (reason `leave`): when the person is back, and who holds their clients until then.
    return_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    delegate_id: Mapped[str | None] = mapped_column(ForeignKey("employee.external_id"))
    # Not approved by the effective time: who took the leaver's clients over, and when (app/transfer/continuity.py).
    interim_owner_id: Mapped[str | None] = mapped_column(ForeignKey("employee.external_id"))
    interim_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The confidentiality steps (app/transfer/checklists.py): per step done, note, by, at. Null: none recorded.
    confidentiality: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # What moves with the leaver's records, over the settings' defaults (app/transfer/records.py). Null: defaults.
    record_rules: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    __table_args__ = (
        # One open handover per leaver, enforced by the database so concurrent exits create one.
        Index(
            "uq_handover_open_leaver",
            "leaver_id",
            unique=True,
            sqlite_where=text("status IN ('draft', 'planned', 'approved', 'executed', 'scheduled')"),
            postgresql_where=text("status IN ('draft', 'planned', 'approved', 'executed', 'scheduled')"),
        ),
    )


class HandoverItem(Base):
    __tablename__ = "handover_item"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    handover_id: Mapped[int] = mapped_column(ForeignKey("handover.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(ForeignKey("client.external_id"), index=True)
    previous_owner_id: Mapped[str] = mapped_column(ForeignKey("employee.external_id"))
    successor_id: Mapped[str | None] = mapped_column(ForeignKey("employee.external_id"), index=True)
    interim_owner_id: Mapped[str | None] = mapped_column(ForeignKey("employee.external_id"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    needs_attention: Mapped[bool] = mapped_column(Boolean, default=False)
    attention_reason: Mapped[str | None] = mapped_column(String(200))
    risk_score: Mapped[float | None] = mapped_column(Numeric(6, 2))
    risk_band: Mapped[str | None] = mapped_column(String(20))
    risk_factors: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    exposure: Mapped[float | None] = mapped_column(Numeric(18, 2))  # churn probability × annual value
    reasons: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    override_reason: Mapped[str | None] = mapped_column(Text)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    checklist: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    outgoing_signed_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    outgoing_signed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    outgoing_signoff_reason: Mapped[str | None] = mapped_column(Text)
    incoming_signed_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    incoming_signed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    transferred_to_id: Mapped[str | None] = mapped_column(ForeignKey("employee.external_id"))
    transferred_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reverted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("handover_id", "client_id"),
        Index("ix_handover_item_handover_status", "handover_id", "status"),
    )


class HandoverSeat(Base):
    """An account-team seat the leaver held on another client's team, taken away at execution (the directory's
    account_team_member row is deleted) and given back on undo: the handover's memory of it."""

    __tablename__ = "handover_seat"

    handover_id: Mapped[int] = mapped_column(ForeignKey("handover.id", ondelete="CASCADE"), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("client.external_id", ondelete="CASCADE"), primary_key=True)
    employee_id: Mapped[str] = mapped_column(ForeignKey("employee.external_id"))
    role: Mapped[str] = mapped_column(String(100))
    removed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    restored_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class HandoverRecordOverride(Base):
    """One record's fate in one handover, set by hand (`PATCH /v1/handovers/{id}/records/{kind}/{external_id}`):
    `to_owner_id` receives it, null keeps it with its owner. Execution honours it over the rules."""

    __tablename__ = "handover_record_override"

    handover_id: Mapped[int] = mapped_column(ForeignKey("handover.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    to_owner_id: Mapped[str | None] = mapped_column(ForeignKey("employee.external_id"))
    reason: Mapped[str | None] = mapped_column(String(500))
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_by: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class OwnershipRepair(Base):
    """A client the ownership sweeper moved off an owner nobody could act for (app/transfer/sweeper.py)."""

    __tablename__ = "ownership_repair"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("client.external_id", ondelete="CASCADE"), index=True)
    from_owner_id: Mapped[str] = mapped_column(ForeignKey("employee.external_id"))
    to_owner_id: Mapped[str] = mapped_column(ForeignKey("employee.external_id"))
    reason: Mapped[str] = mapped_column(String(40))
    repaired_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ChecklistTemplate(Base):
    """A client tier's checklist: which entries, their labels, which are required before sign-off. A tier without
    a row uses the default (app/transfer/checklists.py)."""

    __tablename__ = "checklist_template"

    tier: Mapped[str] = mapped_column(String(20), primary_key=True)
    entries: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_by: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
