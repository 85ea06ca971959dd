"""Risk model versions: the weights are data, every version is kept, exactly one is active."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import ACTOR_LENGTH, Base, JSONType, UTCDateTime

MODEL_STATUSES = ("draft", "active", "retired")
MODEL_SOURCES = ("manual", "fit")


class RiskModelVersion(Base):
    __tablename__ = "risk_model_version"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    weights: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(20))
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    note: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    activated_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    activated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("status IN ('draft', 'active', 'retired')", name="status"),
        CheckConstraint("source IN ('manual', 'fit')", name="source"),
        # At most one active version, enforced by the database so two concurrent activations cannot both win.
        Index(
            "uq_risk_model_version_active",
            "status",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )
