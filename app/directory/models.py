"""The mirror of CRM/HR data, keyed by the systems' own external ids."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, JSONType, UTCDateTime

EMPLOYEE_STATUSES = ("active", "leaving", "departed")
CLIENT_TIERS = ("strategic", "key", "standard", "prospect")
CLIENT_STATUSES = ("active", "at_risk", "churned", "inactive")
CHANNELS = ("email", "webhook", "phone", "none")


class Employee(Base):
    __tablename__ = "employee"

    external_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    title: Mapped[str | None] = mapped_column(String(200))
    seniority: Mapped[int] = mapped_column(Integer)
    manager_id: Mapped[str | None] = mapped_column(ForeignKey("employee.external_id", ondelete="SET NULL"), index=True)
    skills: Mapped[list[str]] = mapped_column(JSONType, default=list)
    regions: Mapped[list[str]] = mapped_column(JSONType, default=list)
    languages: Mapped[list[str]] = mapped_column(JSONType, default=list)
    clearance: Mapped[int] = mapped_column(Integer)
    capacity: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    status: Mapped[str] = mapped_column(String(20), index=True)
    exit_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("seniority BETWEEN 1 AND 4", name="seniority"),
        CheckConstraint("clearance BETWEEN 1 AND 3", name="clearance"),
        CheckConstraint("capacity >= 0", name="capacity"),
        CheckConstraint("status IN ('active', 'leaving', 'departed')", name="status"),
    )


class Client(Base):
    __tablename__ = "client"

    external_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    tier: Mapped[str] = mapped_column(String(20), index=True)
    annual_value: Mapped[Decimal] = mapped_column(Numeric(16, 2))
    industry: Mapped[str | None] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))
    language: Mapped[str | None] = mapped_column(String(35))
    sensitivity: Mapped[int] = mapped_column(Integer)
    owner_id: Mapped[str] = mapped_column(ForeignKey("employee.external_id"), index=True)
    former_owner_id: Mapped[str | None] = mapped_column(ForeignKey("employee.external_id"))
    relationship_since: Mapped[dt.date | None] = mapped_column()
    last_contact_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    satisfaction: Mapped[Decimal | None] = mapped_column(Numeric(4, 1))
    renewal_at: Mapped[dt.date | None] = mapped_column()
    open_issues: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("sensitivity BETWEEN 1 AND 3", name="sensitivity"),
        CheckConstraint("annual_value >= 0", name="annual_value"),
        CheckConstraint("open_issues >= 0", name="open_issues"),
        CheckConstraint(
            "satisfaction IS NULL OR (satisfaction >= 0 AND satisfaction <= 10)",
            name="satisfaction",
        ),
        CheckConstraint("tier IN ('strategic', 'key', 'standard', 'prospect')", name="tier"),
        CheckConstraint("status IN ('active', 'at_risk', 'churned', 'inactive')", name="status"),
    )


class ClientContact(Base):
    __tablename__ = "client_contact"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("client.external_id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(50))
    locale: Mapped[str] = mapped_column(String(35))
    preferred_channel: Mapped[str] = mapped_column(String(20))
    is_primary: Mapped[bool] = mapped_column(default=False)


class AccountTeamMember(Base):
    __tablename__ = "account_team_member"

    client_id: Mapped[str] = mapped_column(ForeignKey("client.external_id", ondelete="CASCADE"), primary_key=True)
    employee_id: Mapped[str] = mapped_column(ForeignKey("employee.external_id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(100))

    __table_args__ = (Index("ix_account_team_member_employee", "employee_id"),)
