"""Long operations as rows: what was asked, by whom, its state, its result or its problem, and the worker's lease."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import ACTOR_LENGTH, Base, JSONType, UTCDateTime

STATES = ("queued", "running", "succeeded", "failed")
FINISHED = ("succeeded", "failed")


class Job(Base):
    """One asynchronous request (`Prefer: respond-async`), run once by a worker under a lease."""

    __tablename__ = "job"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40))  # the operation: handover-plans · simulations
    state: Mapped[str] = mapped_column(String(20))
    # Who asked (role:sub, as in the audit log) and the principal the worker acts as: the same role, scopes and
    # employee the synchronous request would have had.
    created_by: Mapped[str] = mapped_column(String(ACTOR_LENGTH), index=True)
    principal: Mapped[dict[str, Any]] = mapped_column(JSONType)
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    problem: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (Index("ix_job_state_created_at", "state", "created_at"),)
